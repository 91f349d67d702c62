"""Per-task accuracies, and their mean over the tasks: the number checkpoints are selected on.

- ``acc_<task>`` of a text task (ASR): token accuracy over the target's tokens, its EOS left out.
- ``acc_<task>`` of a label task (SER): the fraction of utterances whose whole label is right. In
  validation, right means the label is the most likely of the task's labels, as decoding picks it;
  in training (no extra LM pass), every label token is the argmax under teacher forcing.
- ``acc_tasks``: the mean over the tasks of each task's epoch value, added by
  :class:`~espnet_harmonifuse.trainer.TaskStatsTrainer` at the end of each training and validation epoch.

Each batch holds one task; the others' ``acc_<task>`` are NaN there. ESPnet's Reporter averages a
stat over the epoch's batches weighted by their sizes and leaves non-finite values out, so each
task's epoch value is the mean over that task's batches alone. A mean over the tasks cannot be a
per-batch stat (it would weigh the tasks by their numbers of utterances), hence the epoch-end step.
"""

import math
from typing import List, Optional, Sequence

import torch
from espnet2.train.reporter import SubReporter, WeightedAverage, aggregate

TASK_MEAN = "acc_tasks"


def task_accuracy(
    is_label: bool, correct: torch.Tensor, content: torch.Tensor, label_hits: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """``acc_<task>`` of one task's samples: ``correct`` (B, N) marks right argmax predictions,
    ``content`` (B, N) the target tokens without EOS, ``label_hits`` (B,) right labels by likelihood."""
    if is_label:
        whole = label_hits if label_hits is not None else (correct | ~content).all(1)
        return whole.float().mean()
    n = content.sum()
    if n == 0:
        return torch.tensor(math.nan, device=correct.device)
    return (correct & content).sum() / n


def accuracy_keys(model: torch.nn.Module) -> List[str]:
    """``acc_<task>`` of each task of a HarmoniFuse model (also when wrapped by DDP)."""
    tasks = getattr(getattr(model, "module", model), "tasks", [])
    return [f"acc_{t.name}" for t in tasks]


def add_task_mean(reporter: SubReporter, keys: Sequence[str]) -> None:
    """Give the epoch's ``acc_tasks``: the mean of the epoch values of ``keys`` that are finite (a
    task with no batch in the epoch is left out; NaN if none has one)."""
    present = [k for k in keys if k in reporter.stats]
    if reporter.count == 0 or not present:  # e.g. CTC-only pre-training reports no accuracies
        return
    values = [aggregate(reporter.stats[k]) for k in present]
    finite = [float(v) for v in values if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else math.nan
    # one entry per step, as every stat has: NaN (left out of the average) but in the last step
    steps = [WeightedAverage(math.nan, 0.0)] * (reporter.count - 1) + [WeightedAverage(mean, 1.0)]
    reporter.stats[TASK_MEAN] = steps
