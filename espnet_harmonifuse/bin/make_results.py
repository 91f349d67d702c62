#!/usr/bin/env python3
"""Write an ESPnet-style RESULTS.md from the scores.json files of an exp dir.

Usage:
    python -m espnet_harmonifuse.bin.make_results --exp_dir EXP \
        [--out EXP/RESULTS.md] [--title TITLE] [--extra_md FILE] [--stage_times TSV --model_tag TAG]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_harmonifuse.scoring.results_md import write_results_md


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exp_dir", required=True,
                   help="Directory scanned for decode*/<set>/score*/scores.json")
    p.add_argument("--out", default=None,
                   help="Output markdown (default: EXP_DIR/RESULTS.md)")
    p.add_argument("--title", default="RESULTS", help="Top-level heading")
    p.add_argument("--extra_md", default=None,
                   help="Markdown file appended verbatim")
    p.add_argument("--stage_times", default=None,
                   help="the recipe's stage_times.tsv: a table of stages 1-5 and of --model_tag's 6-10")
    p.add_argument("--model_tag", default="", help="the model whose stage times are listed")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> str:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    exp = Path(args.exp_dir)
    if not exp.is_dir():
        raise FileNotFoundError(f"--exp_dir not found: {exp}")
    out = args.out if args.out is not None else exp / "RESULTS.md"
    path = write_results_md(exp, out, title=args.title, extra_md=args.extra_md,
                            stage_times=args.stage_times, model_tag=args.model_tag)
    logging.info("Wrote %s", path)
    return path


if __name__ == "__main__":
    main()
