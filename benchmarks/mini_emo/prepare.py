"""Benchmark data: the recipe's formatted sets, the low-data subsets, and each size's tokenizer
and shape files (recipe stages 1-5), prepared once per size and fingerprinted."""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from benchmarks.mini_emo.plan import (
    SUBSET_STRATA,
    Context,
    sha,
)

logger = logging.getLogger("benchmark")


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


# ---------------------------------------------------------------------------------- data prep
BASE_SETS = ("train", "valid", "test")


def base_data_ready(ctx: Context) -> bool:
    return all((Path("dump/raw") / ctx.sets[t][k] / "wav.scp").is_file() for t in ctx.sets for k in BASE_SETS)


def prepare_base_data(ctx: Context) -> None:
    """Recipe stages 1-3 (data, format, filter) into data/ and dump/raw/: where the data is missing,
    and always when ``--local_data_opts`` was given, so that the data is the corpus those options ask
    for (local/data.sh keeps a corpus it already made with them, and regenerates another)."""
    if base_data_ready(ctx) and not ctx.check_data:
        return
    opts = ctx.local_data_opts
    logger.info("%s: running recipe stages 1-3 (local_data_opts='%s')",
                "checking the data" if base_data_ready(ctx) else "formatted data missing", opts)
    cmd = ["./run.sh", "--stage", "1", "--stop_stage", "3", "--expdir", str(ctx.bench_dir / "prep"),
           "--local_data_opts", opts, *shlex.split(ctx.recipe_args)]
    rc, _ = run_logged(cmd, ctx.bench_dir / "prep" / "prep.log")
    if rc != 0 or not base_data_ready(ctx):
        raise RuntimeError(f"data preparation failed (log: {ctx.bench_dir / 'prep' / 'prep.log'})")


def size_dir_options(ctx: Context, size: str) -> List[str]:
    """harmonifuse.sh's options that put a size's data, tokenizer, stats and runs under its dir."""
    sdir = ctx.size_dir(size)
    return ["--expdir", str(sdir), "--dumpdir", str(sdir / "dump"), "--token_dir", str(sdir / "token_list")]


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
    from espnet_harmonifuse.utils.config import load_config

    tasks = load_config(ctx.tokenizer_config).get("tasks")
    return {
        "data": sha(files), "tokenizer_tasks": hashlib.sha1(json.dumps(tasks, sort_keys=True).encode()).hexdigest()[:16],
        "fraction": 1.0 if size == "full" else ctx.low_fraction, "subset_seed": ctx.subset_seed,
        "recipe_args": ctx.recipe_args,
        "encoder_pretraining": "run.sh --pretrain_config, stage 6, " + shlex.join(ctx.pretrain_train_args()),
        # run.sh's options and the pre-training configs decide the shared pre-trained encoder
        "recipe_files": sha([Path("run.sh"), *sorted(Path("conf").glob("pretrain*.yaml"))]),
    }


def prepare_size(ctx: Context, size: str) -> None:
    """Data dirs, tokenizer (stage 4), shape files (stage 5) and pre-trained encoder (stage 6) of one
    size; once per size."""
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
            from benchmarks.mini_emo.subsets import make_subset_dir

            dst = raw / ctx.train_set(t, size)
            ids = make_subset_dir(src, dst, ctx.low_fraction, SUBSET_STRATA[t], ctx.subset_seed)
            logger.info("%s: %d utterances of %s (stratified by %s)", dst, len(ids), src, SUBSET_STRATA[t])
    common = [*size_dir_options(ctx, size), "--train_config", ctx.tokenizer_config,
              *set_options(ctx, size, ("asr", "ser")), *shlex.split(ctx.recipe_args)]
    log = sdir / "logs" / "prepare.log"
    sec = 0.0
    # Stage 6 with --pretrain_only: the encoder pre-training of run.sh's --pretrain_config, once per
    # size; every HarmoniFuse system and seed of this size starts from it, as from one WavLM.
    steps = (("tokenizer and shape files", 4, 5, []),
             ("encoder pre-training", 6, 6,
              ["--pretrain_only", "true", "--train_args", shlex.join(ctx.pretrain_train_args())]))
    for what, first, last, extra in steps:
        logger.info("preparing size %s: %s (log: %s)", size, what, log)
        rc, seconds = run_logged(["./run.sh", "--stage", str(first), "--stop_stage", str(last), *extra, *common], log)
        if rc != 0:
            raise RuntimeError(f"preparing size {size} failed at the {what} (log: {log})")
        sec += seconds
    stamp.write_text(json.dumps({"fingerprint": fp, "seconds": round(sec, 1)}, indent=2) + "\n")
