"""Declared tasks (name, prompt paraphrases, target kind) and per-task data options."""

from dataclasses import dataclass, field
from typing import Dict, List, Sequence, Tuple

TARGET_KINDS = ("text", "label")

DEFAULT_TASKS: List[dict] = [
    {
        "name": "asr",
        "target": "text",
        "prompts": [
            "Transcribe the speech into text.",
            "Please write down exactly what the speaker says.",
            "Recognize the spoken words and give the transcript.",
        ],
    },
    {
        "name": "ser",
        "target": "label",
        "labels": ["neutral", "happy", "angry", "sad"],
        "prompts": [
            "What is the emotion of the speaker? Answer with one word.",
            "Classify the emotion in this speech as neutral, happy, angry or sad.",
            "How does the speaker feel? Give one emotion word.",
        ],
    },
]


@dataclass
class TaskSpec:
    """One task of the multi-task model.

    ``target: text`` generates free text (e.g. a transcript); ``target: label``
    answers with one of ``labels`` (e.g. an emotion word).
    """

    name: str
    prompts: List[str]
    target: str = "text"
    labels: List[str] = field(default_factory=list)
    loss_weight: float = 1.0

    @property
    def is_label(self) -> bool:
        return self.target == "label"


def parse_tasks(raw: Sequence[dict]) -> List[TaskSpec]:
    """Validate the ``tasks`` option and return TaskSpecs; errors name the entry and the fix."""
    if not raw:
        raise ValueError("tasks is empty: declare at least one task (see conf/ for examples)")
    specs, seen = [], set()
    allowed = {"name", "prompts", "target", "labels", "loss_weight"}
    for i, entry in enumerate(raw):
        where = f"tasks[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ValueError(f"{where} must be a mapping with at least 'name' and 'prompts'")
        where = f"tasks[{i}] ({entry['name']})"
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
        spec = TaskSpec(**entry)
        if spec.name in seen:
            raise ValueError(f"{where}: the task name '{spec.name}' is declared twice")
        seen.add(spec.name)
        if not spec.name.isidentifier():
            raise ValueError(f"{where}: task names must be identifiers (letters, digits, _)")
        if not spec.prompts or not all(isinstance(p, str) and p.strip() for p in spec.prompts):
            raise ValueError(
                f"{where}: prompts must be a non-empty list of non-empty strings; "
                f"add e.g. prompts: [\"Transcribe the speech.\"]"
            )
        if spec.target not in TARGET_KINDS:
            raise ValueError(f"{where}: target must be one of {TARGET_KINDS}, not '{spec.target}'")
        if spec.is_label and len(spec.labels) < 2:
            raise ValueError(f"{where}: target 'label' needs a labels list with at least two labels")
        if len(set(spec.labels)) != len(spec.labels):
            raise ValueError(f"{where}: labels contain duplicates: {spec.labels}")
        specs.append(spec)
    return specs


def parse_task_entry(value: str, option: str) -> Tuple[str, str]:
    """Split ``TASK:REST`` (the form of ``--train_task_data`` and friends)."""
    task, sep, rest = value.partition(":")
    if not sep or not task or not rest:
        raise ValueError(f"{option} expects TASK:VALUE (e.g. asr:dump/raw/train/wav.scp,speech,sound), got '{value}'")
    return task, rest


def group_task_data(
    data: Sequence[str], shapes: Sequence[str], tasks: List[TaskSpec], prefix: str
) -> Dict[str, Tuple[List[Tuple[str, str, str]], List[str]]]:
    """Group ``--{prefix}_task_data`` / ``--{prefix}_task_shape_file`` by task.

    Returns ``{task: ([(path, name, type), ...], [shape_file, ...])}`` for every
    task that has data; errors on unknown task names and data without shape files.
    """
    names = {t.name for t in tasks}
    grouped: Dict[str, Tuple[list, list]] = {}
    for value in data or []:
        task, rest = parse_task_entry(value, f"--{prefix}_task_data")
        parts = rest.split(",")
        if len(parts) != 3:
            raise ValueError(f"--{prefix}_task_data {value}: expected TASK:PATH,NAME,TYPE")
        grouped.setdefault(task, ([], []))[0].append(tuple(parts))
    for value in shapes or []:
        task, rest = parse_task_entry(value, f"--{prefix}_task_shape_file")
        grouped.setdefault(task, ([], []))[1].append(rest)
    for task, (files, shape_files) in grouped.items():
        if task not in names:
            raise ValueError(
                f"--{prefix}_task_data/--{prefix}_task_shape_file name the task '{task}', "
                f"which is not declared in tasks ({sorted(names)})"
            )
        if not files:
            raise ValueError(f"task '{task}' has {prefix} shape files but no --{prefix}_task_data")
        if not shape_files:
            raise ValueError(
                f"task '{task}' has no --{prefix}_task_shape_file; run the collect-stats stage "
                f"(python -m espnet_harmonifuse.bin.collect_shapes) and pass its speech_shape"
            )
    return grouped
