"""Per-task preprocessing: tokenize the target, check labels, tag the sample with its task."""

from typing import Dict, Optional

import numpy as np

from espnet_harmonifuse.task_spec import TaskSpec
from espnet_harmonifuse.tokenizer import AbsTokenizer


class TaskPreprocessor:
    """Turns ``{"speech": wav, "text": str}`` into model inputs for one task.

    Adds ``task_id``; for label tasks the text must be one of the task's labels
    (a clear error names the utterance, the file and the fix otherwise).
    """

    def __init__(
        self,
        task_index: int,
        spec: TaskSpec,
        tokenizer: AbsTokenizer,
        text_file: Optional[str] = None,
    ):
        self.task_index = task_index
        self.spec = spec
        self.tokenizer = tokenizer
        self.text_file = text_file or "the text file"

    def __call__(self, uid: str, data: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if "speech" in data:
            speech = np.asarray(data["speech"])
            if speech.ndim == 2:  # (samples, channels): downmix
                speech = speech.mean(axis=1)
            if speech.size == 0:
                raise ValueError(
                    f"utterance '{uid}' (task {self.spec.name}) has empty audio; "
                    "remove it from wav.scp (recipe stage 2 drops such files)"
                )
            data["speech"] = speech.astype(np.float32)
        if "text" in data and isinstance(data["text"], str):
            text = data["text"].strip()
            if self.spec.is_label and text not in self.spec.labels:
                raise ValueError(
                    f"utterance '{uid}' in {self.text_file}: label '{text}' is not one of the labels "
                    f"{self.spec.labels} of task '{self.spec.name}'. Fix: map it in local/data.sh, "
                    f"or add it to the task's labels in the training config"
                )
            data["text"] = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
        data["task_id"] = np.asarray([self.task_index], dtype=np.int64)
        return data
