"""Helpers shared by the small command-line tools."""

import argparse
from pathlib import Path
from typing import List, Optional


def load_train_args(config: Optional[str], overrides: Optional[List[str]] = None) -> argparse.Namespace:
    """The training options of ``config`` (with defaults filled in), as training would see them."""
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    cmd = (["--config", config] if config else []) + list(overrides or [])
    if config and not Path(config).is_file():
        raise FileNotFoundError(f"config '{config}' does not exist")
    return HarmoniFuseTask.get_parser().parse_args(cmd)
