#!/usr/bin/env python3
"""The HarmoniFuse benchmark: every (data size, system, seed) trained, decoded and scored, resumable.

Run from the recipe dir, with the repository root on PYTHONPATH (benchmark.sh, next to this file,
sets it)::

    cd egs2/mini_emo/harmonifuse1
    PYTHONPATH=../../.. python -m benchmarks.mini_emo.run --recipe_dir . --seeds 0,1,2 --sizes full,low \\
        [--ablation_seeds 0,1] [--only harmonifuse,naive_multitask] [--max_hours 1.8] [--dry_run] [--smoke]

    # 5 seeds of the full model, naive multi-task and single-task models, 3 of the ablations
    PYTHONPATH=../../.. python -m benchmarks.mini_emo.run --recipe_dir . --seeds 0,1,2,3,4 --ablation_seeds 0,1,2

Systems (rows of the table): the HarmoniFuse configs (``harmonifuse`` and its ablations: override
files in conf/ next to this file, on the recipe's conf/train.yaml at the benchmark's fixed budget,
conf/budget.yaml), ESPnet's own ASR and classification models (espnet_baselines.py) and
pocketsphinx's pretrained en-us model (no training; run once). Every system runs for ``--seeds``
but the ablations (``static_fusion``, ``no_gate``), which run for ``--ablation_seeds`` (default:
the same). Seed k is the same ``--seed`` for every system, each HarmoniFuse system starting from
the size's one pre-trained encoder, so table.py pairs the systems' runs by seed.
Sizes: ``full`` (all training data) and ``low`` (``--low_fraction`` of each corpus's training
set, stratified by emotion label for SER and by speaker for ASR, fixed by ``--subset_seed``;
dev and test sets are the full ones); ``low`` runs the six HarmoniFuse systems (not ESPnet's models
and pocketsphinx).

Layout (BENCH = ``--bench_dir``, default ``bench``; ``bench/smoke`` with ``--smoke``)::

    BENCH/<size>/dump/raw/<set>    data dirs (links to the recipe's dump/raw, subsets for low)
    BENCH/<size>/token_list/        the size's sentencepiece model (recipe stage 4)
    BENCH/<size>/stats/<set>/       shape files (recipe stage 5)
    BENCH/<size>/pretrain/          the encoder pre-trained by run.sh's --pretrain_config (stage 6),
                                    shared by every HarmoniFuse system and seed of the size
    BENCH/<size>/espnet_stats/      ESPnet baselines' token lists and collect-stats output
    BENCH/<size>/<system>/seed<k>/  one run: model, decode_bench/<test_set>/score_*/scores.json,
                                    bench_run.json (status, wall times, parameter counts), bench.log
    BENCH/RESULTS.md, BENCH/layer_weights*.png   written by table.py after every run

A run whose scores are all present is skipped, so the command can be rerun until everything is
done (an interrupted training resumes from its checkpoint). A failed run is logged and recorded
(status ``failed``) and the others go on; the exit status is 1 if any run failed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

from benchmarks.mini_emo.plan import (
    SIZE_SYSTEMS, SYSTEMS, Context, current_digests, missing_modules, plan_runs
)
from benchmarks.mini_emo.prepare import prepare_base_data, prepare_size
from benchmarks.mini_emo.runners import execute

logger = logging.getLogger("benchmark")
LOG_FORMAT = "%(asctime)s (benchmark) %(levelname)s: %(message)s"
ABLATIONS = [name for name, s in SYSTEMS.items() if s.ablation]


def machine_info() -> Dict[str, object]:
    info: Dict[str, object] = {
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu"] = names[0] if names else platform.processor()
    except OSError:
        info["cpu"] = platform.processor()
    try:
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("torch", "espnet", "espnet_harmonifuse", "pocketsphinx"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            info[pkg] = None
    return info


def write_table(ctx: Context, digests: Dict[str, str]) -> None:
    """BENCH/RESULTS.md from the runs made with the current configs (``digests``: system -> config digest);
    the others are listed as stale."""
    from benchmarks.mini_emo import table

    try:
        table.write_all(ctx.bench_dir, digests=digests)
    except Exception as e:  # noqa: BLE001
        logger.warning("could not write the results table: %s", e)


# ------------------------------------------------------------------------------------------ CLI
def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe_dir", default=".", help="the recipe (run.sh, conf/, local/)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of training seeds")
    p.add_argument("--ablation_seeds", default="",
                   help=f"comma list of the ablations' seeds ({', '.join(ABLATIONS)}; default: the --seeds)")
    p.add_argument("--sizes", default="full,low", help=f"comma list of {list(SIZE_SYSTEMS)}")
    p.add_argument("--only", default="", help=f"comma list of systems to run (default all): {', '.join(SYSTEMS)}")
    p.add_argument("--bench_dir", default=None, help="output dir, relative to the recipe (default: bench; bench/smoke with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="smoke test: 1 epoch of 4 batches everywhere; missing data is generated with --local_data_opts '--size tiny'")
    p.add_argument("--local_data_opts", default=None,
                   help="local/data.sh options (e.g. '--asr_text open'): the data is made, or remade, to match them; "
                        "without it, the recipe's data is used as it is (and made with the defaults where missing)")
    p.add_argument("--low_fraction", type=float, default=0.25, help="training-data fraction of the low size")
    p.add_argument("--subset_seed", type=int, default=0, help="seed of the low-data subset (fixed for all runs)")
    p.add_argument("--inference_model", default="valid.acc.ave.pth", help="HarmoniFuse model file decoded")
    p.add_argument("--inference_nj", type=int, default=2, help="decoding jobs per test set")
    p.add_argument("--recipe_args", default="", help="extra run.sh options for every recipe call")
    p.add_argument("--espnet_train_args", default="", help="extra options for ESPnet's asr_train / cls_train")
    p.add_argument("--max_hours", type=float, default=0.0, help="start no new run after this many hours (0: no limit)")
    p.add_argument("--rerun_stale", action="store_true",
                   help="rerun finished runs whose config changed since (the old run dir is moved aside)")
    p.add_argument("--dry_run", action="store_true", help="print the plan and exit")
    return p


def _setup_logging(bench_dir: Path) -> None:
    bench_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter(LOG_FORMAT)
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(bench_dir / "benchmark.log")):
        h.setFormatter(fmt)
        root.addHandler(h)


def missing_message(missing: Dict[str, list]) -> str:
    need = "; ".join(f"{mod} (for {', '.join(keys)})" for mod, keys in missing.items())
    return (f"missing Python package(s): {need}. Install the benchmark's extras from the repository root: "
            f"pip install -e \".[bench]\" (or leave those systems out with --only)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    os.chdir(args.recipe_dir)
    ctx = Context(
        bench_dir=Path(args.bench_dir or ("bench/smoke" if args.smoke else "bench")),
        low_fraction=args.low_fraction, subset_seed=args.subset_seed, smoke=args.smoke,
        local_data_opts=args.local_data_opts if args.local_data_opts is not None else ("--size tiny" if args.smoke else ""),
        check_data=args.local_data_opts is not None,
        recipe_args=args.recipe_args, espnet_train_args=args.espnet_train_args,
        inference_model=args.inference_model, inference_nj=args.inference_nj,
    )
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    ablation_seeds = [int(s) for s in args.ablation_seeds.split(",") if s.strip()] or seeds
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    digests = current_digests(ctx)
    runs = plan_runs(ctx.bench_dir, sizes, seeds, only, ctx.sets, digests, ablation_seeds)
    todo = [r for r in runs if not r.done or (r.stale and args.rerun_stale)]
    missing = missing_modules(todo)
    if args.dry_run:
        print(f"seeds {','.join(map(str, seeds))}; ablations ({', '.join(ABLATIONS)}): "
              f"seeds {','.join(map(str, ablation_seeds))}")
        for r in runs:
            state = "stale" if r.stale else ("done" if r.done else "todo")
            print(f"{state:5s} {r.key}  ({r.run_dir})")
        print(f"{len(todo)} of {len(runs)} runs to do")
        if missing:
            print(missing_message(missing))
        return 0
    if missing:  # before the data and the pre-training, not after them
        logging.basicConfig(level="INFO", format=LOG_FORMAT)  # on stderr only: no bench dir made
        logger.error(missing_message(missing))
        return 2
    _setup_logging(ctx.bench_dir)
    for r in runs:
        if r.stale:
            logger.warning("%s was run with another config than now%s", r.key,
                           "; rerunning it" if args.rerun_stale else " (kept; --rerun_stale reruns it)")
    meta_path = ctx.bench_dir / "benchmark.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"invocations": []}
    meta["machine"] = machine_info()
    meta["invocations"].append({
        "command": shlex.join([sys.executable, "-m", "benchmarks.mini_emo.run", *(argv or sys.argv[1:])]),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "seeds": seeds,
        "ablation_seeds": ablation_seeds, "sizes": sizes,
        "only": only, "smoke": ctx.smoke, "low_fraction": ctx.low_fraction, "subset_seed": ctx.subset_seed,
    })
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("%d of %d runs to do (%s)", len(todo), len(runs), ctx.bench_dir)
    if not todo:
        write_table(ctx, digests)
        return 0
    t_start = time.time()
    failed = []
    try:
        prepare_base_data(ctx)
        for size in sizes:
            if any(r.size == size for r in todo):
                prepare_size(ctx, size)
    except Exception as e:  # noqa: BLE001
        logger.error("data preparation failed: %s", e)
        return 1
    for n, r in enumerate(todo, 1):
        if args.max_hours and time.time() - t_start > args.max_hours * 3600:
            logger.info("--max_hours %.2f reached: %d runs left for the next invocation", args.max_hours, len(todo) - n + 1)
            break
        if r.stale and args.rerun_stale:
            aside = r.run_dir.with_name(f"{r.run_dir.name}.stale.{datetime.datetime.now():%Y%m%d%H%M%S}")
            r.run_dir.rename(aside)
            logger.info("moved the stale %s to %s", r.run_dir, aside)
        logger.info("[%d/%d] %s: start (log: %s)", n, len(todo), r.key, r.run_dir / "bench.log")
        t0 = time.time()
        rec = execute(r, ctx)
        logger.info("[%d/%d] %s: %s in %.1f min %s", n, len(todo), r.key, rec["status"], (time.time() - t0) / 60,
                    json.dumps(rec.get("metrics", {})))
        if rec["status"] != "done":
            failed.append(r.key)
        write_table(ctx, digests)
    if failed:
        logger.error("%d runs failed: %s (see their bench_run.json and bench.log)", len(failed), ", ".join(failed))
    logger.info("results: %s", ctx.bench_dir / "RESULTS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
