"""Batch interleaving: each batch comes from one task's dataset; a schedule alternates between them."""

import json
import math
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from espnet2.iterators.abs_iter_factory import AbsIterFactory

SCHEDULES = ("alternate", "ratio", "proportional", "temperature", "sequential")


def task_counts(
    schedule: str,
    num_batches: Sequence[int],
    total: int,
    ratio: Optional[Sequence[float]] = None,
    temperature: float = 2.0,
) -> List[int]:
    """How many of ``total`` batches each task gets in one epoch.

    ``alternate``: equal shares; ``ratio``: shares proportional to ``ratio``;
    ``proportional``: to the tasks' batch counts; ``temperature``: to
    ``num_batches ** (1 / temperature)``; ``sequential``: every task's batches once.
    Counts are fixed (largest-remainder rounding) so every epoch has the same mix.
    """
    if schedule == "sequential":
        return list(num_batches)
    if schedule == "alternate":
        shares = np.ones(len(num_batches))
    elif schedule == "ratio":
        if ratio is None or len(ratio) != len(num_batches) or min(ratio) < 0 or sum(ratio) <= 0:
            raise ValueError(f"multitask_ratio must give one non-negative number per task, got {ratio}")
        shares = np.asarray(ratio, dtype=float)
    elif schedule == "proportional":
        shares = np.asarray(num_batches, dtype=float)
    elif schedule == "temperature":
        if temperature <= 0:
            raise ValueError(f"multitask_temperature must be positive, got {temperature}")
        shares = np.asarray(num_batches, dtype=float) ** (1.0 / temperature)
    else:
        raise ValueError(f"multitask_schedule must be one of {SCHEDULES}, not '{schedule}'")
    exact = shares / shares.sum() * total
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def task_order(schedule: str, counts: Sequence[int], seed: int) -> List[int]:
    """The sequence of task indices for one epoch.

    ``alternate`` and ``ratio`` interleave deterministically and as evenly as
    possible (smooth weighted round robin); ``proportional`` and ``temperature``
    shuffle with ``RandomState(seed)``; ``sequential`` runs task after task.
    """
    if schedule == "sequential":
        return [t for t, c in enumerate(counts) for _ in range(c)]
    if schedule in ("proportional", "temperature"):
        order = np.repeat(np.arange(len(counts)), counts)
        np.random.RandomState(seed).shuffle(order)
        return order.tolist()
    total = sum(counts)
    weights = np.asarray(counts, dtype=float)
    credit = np.zeros(len(counts))
    left = np.asarray(counts)
    order = []
    for _ in range(total):
        credit += weights
        t = int(np.argmax(np.where(left > 0, credit, -math.inf)))
        order.append(t)
        credit[t] -= total
        left[t] -= 1
    return order


class MultiTaskIterFactory(AbsIterFactory):
    """Interleaves the batches of one ESPnet iterator factory per task.

    Every yielded batch holds samples of a single task.  Each task's factory is
    set to produce exactly its share of the epoch; ESPnet's SequenceIterFactory
    then continues where the previous epoch stopped and reshuffles each time it
    wraps around, so a smaller dataset is cycled, never silently dropped, and
    resuming at epoch ``e`` gives the same batches.  The task order depends only
    on ``seed + epoch``, so every DDP rank follows the same schedule.

    Args:
        factories: task name -> ESPnet iterator factory (SequenceIterFactory).
        schedule: one of ``alternate``, ``ratio``, ``proportional``,
            ``temperature`` (training) or ``sequential`` (validation).
        num_iters_per_epoch: batches per epoch; default: the sum of all tasks' batches.
        ratio: per-task shares for ``schedule=ratio``, in the order of ``factories``.
        temperature: for ``schedule=temperature``.
        seed: base seed.
        batch_log: a file to append each yielded batch to, one JSON line
            ``{"epoch", "task", "keys"}`` (the utterance ids); default: none. Under DDP, one
            file per rank shows each rank's schedule and share of the data.
    """

    def __init__(
        self,
        factories: Dict[str, AbsIterFactory],
        schedule: str = "alternate",
        num_iters_per_epoch: Optional[int] = None,
        ratio: Optional[Sequence[float]] = None,
        temperature: float = 2.0,
        seed: int = 0,
        batch_log: Optional[str] = None,
    ):
        if not factories:
            raise ValueError("MultiTaskIterFactory needs at least one task's data")
        self.names = list(factories)
        self.factories = [factories[n] for n in self.names]
        self.schedule = schedule
        self.seed = seed
        self.batch_log = batch_log
        num_batches = [len(f.sampler) for f in self.factories]
        for name, n in zip(self.names, num_batches):
            if n == 0:
                raise ValueError(f"task '{name}' has data files but no batch: check its shape file")
        total = sum(num_batches) if num_iters_per_epoch is None else num_iters_per_epoch
        self.counts = task_counts(schedule, num_batches, total, ratio, temperature)
        for f, c, n in zip(self.factories, self.counts, num_batches):
            # ESPnet wraps around (and reshuffles) when the share exceeds the data.
            f.num_iters_per_epoch = None if (schedule == "sequential" or c == n) else c

    def schedule_for_epoch(self, epoch: int) -> List[str]:
        return [self.names[t] for t in task_order(self.schedule, self.counts, self.seed + epoch)]

    def build_iter(self, epoch: int, shuffle: Optional[bool] = None) -> Iterator:
        iters = [iter(f.build_iter(epoch, shuffle)) if c > 0 else None for f, c in zip(self.factories, self.counts)]
        for t in task_order(self.schedule, self.counts, self.seed + epoch):
            item = next(iters[t])  # (utterance ids, batch)
            if self.batch_log is not None:
                self._record(epoch, self.names[t], item[0])
            yield item

    def _record(self, epoch: int, task: str, keys: Sequence[str]) -> None:
        Path(self.batch_log).parent.mkdir(parents=True, exist_ok=True)
        with open(self.batch_log, "a", encoding="utf-8") as f:
            f.write(json.dumps({"epoch": epoch, "task": task, "keys": list(keys)}) + "\n")
