"""Collate samples of one task into a padded batch (ESPnet's CommonCollateFn semantics)."""

from typing import Collection, Dict, List, Sequence, Tuple

import numpy as np
import torch


class PadCollate:
    """Pads each key to the batch maximum and adds ``{key}_lengths``.

    Keys in ``not_sequence`` are stacked without lengths. Like ESPnet's
    CommonCollateFn, but without importing espnet2.train.preprocessor (slow,
    and it pulls text front-ends this task does not use).
    """

    def __init__(self, float_pad_value: float = 0.0, int_pad_value: int = -1, not_sequence: Collection[str] = ()):
        self.float_pad_value = float_pad_value
        self.int_pad_value = int_pad_value
        self.not_sequence = set(not_sequence)

    def __call__(self, data: Sequence[Tuple[str, Dict[str, np.ndarray]]]) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        uttids = [u for u, _ in data]
        samples = [d for _, d in data]
        batch = {}
        for key in samples[0]:
            arrays = [torch.from_numpy(np.asarray(s[key])) for s in samples]
            if key in self.not_sequence:
                batch[key] = torch.stack(arrays)
                continue
            pad = self.float_pad_value if arrays[0].is_floating_point() else self.int_pad_value
            batch[key] = torch.nn.utils.rnn.pad_sequence(arrays, batch_first=True, padding_value=pad)
            batch[f"{key}_lengths"] = torch.tensor([a.size(0) for a in arrays], dtype=torch.long)
        return uttids, batch
