#!/usr/bin/env python3
"""The HarmoniFuse benchmark: every (data size, system, seed) trained, decoded and scored, resumable.

Run from a recipe dir (egs2/mini_emo/harmonifuse1 uses it through local/benchmark.sh)::

    python -m espnet_harmonifuse.benchmark.run --recipe_dir . --seeds 0,1,2 --sizes full,low \\
        [--only harmonifuse,naive_multitask] [--max_hours 1.8] [--dry_run] [--smoke]

Systems (rows of the table): the HarmoniFuse configs (``harmonifuse`` = conf/train.yaml and the
ablations of local/make_tuning_configs.py), ESPnet's own ASR and classification models
(espnet_baselines.py) and pocketsphinx's pretrained en-us model (no training; run once).
Sizes: ``full`` (all training data) and ``low`` (``--low_fraction`` of each corpus's training
set, stratified by emotion label for SER and by speaker for ASR, fixed by ``--subset_seed``;
dev and test sets are the full ones); ``low`` runs only single-task, naive multi-task and the
full model.

Layout (BENCH = ``--bench_dir``, default ``bench``; ``bench/smoke`` with ``--smoke``)::

    BENCH/<size>/dump/raw/<set>    data dirs (links to the recipe's dump/raw, subsets for low)
    BENCH/<size>/token_list/        the size's sentencepiece model (recipe stage 4)
    BENCH/<size>/stats/<set>/       shape files (recipe stage 5)
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
import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

logger = logging.getLogger("benchmark")

from espnet_harmonifuse.benchmark.plan import (  # noqa: F401  (re-exported for tests and callers)
    TASK_SCORE_DIR,
    DECODE_TAG,
    RECORD,
    SIZE_SYSTEMS,
    SYSTEMS,
    System,
    ESPNET_DECODE_CONFIG,
    SUBSET_STRATA,
    Run,
    Context,
    run_dir,
    expected_scores,
    is_done,
    read_record,
    plan_runs,
    sha,
    config_digest,
)


def run_logged(cmd: Sequence[str], log: Path, env: Optional[Dict[str, str]] = None) -> Tuple[int, float]:
    """Run ``cmd`` here with stdout/stderr appended to ``log``; returns (exit code, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# {datetime.datetime.now().isoformat(timespec='seconds')} {shlex.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(list(cmd), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env={**os.environ, **(env or {})})
    return rc, time.time() - t0


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, link.parent)
    if link.is_symlink() or link.exists():
        if link.is_symlink() and os.readlink(link) == rel:
            return
        raise FileExistsError(f"{link} exists and is not a link to {target}")
    link.symlink_to(rel, target_is_directory=True)


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


# ---------------------------------------------------------------------------------- data prep
BASE_SETS = ("train", "valid", "test")


def base_data_ready(ctx: Context) -> bool:
    return all((Path("dump/raw") / ctx.sets[t][k] / "wav.scp").is_file() for t in ctx.sets for k in BASE_SETS)


def prepare_base_data(ctx: Context) -> None:
    """Recipe stages 1-3 (data, format, filter) into data/ and dump/raw/, unless already there."""
    if base_data_ready(ctx):
        return
    opts = ctx.local_data_opts
    logger.info("formatted data missing: running recipe stages 1-3 (local_data_opts='%s')", opts)
    cmd = ["./run.sh", "--stage", "1", "--stop_stage", "3", "--expdir", str(ctx.bench_dir / "prep"),
           "--local_data_opts", opts, *shlex.split(ctx.recipe_args)]
    rc, _ = run_logged(cmd, ctx.bench_dir / "prep" / "prep.log")
    if rc != 0 or not base_data_ready(ctx):
        raise RuntimeError(f"data preparation failed (log: {ctx.bench_dir / 'prep' / 'prep.log'})")


def set_options(ctx: Context, size: str, tasks: Sequence[str]) -> List[str]:
    """harmonifuse.sh's data-set options; a task not in ``tasks`` gets an empty train set (skipped)."""
    out = []
    for t in ("asr", "ser"):
        if t in tasks:
            out += [f"--{t}_train_set", ctx.train_set(t, size), f"--{t}_valid_set", ctx.sets[t]["valid"],
                    f"--{t}_test_sets", ctx.sets[t]["test"]]
        else:
            out += [f"--{t}_train_set", "", f"--{t}_valid_set", "", f"--{t}_test_sets", ""]
    return out


def size_fingerprint(ctx: Context, size: str) -> Dict[str, object]:
    files = [Path("dump/raw") / ctx.sets[t][k] / f for t in ctx.sets for k in BASE_SETS for f in ("wav.scp", "text")]
    import yaml

    tasks = yaml.safe_load(Path(ctx.tokenizer_config).read_text()).get("tasks")
    return {
        "data": sha(files), "tokenizer_tasks": hashlib.sha1(json.dumps(tasks, sort_keys=True).encode()).hexdigest()[:16],
        "fraction": 1.0 if size == "full" else ctx.low_fraction, "subset_seed": ctx.subset_seed,
        "recipe_args": ctx.recipe_args,
    }


def prepare_size(ctx: Context, size: str) -> None:
    """Data dirs, tokenizer (stage 4) and shape files (stage 5) of one size; once per size."""
    sdir = ctx.size_dir(size)
    stamp = sdir / "prepared.json"
    fp = size_fingerprint(ctx, size)
    if stamp.is_file():
        old = json.loads(stamp.read_text())
        if old.get("fingerprint") != fp:
            raise RuntimeError(
                f"{sdir} was prepared from other data or settings ({old.get('fingerprint')} != {fp}); "
                f"its runs would not be comparable: move {sdir} away or use another --bench_dir")
        return
    raw = sdir / "dump" / "raw"
    for t in ctx.sets:
        for k in ("valid", "test"):
            _link(Path("dump/raw") / ctx.sets[t][k], raw / ctx.sets[t][k])
        src = Path("dump/raw") / ctx.sets[t]["train"]
        if size == "full":
            _link(src, raw / ctx.sets[t]["train"])
        else:
            from espnet_harmonifuse.benchmark.subsets import make_subset_dir

            dst = raw / ctx.train_set(t, size)
            ids = make_subset_dir(src, dst, ctx.low_fraction, SUBSET_STRATA[t], ctx.subset_seed)
            logger.info("%s: %d utterances of %s (stratified by %s)", dst, len(ids), src, SUBSET_STRATA[t])
    cmd = ["./run.sh", "--stage", "4", "--stop_stage", "5", "--expdir", str(sdir), "--dumpdir", str(sdir / "dump"),
           "--token_dir", str(sdir / "token_list"), "--train_config", ctx.tokenizer_config,
           *set_options(ctx, size, ("asr", "ser")), *shlex.split(ctx.recipe_args)]
    log = sdir / "logs" / "prepare.log"
    logger.info("preparing size %s: tokenizer and shape files (log: %s)", size, log)
    rc, sec = run_logged(cmd, log)
    if rc != 0:
        raise RuntimeError(f"preparing size {size} failed (log: {log})")
    stamp.write_text(json.dumps({"fingerprint": fp, "seconds": round(sec, 1)}, indent=2) + "\n")


# ------------------------------------------------------------------------------------ runners
def _attempt(run: Run, phase: str, seconds: float, rc: int) -> None:
    p = run.run_dir / "bench_attempts.jsonl"
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a") as f:
        f.write(json.dumps({"phase": phase, "seconds": round(seconds, 1), "rc": rc,
                            "ended": datetime.datetime.now().isoformat(timespec="seconds")}) + "\n")


def phase_seconds(run_dir_: Path) -> Dict[str, float]:
    """Wall seconds per phase summed over attempts (a resumed training adds up)."""
    out: Dict[str, float] = {}
    p = Path(run_dir_) / "bench_attempts.jsonl"
    if p.is_file():
        for line in p.read_text().splitlines():
            if line.strip():
                a = json.loads(line)
                out[a["phase"]] = out.get(a["phase"], 0.0) + float(a["seconds"])
    return out


def run_harmonifuse(run: Run, ctx: Context) -> None:
    s = SYSTEMS[run.system]
    sdir = ctx.size_dir(run.size)
    train_args = shlex.join(["--seed", str(run.seed), *ctx.extra_train_args()])
    common = ["--expdir", str(sdir), "--dumpdir", str(sdir / "dump"), "--token_dir", str(sdir / "token_list"),
              "--train_config", s.config, "--model_tag", f"{run.system}/seed{run.seed}",
              "--inference_tag", DECODE_TAG, "--inference_model", ctx.inference_model,
              "--inference_nj", str(ctx.inference_nj), "--train_args", train_args,
              *set_options(ctx, run.size, s.tasks), *shlex.split(ctx.recipe_args)]
    log = run.run_dir / "bench.log"
    for phase, (a, b) in (("train", (6, 6)), ("decode", (7, 8))):
        rc, sec = run_logged(["./run.sh", "--stage", str(a), "--stop_stage", str(b), *common], log)
        _attempt(run, phase, sec, rc)
        if rc != 0:
            raise RuntimeError(f"recipe stages {a}-{b} failed with code {rc} (log: {log}, {run.run_dir}/train.log)")


def run_espnet(run: Run, ctx: Context) -> None:
    from espnet_harmonifuse.benchmark import espnet_baselines as eb

    s = SYSTEMS[run.system]
    task = "asr" if s.kind == "espnet_asr" else "cls"
    data_task = "asr" if task == "asr" else "ser"
    sdir = ctx.size_dir(run.size)
    data = eb.Data(str(sdir / "dump"), ctx.train_set(data_task, run.size), ctx.sets[data_task]["valid"],
                   [ctx.sets[data_task]["test"]])
    launcher = eb.Launcher(os.environ.get("train_cmd"), os.environ.get("decode_cmd"))
    bpemodel = str(sdir / "token_list" / "bpe.model") if task == "asr" else None
    stats = str(sdir / "espnet_stats" / task)
    extra = [*ctx.extra_train_args(), *shlex.split(ctx.espnet_train_args)]
    run.run_dir.mkdir(parents=True, exist_ok=True)
    eb.prepare(task, data, stats, s.config, launcher, bpemodel)  # shared by seeds; not timed
    for phase, stages in (("train", ["train"]), ("decode", ["decode", "score"])):
        t0 = time.time()
        try:
            eb.run(task, data, stats, str(run.run_dir), s.config, launcher, bpemodel, run.seed, extra,
                   nj=ctx.inference_nj, decode_config=ESPNET_DECODE_CONFIG if task == "asr" else None,
                   labels=ctx.ser_labels.split(","), stages=stages, decode_tag=DECODE_TAG)
        except Exception:
            _attempt(run, phase, time.time() - t0, 1)
            raise
        _attempt(run, phase, time.time() - t0, 0)


def run_pocketsphinx(run: Run, ctx: Context) -> None:
    from espnet_harmonifuse.benchmark.pocketsphinx_decode import decode_scp
    from espnet_harmonifuse.scoring.score_files import score_asr_files

    test = ctx.sets["asr"]["test"]
    data = ctx.size_dir(run.size) / "dump" / "raw" / test
    out = run.run_dir / f"decode_{DECODE_TAG}" / test
    t0 = time.time()
    decode_scp(str(data / "wav.scp"), str(out / "text"), nj=ctx.inference_nj)
    score_asr_files(data / "text", out / "text", out / TASK_SCORE_DIR["asr"])
    _attempt(run, "decode", time.time() - t0, 0)


RUNNERS = {"harmonifuse": run_harmonifuse, "espnet_asr": run_espnet, "espnet_cls": run_espnet,
           "pocketsphinx": run_pocketsphinx}


# ------------------------------------------------------------------------------- bookkeeping
def count_parameters(run: Run, ctx: Context) -> Tuple[Optional[int], Optional[int], Dict[str, object]]:
    """(total, trainable, extra info) of the model built from the run's config.yaml."""
    import argparse as ap

    import yaml

    s = SYSTEMS[run.system]
    cfg = run.run_dir / "config.yaml"
    if s.kind == "pocketsphinx":
        return None, None, {}
    if s.kind == "harmonifuse":
        from espnet_harmonifuse.tasks import HarmoniFuseTask

        args = ap.Namespace(**yaml.safe_load(cfg.read_text()))
        model = HarmoniFuseTask.build_model(args)
        info = {"fusion": args.fusion, "gate": args.gate, "tasks": [t["name"] for t in args.tasks]}
    else:
        if s.kind == "espnet_asr":
            from espnet2.tasks.asr import ASRTask as T
        else:
            from espnet2.tasks.cls import CLSTask as T
        model, _ = T.build_model_from_file(str(cfg), None, "cpu")
        info = {}
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable, info


def save_layer_weights(run: Run, ctx: Context) -> Optional[str]:
    """The learned per-task layer weights of a HarmoniFuse run (``layer_weights.npz``)."""
    import numpy as np

    from espnet_harmonifuse.api import HarmoniFuse

    hf = HarmoniFuse.from_pretrained(run.run_dir, ctx.inference_model)
    if getattr(hf.args, "fusion", None) == "last_layer":
        return None
    weights = {k: v.numpy() for k, v in hf.model.layer_weights_per_task().items()}
    path = run.run_dir / "layer_weights.npz"
    np.savez(path, **weights)
    return str(path)


def metrics_of(run: Run, ctx: Context) -> Dict[str, float]:
    out = {}
    for task, p in expected_scores(run.run_dir, run.system, ctx.sets).items():
        if p.is_file():
            sc = json.loads(p.read_text())
            keys = ("wer", "cer") if task == "asr" else ("ua", "wa", "macro_f1")
            out.update({k: sc[k] for k in keys})
    return out


def finalize(run: Run, ctx: Context, status: str, error: Optional[str] = None) -> Dict:
    rec = read_record(run.run_dir)
    rec.update({
        "size": run.size, "system": run.system, "seed": run.seed, "status": status,
        "config": SYSTEMS[run.system].config, "config_digest": config_digest(run.system, ctx),
        "smoke": ctx.smoke, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
    })
    secs = phase_seconds(run.run_dir)
    rec["train_seconds"] = round(secs["train"], 1) if "train" in secs else None  # None: nothing trained
    rec["decode_seconds"] = round(secs.get("decode", 0.0), 1)
    if SYSTEMS[run.system].kind == "harmonifuse":
        rec["inference_model"] = ctx.inference_model
    if error:
        rec["error"] = error
    if status == "done":
        rec.pop("error", None)
        rec["metrics"] = metrics_of(run, ctx)
        rec["scores"] = {t: str(p) for t, p in expected_scores(run.run_dir, run.system, ctx.sets).items()}
        try:
            total, trainable, info = count_parameters(run, ctx)
            rec.update({"params": total, "trainable_params": trainable, **info})
        except Exception as e:  # noqa: BLE001
            logger.warning("%s: cannot count parameters: %s", run.key, e)
        if SYSTEMS[run.system].kind == "harmonifuse":
            try:
                rec["layer_weights"] = save_layer_weights(run, ctx)
            except Exception as e:  # noqa: BLE001
                logger.warning("%s: cannot extract layer weights: %s", run.key, e)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    (run.run_dir / RECORD).write_text(json.dumps(rec, indent=2) + "\n")
    return rec


def execute(run: Run, ctx: Context) -> Dict:
    """Train, decode and score one run; never raises (a failure is recorded and returned)."""
    run.run_dir.mkdir(parents=True, exist_ok=True)
    try:
        RUNNERS[SYSTEMS[run.system].kind](run, ctx)
        if not is_done(run.run_dir, run.system, ctx.sets):
            raise RuntimeError("finished without writing all scores: " + ", ".join(
                str(p) for p in expected_scores(run.run_dir, run.system, ctx.sets).values() if not p.is_file()))
        return finalize(run, ctx, "done")
    except KeyboardInterrupt:
        finalize(run, ctx, "interrupted", "KeyboardInterrupt")
        raise
    except Exception as e:  # noqa: BLE001
        logger.error("%s failed: %s", run.key, e)
        tb = traceback.format_exc(limit=3)
        return finalize(run, ctx, "failed", f"{e}\n{tb}")


def write_table(ctx: Context) -> None:
    from espnet_harmonifuse.benchmark import table

    try:
        table.write_all(ctx.bench_dir)
    except Exception as e:  # noqa: BLE001
        logger.warning("could not write the results table: %s", e)


# ------------------------------------------------------------------------------------------ CLI
def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--recipe_dir", default=".", help="the recipe (run.sh, conf/, local/)")
    p.add_argument("--seeds", default="0,1,2", help="comma list of training seeds")
    p.add_argument("--sizes", default="full,low", help=f"comma list of {list(SIZE_SYSTEMS)}")
    p.add_argument("--only", default="", help=f"comma list of systems to run (default all): {', '.join(SYSTEMS)}")
    p.add_argument("--bench_dir", default=None, help="output dir, relative to the recipe (default: bench; bench/smoke with --smoke)")
    p.add_argument("--smoke", action="store_true",
                   help="smoke test: 1 epoch everywhere; missing data is generated with --local_data_opts '--size tiny'")
    p.add_argument("--local_data_opts", default=None, help="local/data.sh options if the data must be generated")
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
    fmt = logging.Formatter("%(asctime)s (benchmark) %(levelname)s: %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in (logging.StreamHandler(sys.stderr), logging.FileHandler(bench_dir / "benchmark.log")):
        h.setFormatter(fmt)
        root.addHandler(h)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    os.chdir(args.recipe_dir)
    ctx = Context(
        bench_dir=Path(args.bench_dir or ("bench/smoke" if args.smoke else "bench")),
        low_fraction=args.low_fraction, subset_seed=args.subset_seed, smoke=args.smoke,
        local_data_opts=args.local_data_opts if args.local_data_opts is not None else ("--size tiny" if args.smoke else ""),
        recipe_args=args.recipe_args, espnet_train_args=args.espnet_train_args,
        inference_model=args.inference_model, inference_nj=args.inference_nj,
    )
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    only = [s.strip() for s in args.only.split(",") if s.strip()] or None
    digests = {name: config_digest(name, ctx) for name in SYSTEMS}
    runs = plan_runs(ctx.bench_dir, sizes, seeds, only, ctx.sets, digests)
    todo = [r for r in runs if not r.done or (r.stale and args.rerun_stale)]
    if args.dry_run:
        for r in runs:
            state = "stale" if r.stale else ("done" if r.done else "todo")
            print(f"{state:5s} {r.key}  ({r.run_dir})")
        print(f"{len(todo)} of {len(runs)} runs to do")
        return 0
    _setup_logging(ctx.bench_dir)
    for r in runs:
        if r.stale:
            logger.warning("%s was run with another config than now%s", r.key,
                           "; rerunning it" if args.rerun_stale else " (kept; --rerun_stale reruns it)")
    meta_path = ctx.bench_dir / "benchmark.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"invocations": []}
    meta["machine"] = machine_info()
    meta["invocations"].append({
        "command": shlex.join([sys.executable, "-m", "espnet_harmonifuse.benchmark.run", *(argv or sys.argv[1:])]),
        "started": datetime.datetime.now().isoformat(timespec="seconds"), "seeds": seeds, "sizes": sizes,
        "only": only, "smoke": ctx.smoke, "low_fraction": ctx.low_fraction, "subset_seed": ctx.subset_seed,
    })
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    logger.info("%d of %d runs to do (%s)", len(todo), len(runs), ctx.bench_dir)
    if not todo:
        write_table(ctx)
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
            logger.info("--max_hours %.2f reached: %d runs left for the next sitting", args.max_hours, len(todo) - n + 1)
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
        write_table(ctx)
    if failed:
        logger.error("%d runs failed: %s (see their bench_run.json and bench.log)", len(failed), ", ".join(failed))
    logger.info("results: %s", ctx.bench_dir / "RESULTS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
