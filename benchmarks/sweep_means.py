#!/usr/bin/env python3
"""Means over seeds of dev_sweep.py results, per configuration, with the dev criterion.

    python benchmarks/sweep_means.py --model valid.acc.ave_3best.pth \
        "pre15 1:1=results/dev_sweep_cpu_lsm/sweep_seed*.json:default_lsm0.1" \
        "pre25 1:2=results/dev_sweep_cpu_ser2/pre25_*.json:default_ser2"

Each argument is ``LABEL=GLOB:VARIANT``: the records of VARIANT (its seeds: ``VARIANT`` and
``VARIANT_seed<k>``) in the sweep.json files that GLOB matches. ``--model`` reads the scores of that
extra decode (dev_sweep.py ``--models``) instead of the run's own. The dev criterion is the mean of
dev WER and dev (100 - UA), lower is better: the rule of the earlier choices. Choose on the dev
columns; the test ones are reported.
"""

import argparse
import glob
import json
import re
import statistics
from typing import Dict, List, Optional

COLUMNS = ("asr_dev.wer", "ser_dev.ua", "asr_test.wer", "ser_test.ua")


def records(pattern: str, variant: str, model: str = "") -> Dict[int, Dict[str, float]]:
    """{seed: scores} of ``variant`` in the sweep.json files matching ``pattern``."""
    out: Dict[int, Dict[str, float]] = {}
    for path in sorted(glob.glob(pattern)):
        for rec in json.load(open(path)):
            m = re.fullmatch(re.escape(variant) + r"(?:_seed(\d+))?", rec["name"])
            if not m or rec.get("status") != "done":
                continue
            scores = rec.get(f"model:{model}") if model else rec
            if scores and all(c in scores for c in COLUMNS):
                out[int(rec["seed"])] = {c: float(scores[c]) for c in COLUMNS}
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
        mean = {c: statistics.mean(by_seed[k][c] for k in seeds) for c in COLUMNS}
        crit = statistics.mean(criterion(by_seed[k]) for k in seeds)
        per = ", ".join(f"{by_seed[k]['asr_dev.wer']:.2f} / {by_seed[k]['ser_dev.ua']:.0f}" for k in seeds)
        rows.append(f"| {label} | {','.join(map(str, seeds))} | {mean['asr_dev.wer']:.2f} | {mean['ser_dev.ua']:.2f} "
                    f"| {crit:.2f} | {mean['asr_test.wer']:.2f} | {mean['ser_test.ua']:.2f} | {per} |")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("groups", nargs="+", help="LABEL=GLOB:VARIANT")
    p.add_argument("--model", default="", help="read this extra decode's scores (e.g. valid.acc.ave_3best.pth)")
    args = p.parse_args(argv)
    groups = {}
    for g in args.groups:
        label, sep, rest = g.partition("=")
        pattern, sep2, variant = rest.rpartition(":")
        if not (sep and sep2 and label and pattern and variant):
            p.error(f"'{g}' is not LABEL=GLOB:VARIANT")
        groups[label] = records(pattern, variant, args.model)
    print(table(groups))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
