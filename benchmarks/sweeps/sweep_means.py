#!/usr/bin/env python3
"""Means over seeds of dev_sweep.py results, per configuration, with the dev criterion.

    python -m benchmarks.sweeps.sweep_means --model valid.acc.ave_3best.pth \
        "pre15 1:1=sweep_lsm/seed*/sweep.json:default_lsm0.1" "pre25 1:2=sweep_ser2/*/sweep.json:default_ser2"

Each argument is ``LABEL=GLOB:VARIANT``: the records of VARIANT (its seeds: ``VARIANT`` and
``VARIANT_seed<k>``) in the sweep.json files that GLOB matches. ``--model`` reads the scores of that
extra decode (dev_sweep.py ``--models``) instead of the run's own. The dev criterion is the mean of
dev WER and dev (100 - UA), lower is better: one number for both tasks. Choose on the dev
columns; the test ones are reported.

With ``--tag T``, each argument is ``LABEL=GLOB:VARIANT`` where GLOB matches experiment dirs (the
sweep's expdirs) and the scores are read from ``<expdir>/<run>/decode_T/<set>/score_*/scores.json``
for ``--sets`` (an ASR and an SER set: e.g. the larger dev set of extra_dev.py):

    python -m benchmarks.sweeps.sweep_means --tag devx_ave3 --sets asr_devx,ser_devx \
        "pre25 1:2=exp/dev_sweep_pre25:default_ser2"
"""

import argparse
import glob
import json
import re
import statistics
from pathlib import Path
from typing import Dict, List, Optional

COLUMNS = ("asr_dev.wer", "ser_dev.ua", "asr_test.wer", "ser_test.ua")


def seed_of(variant: str, run: str) -> Optional[int]:
    """The seed of run ``run`` of ``variant`` (``variant``: 0, ``variant_seed<k>``: k); None: another variant."""
    m = re.fullmatch(re.escape(variant) + r"(?:_seed(\d+))?", run)
    return None if m is None else int(m.group(1) or 0)


def records(pattern: str, variant: str, model: str = "") -> Dict[int, Dict[str, float]]:
    """{seed: scores} of ``variant`` in the sweep.json files matching ``pattern``."""
    out: Dict[int, Dict[str, float]] = {}
    for path in sorted(glob.glob(pattern)):
        for rec in json.load(open(path)):
            if seed_of(variant, rec["name"]) is None or rec.get("status") != "done":
                continue
            scores = rec.get(f"model:{model}") if model else rec
            if scores and all(c in scores for c in COLUMNS):
                out[int(rec["seed"])] = {c: float(scores[c]) for c in COLUMNS}
    return out


def decoded(pattern: str, variant: str, tag: str, asr_set: str, ser_set: str) -> Dict[int, Dict[str, float]]:
    """{seed: {"asr_dev.wer", "ser_dev.ua"}} from the decodes ``decode_<tag>`` of the runs of ``variant``
    (seed 0: the run named ``variant``; seed k: ``variant_seed<k>``) under the dirs matching ``pattern``;
    a run with either score missing is left out."""
    out: Dict[int, Dict[str, float]] = {}
    for expdir in sorted(glob.glob(pattern)):
        for run in sorted(Path(expdir).iterdir()):
            seed = seed_of(variant, run.name)
            wer = run / f"decode_{tag}" / asr_set / "score_wer" / "scores.json"
            ser = run / f"decode_{tag}" / ser_set / "score_ser" / "scores.json"
            if seed is not None and wer.is_file() and ser.is_file():
                out[seed] = {"asr_dev.wer": float(json.loads(wer.read_text())["wer"]),
                                             "ser_dev.ua": float(json.loads(ser.read_text())["ua"])}
    return out


def criterion(s: Dict[str, float]) -> float:
    return (s["asr_dev.wer"] + 100.0 - s["ser_dev.ua"]) / 2


def table(groups: Dict[str, Dict[int, Dict[str, float]]]) -> str:
    head = "| configuration | seeds | dev WER | dev UA | dev criterion | test WER | test UA | per seed: dev WER / dev UA |"
    rows = [head, "|---|---|" + "---:|" * 5 + "---|"]
    for label, by_seed in groups.items():
        if not by_seed:
            rows.append(f"| {label} | none | | | | | | |")
            continue
        seeds = sorted(by_seed)
        mean = {c: statistics.mean(by_seed[k][c] for k in seeds) if c in by_seed[seeds[0]] else None
                for c in COLUMNS}
        crit = statistics.mean(criterion(by_seed[k]) for k in seeds)
        per = ", ".join(f"{by_seed[k]['asr_dev.wer']:.2f} / {by_seed[k]['ser_dev.ua']:.2f}" for k in seeds)
        cell = {c: "-" if mean[c] is None else f"{mean[c]:.2f}" for c in COLUMNS}
        cells = [label, ",".join(map(str, seeds)), cell["asr_dev.wer"], cell["ser_dev.ua"], f"{crit:.2f}",
                 cell["asr_test.wer"], cell["ser_test.ua"], per]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("groups", nargs="+", help="LABEL=GLOB:VARIANT")
    p.add_argument("--model", default="", help="read this extra decode's scores (e.g. valid.acc.ave_3best.pth)")
    p.add_argument("--tag", default="", help="read decode_<tag> of the runs under expdirs (GLOB) instead")
    p.add_argument("--sets", default="asr_devx,ser_devx", help="with --tag: the ASR set and the SER set")
    args = p.parse_args(argv)
    asr_set, _, ser_set = args.sets.partition(",")
    groups = {}
    for g in args.groups:
        label, sep, rest = g.partition("=")
        pattern, sep2, variant = rest.rpartition(":")
        if not (sep and sep2 and label and pattern and variant):
            p.error(f"'{g}' is not LABEL=GLOB:VARIANT")
        groups[label] = (decoded(pattern, variant, args.tag, asr_set, ser_set) if args.tag
                         else records(pattern, variant, args.model))
    print(table(groups))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
