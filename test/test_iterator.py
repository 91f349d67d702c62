"""MultiTaskIterFactory over real ESPnet SequenceIterFactory objects (batch interleaving)."""

from collections import Counter
from typing import List, Sequence, Tuple

import numpy as np
import pytest
import torch
from espnet2.iterators.sequence_iter_factory import SequenceIterFactory

from espnet_harmonifuse.iterators.multitask_iter_factory import (
    MultiTaskIterFactory,
    task_counts,
    task_order,
)

TASKS = ("asr", "ser", "gender")


class ToyDataset:
    """``dataset[uid] -> (uid, {"x": ..., "task_id": ...})``: what ESPnetDataset returns."""

    def __init__(self, task_index: int, uids: Sequence[str]):
        self.task_index = task_index
        self.uids = list(uids)

    def __getitem__(self, uid: str):
        number = int(uid.rsplit("_", 1)[1])
        return uid, {"x": np.array([number, number + 1], dtype=np.float32),
                     "task_id": np.array([self.task_index], dtype=np.int64)}

    def __len__(self):
        return len(self.uids)


def collate(data):
    uids = [u for u, _ in data]
    batch = {k: torch.stack([torch.from_numpy(d[k]) for _, d in data]) for k in data[0][1]}
    return uids, batch


def make_factory(task_index: int, num_batches: int, batch_size: int = 2, seed: int = 0) -> SequenceIterFactory:
    name = TASKS[task_index]
    uids = [f"{name}_{i:03d}" for i in range(num_batches * batch_size)]
    batches = [uids[i : i + batch_size] for i in range(0, len(uids), batch_size)]
    return SequenceIterFactory(
        dataset=ToyDataset(task_index, uids), batches=batches, seed=seed, shuffle=True, collate_fn=collate
    )


def make_multi(sizes: Sequence[int], **kwargs) -> MultiTaskIterFactory:
    return MultiTaskIterFactory({TASKS[i]: make_factory(i, n) for i, n in enumerate(sizes)}, **kwargs)


def run_epoch(factory: MultiTaskIterFactory, epoch: int) -> List[Tuple[str, Tuple[str, ...]]]:
    """``[(task name, uttids), ...]`` of one epoch; checks each batch is one task's."""
    out = []
    for uids, batch in factory.build_iter(epoch):
        task_ids = batch["task_id"].view(-1).tolist()
        assert len(set(task_ids)) == 1, f"a batch mixes tasks: {uids} {task_ids}"
        name = TASKS[task_ids[0]]
        assert all(u.startswith(name + "_") for u in uids), (name, uids)
        out.append((name, tuple(uids)))
    return out


# ----------------------------------------------------------------------------- counts
def test_task_counts_alternate_gives_equal_shares():
    assert task_counts("alternate", [2, 10], 12) == [6, 6]
    assert task_counts("alternate", [3, 7, 100], 30) == [10, 10, 10]
    odd = task_counts("alternate", [2, 10], 13)
    assert sum(odd) == 13 and sorted(odd) == [6, 7]


def test_task_counts_ratio_is_exact():
    assert task_counts("ratio", [5, 5], 12, ratio=[2, 1]) == [8, 4]
    assert task_counts("ratio", [50, 1], 30, ratio=[2, 1]) == [20, 10]  # independent of data sizes
    assert task_counts("ratio", [5, 5], 10, ratio=[2, 1]) == [7, 3]  # largest remainder
    assert task_counts("ratio", [5, 5], 9, ratio=[1, 0]) == [9, 0]


def test_task_counts_proportional_follows_batch_counts():
    assert task_counts("proportional", [3, 9], 12) == [3, 9]
    assert task_counts("proportional", [2, 10], 6) == [1, 5]
    assert task_counts("proportional", [10, 30], 80) == [20, 60]


def test_task_counts_temperature_lies_between_proportional_and_equal():
    sizes, total = [2, 10], 120
    prop = task_counts("proportional", sizes, total)
    equal = task_counts("alternate", sizes, total)
    for temp in (1.5, 2.0, 4.0):
        counts = task_counts("temperature", sizes, total, temperature=temp)
        assert sum(counts) == total
        assert prop[0] < counts[0] < equal[0], (temp, counts)
    # T=2: shares sqrt(2) : sqrt(10)
    assert task_counts("temperature", sizes, total, temperature=2.0) == [37, 83]
    # T=1 is proportional; a huge T approaches equal shares
    assert task_counts("temperature", sizes, total, temperature=1.0) == prop
    assert task_counts("temperature", sizes, total, temperature=1e6) == equal
    # a larger temperature moves the small task's share up monotonically
    small = [task_counts("temperature", sizes, total, temperature=t)[0] for t in (1, 2, 3, 5, 10)]
    assert small == sorted(small)


@pytest.mark.parametrize("schedule", ["alternate", "ratio", "proportional", "temperature"])
def test_task_counts_sum_to_total(schedule):
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 5))
        sizes = rng.integers(1, 40, size=n).tolist()
        total = int(rng.integers(1, 200))
        ratio = rng.integers(1, 5, size=n).tolist()
        counts = task_counts(schedule, sizes, total, ratio=ratio, temperature=2.0)
        shares = {"alternate": np.ones(n), "ratio": np.asarray(ratio, float), "proportional": np.asarray(sizes, float),
                  "temperature": np.asarray(sizes, float) ** 0.5}[schedule]
        exact = shares / shares.sum() * total
        # largest-remainder rounding: the counts add up and each is its exact share rounded down or up
        assert sum(counts) == total, (schedule, sizes, total, counts)
        assert all(np.floor(e) <= c <= np.ceil(e) for c, e in zip(counts, exact)), (schedule, exact, counts)


def test_task_counts_sequential_and_bad_options():
    assert task_counts("sequential", [3, 4], 99) == [3, 4]
    with pytest.raises(ValueError, match="multitask_ratio must give one non-negative number per task"):
        task_counts("ratio", [3, 4], 10, ratio=[1])
    with pytest.raises(ValueError, match="multitask_ratio"):
        task_counts("ratio", [3, 4], 10, ratio=None)
    with pytest.raises(ValueError, match="multitask_temperature must be positive"):
        task_counts("temperature", [3, 4], 10, temperature=0.0)
    with pytest.raises(ValueError, match="multitask_schedule must be one of"):
        task_counts("roundrobin", [3, 4], 10)


def test_factory_counts_match_schedule_and_epoch_length():
    multi = make_multi([2, 10], schedule="ratio", ratio=[1, 2], num_iters_per_epoch=9)
    assert multi.counts == [3, 6]
    epoch = run_epoch(multi, 1)
    assert len(epoch) == 9
    assert Counter(t for t, _ in epoch) == {"asr": 3, "ser": 6}
    # default epoch length: all tasks' batches
    multi = make_multi([3, 5], schedule="proportional")
    assert multi.counts == [3, 5] and len(run_epoch(multi, 1)) == 8


def test_ratio_with_zero_share_never_yields_that_task():
    multi = make_multi([3, 4], schedule="ratio", ratio=[0, 1], num_iters_per_epoch=6)
    assert multi.counts == [0, 6]
    assert {t for t, _ in run_epoch(multi, 1)} == {"ser"}


# ----------------------------------------------------------------------------- order
def test_alternate_strictly_alternates_two_tasks():
    assert task_order("alternate", [10, 10], seed=0) == [0, 1] * 10
    assert task_order("alternate", [3, 3, 3], seed=0) == [0, 1, 2] * 3
    multi = make_multi([4, 6], schedule="alternate", num_iters_per_epoch=12)
    tasks = [t for t, _ in run_epoch(multi, 1)]
    assert all(a != b for a, b in zip(tasks, tasks[1:])), tasks


def test_alternate_keeps_tasks_balanced_in_every_prefix():
    multi = make_multi([4, 6], schedule="alternate", num_iters_per_epoch=12)
    tasks = [t for t, _ in run_epoch(multi, 1)]
    assert Counter(tasks) == {"asr": 6, "ser": 6}
    for i in range(1, len(tasks) + 1):
        c = Counter(tasks[:i])
        assert abs(c["asr"] - c["ser"]) <= 1, tasks


def test_ratio_interleaves_evenly():
    order = task_order("ratio", [10, 5], seed=0)
    assert Counter(order) == {0: 10, 1: 5}
    # every window of three consecutive batches holds exactly one batch of the 1-share task
    for i in range(0, len(order) - 2):
        assert order[i : i + 3].count(1) == 1, order


@pytest.mark.parametrize("schedule", ["alternate", "proportional", "temperature"])
def test_same_seed_and_epoch_give_identical_batches(schedule):
    a = make_multi([3, 7], schedule=schedule, seed=5)
    b = make_multi([3, 7], schedule=schedule, seed=5)
    for epoch in (1, 2, 3):
        ea, eb = run_epoch(a, epoch), run_epoch(b, epoch)
        assert ea == eb
        assert [t for t, _ in ea] == a.schedule_for_epoch(epoch)
    # resuming: a fresh factory's epoch 3 equals epoch 3 after running 1 and 2
    c = make_multi([3, 7], schedule=schedule, seed=5)
    assert run_epoch(c, 3) == run_epoch(a, 3)


@pytest.mark.parametrize("schedule", ["proportional", "temperature"])
def test_different_epoch_or_seed_changes_shuffled_order(schedule):
    multi = make_multi([5, 10], schedule=schedule, seed=0)
    orders = [multi.schedule_for_epoch(e) for e in (1, 2, 3)]
    assert orders[0] != orders[1] and orders[1] != orders[2]
    assert all(Counter(o) == Counter(orders[0]) for o in orders)  # same mix, other order
    other = make_multi([5, 10], schedule=schedule, seed=1)
    assert other.schedule_for_epoch(1) == orders[1]  # the order depends on seed + epoch only


def test_batches_hold_one_task_and_match_the_schedule():
    multi = make_multi([3, 4, 5], schedule="temperature", num_iters_per_epoch=20)
    for epoch in (1, 2):
        batches = run_epoch(multi, epoch)  # asserts one task per batch
        assert [t for t, _ in batches] == multi.schedule_for_epoch(epoch)
        assert len(batches) == 20


# ----------------------------------------------------------------------------- cycling
def test_small_task_is_cycled_not_dropped():
    small, big = make_factory(0, 2), make_factory(1, 10)
    multi = MultiTaskIterFactory({"asr": small, "ser": big}, schedule="alternate", num_iters_per_epoch=20)
    assert multi.counts == [10, 10]
    batches = run_epoch(multi, 1)
    per_task = {t: Counter(b for tt, b in batches if tt == t) for t in ("asr", "ser")}
    assert sum(per_task["asr"].values()) == 10
    small_batches = {tuple(b) for b in small.sampler.batches}
    assert set(per_task["asr"]) == small_batches
    assert all(n == 5 for n in per_task["asr"].values()), per_task["asr"]
    seen = {u for b in per_task["asr"] for u in b}
    assert seen == set(small.dataset.uids)
    # the big task gets its 10 batches exactly once
    assert set(per_task["ser"]) == {tuple(b) for b in big.sampler.batches}
    assert all(n == 1 for n in per_task["ser"].values())


def test_short_epochs_continue_through_the_data():
    big, small = make_factory(0, 10), make_factory(1, 4)
    multi = MultiTaskIterFactory({"asr": big, "ser": small}, schedule="alternate", num_iters_per_epoch=4)
    assert multi.counts == [2, 2]
    big_batches = {tuple(b) for b in big.sampler.batches}
    small_batches = {tuple(b) for b in small.sampler.batches}
    seen = {"asr": Counter(), "ser": Counter()}
    for epoch in range(1, 6):
        batches = run_epoch(multi, epoch)
        assert len(batches) == 4
        for t, b in batches:
            seen[t][b] += 1
        if epoch == 2:  # the small task went through its 4 batches once in two epochs
            assert set(seen["ser"]) == small_batches and set(seen["ser"].values()) == {1}
    # five epochs of 2 batches = the big task's 10 batches, each exactly once (continuation)
    assert set(seen["asr"]) == big_batches
    assert set(seen["asr"].values()) == {1}
    assert sum(seen["ser"].values()) == 10 and set(seen["ser"]) == small_batches


def test_sequential_yields_every_batch_once_task_after_task():
    factories = {"asr": make_factory(0, 3), "ser": make_factory(1, 5)}
    factories["ser"].num_iters_per_epoch = 2  # must be reset: validation sees everything
    multi = MultiTaskIterFactory(factories, schedule="sequential", num_iters_per_epoch=4)
    assert multi.counts == [3, 5]
    for epoch in (1, 2):
        batches = run_epoch(multi, epoch)
        assert [t for t, _ in batches] == ["asr"] * 3 + ["ser"] * 5
        for name, f in factories.items():
            got = [b for t, b in batches if t == name]
            assert sorted(got) == sorted(tuple(b) for b in f.sampler.batches)


def test_factory_rejects_no_tasks_and_empty_tasks():
    with pytest.raises(ValueError, match="at least one task"):
        MultiTaskIterFactory({})
    empty = SequenceIterFactory(dataset=ToyDataset(1, []), batches=[], collate_fn=collate)
    with pytest.raises(ValueError, match="task 'ser' has data files but no batch: check its shape file"):
        MultiTaskIterFactory({"asr": make_factory(0, 2), "ser": empty})
