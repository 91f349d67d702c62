#!/usr/bin/env python3
"""The benchmark's results: a markdown table (mean ± std over seeds, paired differences with 95 %
confidence intervals) and the layer-weight plot.

    cd egs2/mini_emo/harmonifuse1
    PYTHONPATH=../../.. python -m benchmarks.mini_emo.table --bench_dir bench [--out bench/RESULTS.md]

Reads ``BENCH/<size>/<system>/seed<k>/``: the metrics from ``decode_bench/<test_set>/score_*/
scores.json`` (ASR: WER, CER; SER: UA, WA, macro-F1), the parameter counts and training wall time
from ``bench_run.json``. A seed counts for a metric when its scores.json exists, so a missing or
failed seed just lowers ``n``. The standard deviation is the sample one (ddof=1) over seeds; with
one seed none is shown. HarmoniFuse is compared with naive multi-task and the single-task models
by paired differences: runs of the same seed pair up (the same training seed, from the size's one
pre-trained encoder), with the t interval of the mean difference. Also writes
``BENCH/layer_weights.png`` (size full) and ``BENCH/layer_weights_<size>.png`` (other sizes): the
per-task layer weights of the prompt-adaptive models (mean over seeds and prompts, band =
min..max), with the single vector of the static-fusion models.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from benchmarks.mini_emo.plan import TASK_METRICS

METRICS = {  # key -> (column header, task)
    "wer": ("WER", "asr"), "cer": ("CER", "asr"),
    "ua": ("SER UA", "ser"), "wa": ("SER WA", "ser"), "macro_f1": ("SER macro-F1", "ser"),
}
SIZE_TITLES = {"full": "full training data", "low": "low data"}
BAD_STATUS = ("failed", "interrupted")
# the paired comparisons: PAIRED_BASE minus each system, on the metrics of the tasks they share
PAIRED_BASE = "harmonifuse"
PAIRED = (("naive_multitask", ("wer", "cer", "ua", "macro_f1")), ("asr_only", ("wer", "cer")),
          ("ser_only", ("ua", "macro_f1")))


def _system_info():
    from benchmarks.mini_emo.plan import SYSTEMS

    return SYSTEMS


def collect(bench_dir: Path) -> List[Dict]:
    """One dict per seed run dir: size, system, seed, metrics, record (bench_run.json)."""
    out = []
    for d in sorted(Path(bench_dir).glob("*/*/seed*")):
        m = re.fullmatch(r"seed(\d+)", d.name)
        if not d.is_dir() or not m:
            continue
        metrics: Dict[str, float] = {}
        for p in sorted(d.glob("decode_bench/*/score_*/scores.json")):
            sc = json.loads(p.read_text())
            keys = TASK_METRICS["asr" if sc.get("kind") == "asr" else "ser"]
            metrics.update({k: float(sc[k]) for k in keys if k in sc})
        rec_path = d / "bench_run.json"
        rec = json.loads(rec_path.read_text()) if rec_path.is_file() else {}
        out.append({"size": d.parent.parent.name, "system": d.parent.name, "seed": int(m.group(1)),
                    "metrics": metrics, "record": rec, "dir": str(d)})
    return out


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; NaN for fewer than two values)."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else math.nan


def aggregate(runs: Sequence[Dict]) -> Dict[Tuple[str, str], Dict]:
    """``{(size, system): {metric: (mean, std, n), "params": .., "trainable_params": ..,
    "train_seconds": (mean, std, n), "seeds": [...], "failed": [...]}}``."""
    groups: Dict[Tuple[str, str], List[Dict]] = {}
    for r in runs:
        groups.setdefault((r["size"], r["system"]), []).append(r)
    out: Dict[Tuple[str, str], Dict] = {}
    for key, rs in groups.items():
        agg: Dict[str, object] = {}
        for m in METRICS:
            vals = [r["metrics"][m] for r in rs if m in r["metrics"]]
            if vals:
                agg[m] = (*mean_std(vals), len(vals))
        finished = [r for r in rs if r["metrics"] and r["record"].get("status") not in BAD_STATUS]
        agg["seeds"] = sorted(r["seed"] for r in finished)
        agg["failed"] = sorted(r["seed"] for r in rs if r["record"].get("status") in BAD_STATUS)
        for k in ("params", "trainable_params"):
            vals = [r["record"][k] for r in finished if r["record"].get(k) is not None]
            agg[k] = int(round(float(np.mean(vals)))) if vals else None
        walls = [r["record"]["train_seconds"] for r in finished if r["record"].get("train_seconds") is not None]
        agg["train_seconds"] = (*mean_std(walls), len(walls)) if walls else None
        out[key] = agg
    return out


def paired_differences(runs: Sequence[Dict], size: str, system_a: str, system_b: str, metric: str) -> Dict:
    """``system_a`` − ``system_b`` on ``metric`` at ``size``, paired by seed over the seeds where both
    runs have the metric and neither failed: ``{"n", "mean", "sd", "ci", "seeds"}``, ``sd`` the
    sample one (ddof=1) of the differences, ``ci`` the 95 % interval mean ± t_{0.975, n-1} · sd / √n
    (None for n < 2)."""
    from scipy.stats import t

    def by_seed(system: str) -> Dict[int, float]:
        return {r["seed"]: r["metrics"][metric] for r in runs
                if r["size"] == size and r["system"] == system and metric in r["metrics"]
                and r["record"].get("status") not in BAD_STATUS}

    a, b = by_seed(system_a), by_seed(system_b)
    seeds = sorted(a.keys() & b.keys())
    diffs = [a[k] - b[k] for k in seeds]
    mean, sd = mean_std(diffs)
    ci = None
    if len(diffs) > 1:
        half = float(t.ppf(0.975, len(diffs) - 1)) * sd / math.sqrt(len(diffs))
        ci = (mean - half, mean + half)
    return {"n": len(diffs), "mean": mean, "sd": sd, "ci": ci, "seeds": seeds}


def render_paired(runs: Sequence[Dict]) -> List[str]:
    """The lines of the paired-differences section (none without HarmoniFuse runs): per size,
    HarmoniFuse − naive multi-task and − single-task, one row per metric with n ≥ 2 paired seeds."""
    sizes = [z for z in _sizes({(r["size"], "") for r in runs})
             if any(r["size"] == z and r["system"] == PAIRED_BASE for r in runs)]
    if not sizes:
        return []
    lines = ["## Paired differences (95 % CI, paired by seed)", "",
             f"`{PAIRED_BASE}` minus the other system, per seed that both finished, then the mean of the",
             "differences and its 95 % confidence interval: mean ± t(0.975, n − 1) · sd / √n, sd that of the",
             "differences.",
             "WER/CER: negative = HarmoniFuse better; SER UA/macro-F1: positive = HarmoniFuse better.",
             "*: the interval excludes 0.", ""]
    for size in sizes:
        lines += [f"### {size}" + (f" ({SIZE_TITLES[size]})" if size in SIZE_TITLES else ""), ""]
        rows, short = [], []
        for other, metrics in PAIRED:
            for m in metrics:
                d = paired_differences(runs, size, PAIRED_BASE, other, m)
                name = f"`{PAIRED_BASE}` − `{other}`"
                if d["ci"] is None:
                    short.append(f"{name} {METRICS[m][0]} (n = {d['n']})")
                    continue
                lo, hi = d["ci"]
                mark = " *" if lo > 0 or hi < 0 else ""
                rows.append(f"| {name} | {METRICS[m][0]} | {d['n']} | {d['mean']:+.2f} | [{lo:.2f}, {hi:.2f}]{mark} | "
                            f"{', '.join(map(str, d['seeds']))} |")
        if rows:
            lines += ["| comparison | metric | n | mean diff | 95 % CI | seeds |", "|---|---|---:|---:|---|---|",
                      *rows, ""]
        if short:
            lines += ["n < 2 (no interval): " + "; ".join(short) + ".", ""]
    return lines


def fmt_metric(v: Optional[Tuple[float, float, int]]) -> str:
    if not v:
        return "—"
    mean, std, n = v
    return f"{mean:.2f}" if n < 2 or math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def fmt_params(n: Optional[int]) -> str:
    if n is None:
        return "—"
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def fmt_minutes(v) -> str:
    if not v or math.isnan(v[0]):
        return "—"
    return f"{v[0] / 60:.1f}"


def _order(systems: Sequence[str]) -> List[str]:
    known = list(_system_info())
    return sorted(systems, key=lambda s: (known.index(s) if s in known else len(known), s))


def _sizes(keys) -> List[str]:
    sizes = {k[0] for k in keys}
    return [s for s in ("full", "low") if s in sizes] + sorted(sizes - {"full", "low"})


def render(agg: Dict[Tuple[str, str], Dict], meta: Optional[Dict] = None, runs: Optional[Sequence[Dict]] = None) -> str:
    """The markdown: the per-size tables, the paired differences of ``runs`` (those ``agg`` was made
    of), the summary by size."""
    systems = _system_info()
    lines = ["# HarmoniFuse benchmark", ""]
    inv = (meta or {}).get("invocations") or []
    if inv:  # every invocation: together they reproduce the table (each one skips the runs already done)
        lines += [f"Produced by {len(inv)} invocation(s) of the resumable command, oldest first:", "", "```"]
        for i in inv:
            lines += [f"# {i.get('started', 'start time not recorded')}", i["command"]]
        lines += ["```", ""]
    machine = (meta or {}).get("machine")
    if machine:
        lines += [f"Machine: {machine.get('cpu')} ({machine.get('cpu_count')} cores, {machine.get('mem_gb')} GB), "
                  f"torch {machine.get('torch')}, espnet {machine.get('espnet')}, pocketsphinx {machine.get('pocketsphinx')}.", ""]
    lines += [
        "Mean ± sample standard deviation over the seeds that finished (n); WER/CER in % (lower is better),",
        "SER UA (unweighted accuracy), WA (weighted accuracy) and macro-F1 in % (higher is better), on the test sets.",
        "Params: all parameters of the model; trainable: those with requires_grad. Train: mean training wall",
        "time per run in minutes (decoding excluded).", "",
    ]
    for size in _sizes(agg):
        rows = [s for s in _order([k[1] for k in agg if k[0] == size])]
        lines += [f"## {size}" + (f" ({SIZE_TITLES[size]})" if size in SIZE_TITLES else ""), "",
                  "| system | n | WER | CER | SER UA | SER WA | SER macro-F1 | params | trainable | train (min) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        notes = []
        for name in rows:
            a = agg[(size, name)]
            label = systems[name].label if name in systems else name
            per_task = {}
            for m, (_, task) in METRICS.items():
                if a.get(m):
                    per_task[task] = max(per_task.get(task, 0), a[m][2])
            ns = set(per_task.values())
            n = str(ns.pop()) if len(ns) == 1 else ", ".join(f"{t} {k}" for t, k in per_task.items()) or "0"
            cells = [f"{label} (`{name}`)", n] + [fmt_metric(a.get(m)) for m in METRICS] + [
                fmt_params(a.get("params")), fmt_params(a.get("trainable_params")), fmt_minutes(a.get("train_seconds"))]
            lines.append("| " + " | ".join(cells) + " |")
            if a["failed"]:
                notes.append(f"`{name}`: seed(s) {', '.join(map(str, a['failed']))} failed (see bench_run.json)")
        lines.append("")
        if notes:
            lines += ["Failed runs: " + "; ".join(notes) + ".", ""]
    lines += render_paired(runs or [])
    if len(_sizes(agg)) > 1:
        lines += ["## Summary: WER / SER UA by size", "",
                  "| system | " + " | ".join(_sizes(agg)) + " |", "|---|" + "---:|" * len(_sizes(agg))]
        for name in _order({k[1] for k in agg}):
            cells = []
            for size in _sizes(agg):
                a = agg.get((size, name))
                if not a:
                    cells.append("")
                    continue
                parts = [fmt_metric(a.get("wer")) if a.get("wer") else None, fmt_metric(a.get("ua")) if a.get("ua") else None]
                cells.append(" / ".join(p if p else "—" for p in parts))
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def render_runs(runs: Sequence[Dict]) -> str:
    """Every run counted in the table, one row each: the per-seed figures behind the means. They keep
    the table checkable where the run dirs are gone (``bench/`` is output, not tracked by git)."""
    heads = [h for h, _ in METRICS.values()]
    lines = ["## Per run", "", "| size | system | seed | " + " | ".join(heads) + " | train (min) | status |",
             "|---|---|---:|" + "---:|" * (len(heads) + 1) + "---|"]
    size_rank = {s: i for i, s in enumerate(_sizes({(r["size"], "") for r in runs}))}
    system_rank = {s: i for i, s in enumerate(_order({r["system"] for r in runs}))}
    for r in sorted(runs, key=lambda r: (size_rank[r["size"]], system_rank[r["system"]], r["seed"])):
        cells = [r["size"], f"`{r['system']}`", str(r["seed"])]
        cells += [f"{r['metrics'][m]:.2f}" if m in r["metrics"] else "—" for m in METRICS]
        t = r["record"].get("train_seconds")
        cells += [f"{float(t) / 60:.1f}" if t is not None else "—", r["record"].get("status", "no bench_run.json")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n"


# ---------------------------------------------------------------------------- layer weights
def load_layer_weights(run_dir: Path) -> Optional[Dict[str, np.ndarray]]:
    """``{task: (n_prompts, L+1)}`` of a HarmoniFuse run: its layer_weights.npz, or else from
    ``HarmoniFuse.from_pretrained(run_dir).model.layer_weights_per_task()``."""
    npz = Path(run_dir) / "layer_weights.npz"
    if npz.is_file():
        with np.load(npz) as z:
            return {k: np.atleast_2d(z[k]) for k in z.files}
    if not (Path(run_dir) / "config.yaml").is_file():
        return None
    try:
        from espnet_harmonifuse.api import HarmoniFuse

        rec = json.loads((Path(run_dir) / "bench_run.json").read_text()) if (Path(run_dir) / "bench_run.json").is_file() else {}
        hf = HarmoniFuse.from_pretrained(run_dir, rec.get("inference_model"))
        return {k: np.atleast_2d(v.numpy()) for k, v in hf.model.layer_weights_per_task().items()}
    except Exception as e:  # noqa: BLE001
        logging.warning("no layer weights for %s: %s", run_dir, e)
        return None


def plot_size_layer_weights(runs: Sequence[Dict], size: str, out: Path) -> Optional[str]:
    """Prompt-adaptive models' per-task weights (stacked over seeds) next to the static vector(s)."""
    from espnet_harmonifuse.utils.plots import plot_layer_weights

    adaptive: Dict[str, List[np.ndarray]] = {}
    static: Dict[str, List[np.ndarray]] = {}
    for r in runs:
        rec = r["record"]
        if r["size"] != size or rec.get("status") != "done" or rec.get("fusion") not in ("prompt_adaptive", "static"):
            continue
        w = load_layer_weights(Path(r["dir"]))
        if not w:
            continue
        if rec["fusion"] == "prompt_adaptive":
            for task, arr in w.items():
                adaptive.setdefault(f"{r['system']}: {task}", []).append(arr)
        else:  # one vector, the same for every task and prompt
            static.setdefault(r["system"], []).append(next(iter(w.values()))[0])
    if not adaptive and not static:
        return None
    weights = {k: np.concatenate(v, axis=0) for k, v in sorted(adaptive.items())}
    main_static = "static_fusion" if "static_fusion" in static else (sorted(static)[0] if static else None)
    for name, vecs in sorted(static.items()):
        if name != main_static:
            weights[f"{name} (static)"] = np.stack(vecs)
    title = f"Layer weights per task ({size}); grey: {main_static or 'no'} static model"
    vec = np.mean(np.stack(static[main_static]), axis=0) if main_static else None
    return plot_layer_weights(weights, out, title, static=vec, rows="prompts x seeds")


def split_stale(runs: Sequence[Dict], digests: Optional[Dict[str, str]]) -> Tuple[List[Dict], List[Dict]]:
    """``(current, stale)``: a run is stale when it recorded another config digest than its system's now."""
    current, stale = [], []
    for r in runs:
        old = r["record"].get("config_digest")
        now = (digests or {}).get(r["system"])
        (stale if old is not None and now is not None and old != now else current).append(r)
    return current, stale


def write_all(bench_dir, out: Optional[str] = None, digests: Optional[Dict[str, str]] = None) -> str:
    """Write BENCH/RESULTS.md and the layer-weight plots; returns the markdown path.

    ``digests`` (system -> config digest now): runs made with another config are left out of the
    table and listed under it, so one table never mixes two configs of a system."""
    bench = Path(bench_dir)
    runs, stale = split_stale(collect(bench), digests)
    agg = aggregate(runs)
    meta_path = bench / "benchmark.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
    text = render(agg, meta, runs)
    if stale:
        names = ", ".join(f"{r['size']}/{r['system']}/seed{r['seed']}" for r in stale)
        text += (f"Left out: {len(stale)} run(s) made with another config than the system's current one "
                 f"({names}); `--rerun_stale` reruns them.\n\n")
    if runs:
        text += render_runs(runs)
    done = [r["record"] for r in runs if r["record"].get("status") == "done"]
    if done:
        train = sum(float(r.get("train_seconds") or 0.0) for r in done) / 3600
        dec = sum(float(r.get("decode_seconds") or 0.0) for r in done) / 3600
        text += (f"Compute: {len(done)} finished runs, {train + dec:.2f} h of wall time in all (training {train:.2f} h, "
                 f"decoding and scoring {dec:.2f} h; data preparation not included).\n\n")
    plots = []
    for size in _sizes(agg):
        png = bench / ("layer_weights.png" if size == "full" else f"layer_weights_{size}.png")
        try:
            if plot_size_layer_weights(runs, size, png):
                plots.append(png.name)
        except Exception as e:  # noqa: BLE001
            logging.warning("layer-weight plot for %s failed: %s", size, e)
    if plots:
        text += "Layer weights: " + ", ".join(f"![{p}]({p})" for p in plots) + "\n"
    path = Path(out) if out else bench / "RESULTS.md"
    path.write_text(text, encoding="utf-8")
    return str(path)


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bench_dir", default="bench")
    p.add_argument("--out", default=None, help="default: BENCH_DIR/RESULTS.md")
    p.add_argument("--smoke", action="store_true", help="the runs were made with benchmark.sh --smoke")
    p.add_argument("--all_configs", action="store_true",
                   help="count every finished run, also those of an older config (default: list them apart)")
    args = p.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (table) %(levelname)s: %(message)s")
    from benchmarks.mini_emo.plan import Context, current_digests

    digests = None if args.all_configs else current_digests(Context(smoke=args.smoke))  # as run.py leaves them out
    path = write_all(args.bench_dir, args.out, digests=digests)
    logging.info("wrote %s", path)
    return path


if __name__ == "__main__":
    main()
