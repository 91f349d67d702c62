"""Helpers shared by the small command-line tools."""

import argparse
from pathlib import Path
from typing import Iterator, List, Optional, Tuple


def load_train_args(config: Optional[str], overrides: Optional[List[str]] = None) -> argparse.Namespace:
    """The training options of ``config`` (with defaults filled in), as training would see them."""
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    cmd = (["--config", config] if config else []) + list(overrides or [])
    if config and not Path(config).is_file():
        raise FileNotFoundError(f"config '{config}' does not exist")
    return HarmoniFuseTask.get_parser().parse_args(cmd)


def read_kaldi_text(path: str) -> Iterator[Tuple[str, str]]:
    """``(uttid, text)`` for each line of a Kaldi-style ``text`` file."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            uid, _, text = line.partition(" ")
            yield uid, text.strip()
