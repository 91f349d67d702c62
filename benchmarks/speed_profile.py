"""Where one training step's time goes, and how far it is from the machine's limit.

Used by ``benchmarks/speed.py``. The model, the data and the iterator are the ones stage 6
builds from an exp dir's ``config.yaml`` (so the batches are the recipe's own); the phases
are timed with forward hooks on the model's parts, synchronously on CPU:

- data: the iterator's ``next()`` (audio read, tokenisation, padding)
- features: the backbone's frontend (STFT + log-mel + normalisation)
- backbone: the encoder blocks (for a frozen backbone with the state cache: the cache lookup)
- fusion/gate/projector, LLM forward (the decoder's forward calls), loss and the rest
- backward, optimizer (gradient clipping + step)

FLOPs are counted by ``torch.utils.flop_counter`` over forward + backward; the limit is the
measured rate of a large fp32 matrix multiply on the same threads.
"""

import argparse
import contextlib
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import torch
from torch.utils.flop_counter import FlopCounterMode

PHASES = [
    "data",
    "features",
    "backbone",
    "fusion/gate/projector",
    "LLM forward",
    "loss and the rest of forward",
    "backward",
    "optimizer",
]


def matmul_peak_gflops(threads: int, size: int = 1536, repeats: int = 7, dtype=torch.float32) -> float:
    """Median GFLOP/s of a (size x size) @ (size x size) in ``dtype`` on ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * size**3 / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


class PhaseTimer:
    """Accumulates wall time spent inside chosen submodules' forward calls."""

    def __init__(self, parts: Dict[str, List[torch.nn.Module]]):
        self.totals: Dict[str, float] = defaultdict(float)
        self._start: Dict[int, float] = {}
        self._handles = []
        for name, modules in parts.items():
            for module in modules:
                self._handles.append(module.register_forward_pre_hook(self._pre))
                self._handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, module, _inputs):
        self._start[id(module)] = time.perf_counter()

    def _post(self, name):
        def hook(module, _inputs, _output):
            self.totals[name] += time.perf_counter() - self._start.pop(id(module))

        return hook

    def remove(self):
        for h in self._handles:
            h.remove()


def _parts(model) -> Dict[str, List[torch.nn.Module]]:
    backbone = model.backbone
    parts = {"fusion/gate/projector": [model.fusion, model.gate, model.projector], "LLM forward": [model.decoder]}
    frontend = getattr(backbone, "frontend", None)
    if frontend is not None:
        parts["features"] = [frontend]
    encoder = getattr(backbone, "encoder", None)
    parts["backbone"] = [encoder if encoder is not None else backbone]
    return parts


def load(exp_dir: Path):
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    model, args = HarmoniFuseTask.build_model_from_file(exp_dir / "config.yaml")
    return args, model


def iterator(args, epoch: int = 1):
    from espnet2.train.distributed_utils import DistributedOption

    from espnet_harmonifuse.tasks import HarmoniFuseTask

    factory = HarmoniFuseTask.build_iter_factory(args, DistributedOption(distributed=False), "train")
    return iter(factory.build_iter(epoch))


def profile_steps(exp_dir: Path, steps: int, warmup: int, threads: int, distinct: int = 8) -> Dict[str, float]:
    """Mean seconds per phase over ``steps`` training steps (after ``warmup`` untimed ones).

    The steps cycle over ``distinct`` batches read once from the iterator (the data phase is the
    mean of those reads), so a state cache is warm after the first pass, as in a later epoch: the
    warm-up covers that pass at least.
    """
    warmup = max(warmup, distinct)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    args, model = load(exp_dir)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[args.optim](params, **args.optim_conf)  # as configured (fused)
    it = iterator(args)
    batches, data_times = [], []
    for _ in range(distinct):
        t0 = time.perf_counter()
        batches.append(next(it)[1])
        data_times.append(time.perf_counter() - t0)
    timer = PhaseTimer(_parts(model))
    totals: Dict[str, float] = defaultdict(float)
    flops = float("nan")
    walls: List[float] = []
    for step in range(warmup + steps):
        batch = batches[step % distinct]
        t1 = time.perf_counter()
        counter = FlopCounterMode(display=False) if step == warmup else None
        with counter if counter is not None else contextlib.nullcontext():
            loss, _stats, _weight = model(**batch)
            t2 = time.perf_counter()
            optim.zero_grad()
            loss.backward()
        t3 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params, args.grad_clip)
        optim.step()
        t4 = time.perf_counter()
        if counter is not None:
            flops = counter.get_total_flops()
            timer.totals.clear()  # the phases from here on: the counted step is slower, not timed
            continue
        if step < warmup:
            continue
        totals["forward"] += t2 - t1
        totals["backward"] += t3 - t2
        totals["optimizer"] += t4 - t3
        walls.append(t4 - t1)
    timer.remove()
    n = len(walls)
    inner = sum(timer.totals.values())
    out = {k: v / n for k, v in timer.totals.items()}
    out["data"] = statistics.mean(data_times)
    out["loss and the rest of forward"] = (totals["forward"] - inner) / n
    out["backward"] = totals["backward"] / n
    out["optimizer"] = totals["optimizer"] / n
    out["step"] = statistics.mean(walls) + out["data"]
    out["flops"] = flops
    out["batch_size"] = int(args.batch_size)
    out["autocast_dtype"] = (args.model_conf or {}).get("autocast_dtype") or "float32"
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir", type=Path, help="a stage-6 exp dir (run from the recipe dir)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (at least one pass over the batches)")
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    res = profile_steps(a.exp_dir, a.steps, a.warmup, a.threads)
    for k in PHASES + ["step"]:
        print(f"{k:32s} {1000 * res.get(k, 0.0):8.1f} ms")
    peak = matmul_peak_gflops(a.threads)
    print(f"step GFLOP {res['flops'] / 1e9:.2f}  achieved {res['flops'] / res['step'] / 1e9:.1f} GFLOP/s  peak {peak:.1f}")


if __name__ == "__main__":
    main()
