"""Helpers shared by the small command-line tools."""

import argparse
import logging
from pathlib import Path
from typing import List, Optional


def load_train_args(config: Optional[str], overrides: Optional[List[str]] = None) -> argparse.Namespace:
    """The training options of ``config`` (with defaults filled in), as training would see them."""
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    cmd = (["--config", config] if config else []) + list(overrides or [])
    if config and not Path(config).is_file():
        raise FileNotFoundError(f"config '{config}' does not exist")
    return HarmoniFuseTask.get_parser().parse_args(cmd)


def scoring_parser(doc: str) -> argparse.ArgumentParser:
    """The options every scoring tool takes: reference, hypothesis, output dir, log level."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--ref", required=True, help="Reference Kaldi text file")
    p.add_argument("--hyp", required=True, help="Hypothesis Kaldi text file")
    p.add_argument("--out_dir", required=True, help="Output directory")
    p.add_argument("--log_level", default="INFO")
    return p


def parse_with_logging(parser: argparse.ArgumentParser, cmd: Optional[List[str]]) -> argparse.Namespace:
    args = parser.parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    return args
