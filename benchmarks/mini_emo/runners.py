"""Benchmark runners: train, decode and score one (size, system, seed) run, and record it."""

from __future__ import annotations

import datetime
import json
import logging
import os
import shlex
import time
import traceback
from pathlib import Path
from typing import Dict, Optional, Tuple

from benchmarks.mini_emo.plan import (
    DECODE_TAG,
    ESPNET_DECODE_CONFIG,
    RECORD,
    SYSTEMS,
    TASK_METRICS,
    TASK_SCORE_DIR,
    Context,
    Run,
    config_digest,
    expected_scores,
    is_done,
    read_record,
)
from benchmarks.mini_emo.prepare import run_logged, set_options, size_dir_options

logger = logging.getLogger("benchmark")


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
    train_args = shlex.join(["--seed", str(run.seed), *ctx.extra_train_args()])
    common = [*size_dir_options(ctx, run.size),
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
    from benchmarks.mini_emo import espnet_baselines as eb

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
    from benchmarks.mini_emo.pocketsphinx_decode import decode_scp
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
            out.update({k: sc[k] for k in TASK_METRICS[task]})
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
