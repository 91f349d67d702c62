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


def read_config(config: Optional[str]) -> dict:
    """A training config's keys (its base configs resolved), read from the YAML alone: no ESPnet parser
    and no torch, so that a short stage starts in a fraction of a second. Keys it does not set keep
    the training parser's defaults (see :func:`config_tasks`, :func:`config_tokenizer`)."""
    from espnet_harmonifuse.utils.config import load_config

    if not config:
        return {}
    if not Path(config).is_file():
        raise FileNotFoundError(f"config '{config}' does not exist")
    return load_config(config)


def config_tasks(cfg: dict) -> list:
    """The config's ``tasks`` (the training default where it has none)."""
    from espnet_harmonifuse.task_spec import DEFAULT_TASKS

    return cfg.get("tasks", DEFAULT_TASKS)


def config_tokenizer(cfg: dict, bpemodel: Optional[str] = None):
    """The tokenizer a config names (``token_type`` hf by default, as in training); ``bpemodel``
    overrides the config's."""
    from espnet_harmonifuse.tokenizer import build_tokenizer

    name = cfg.get("tokenizer_name_or_path") or (cfg.get("decoder_conf") or {}).get("model_name_or_path")
    return build_tokenizer(cfg.get("token_type", "hf"), bpemodel or cfg.get("bpemodel"), name)


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
