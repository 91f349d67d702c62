#!/usr/bin/env python3
"""Score SER hypotheses: UA, WA, macro-F1, confusion matrix (json + png).

Usage:
    python -m espnet_harmonifuse.bin.score_ser --ref REF_TEXT --hyp HYP_TEXT \
        --labels neutral,happy,angry,sad --out_dir DIR [--no_plot]
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

from espnet_harmonifuse.bin.common import parse_with_logging, scoring_parser
from espnet_harmonifuse.scoring.score_files import score_ser_files


def get_parser() -> argparse.ArgumentParser:
    p = scoring_parser(__doc__)
    p.add_argument("--labels", required=True,
                   help="Comma-separated label list, e.g. neutral,happy,angry,sad")
    p.add_argument("--no_plot", action="store_true",
                   help="Do not write confusion.png")
    return p


def main(cmd: Optional[List[str]] = None) -> Dict[str, object]:
    args = parse_with_logging(get_parser(), cmd)
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    return score_ser_files(
        args.ref, args.hyp, labels, args.out_dir, plot=not args.no_plot
    )


if __name__ == "__main__":
    main()
