#!/usr/bin/env python3
"""The ``done`` marker of stage 6's encoder pre-training, and whether a finished one is current.

The marker records a digest of the pre-training config (what it resolves to, not how it is
written) and of every file its training options name (``--{train,valid}_task_data``,
``--{train,valid}_task_shape_file``, ``--bpemodel``), by content, so that a copied or re-written
but equal file keeps it current.

    python -m espnet_harmonifuse.bin.pretrain_marker check --dir exp/pretrain --config conf/pretrain.yaml \\
        -- --train_task_data asr:dump/raw/asr_train/wav.scp,speech,sound ...
        prints "current", "absent" (no marker) or "stale: <what changed>"
    ... write --dir D --config C -- OPTIONS...   records them in D/done
    ... set_aside --dir D                          moves D to D.stale.<n> (deletes nothing), prints it
"""

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

MARKER = "done"


def config_content(path: str) -> Dict:
    """The config as training reads it (``base_config`` chain merged), which the digest covers: comments,
    layout and the split into override files do not count."""
    from espnet_harmonifuse.utils.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as e:
        raise SystemExit(f"pretrain_marker: {e}") from None


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def option_files(train_opts: Sequence[str]) -> List[str]:
    """The files that training options name, in order."""
    files = []
    for opt, value in zip(train_opts, train_opts[1:]):
        if opt.endswith("_task_data"):  # TASK:PATH,NAME,TYPE
            files.append(value.split(":", 1)[-1].rsplit(",", 2)[0])
        elif opt.endswith("_task_shape_file"):  # TASK:PATH
            files.append(value.split(":", 1)[-1])
        elif opt == "--bpemodel":
            files.append(value)
    return files


def inputs_record(config: str, train_opts: Sequence[str]) -> Dict:
    """What the pre-training is made from: the config's digest and each named file's."""
    for path in [config, *option_files(train_opts)]:
        if not Path(path).is_file():
            raise SystemExit(f"pretrain_marker: '{path}' does not exist (the pre-training reads it: run the "
                             "stages that write it first, or fix --pretrain_config / --pretrain_tasks)")
    text = json.dumps(config_content(config), sort_keys=True, default=str)
    return {
        "config": {"path": config, "digest": hashlib.sha256(text.encode()).hexdigest()[:16]},
        "files": [{"path": p, "digest": file_digest(p)} for p in option_files(train_opts)],
    }


def stale_reason(old: Dict, new: Dict) -> Optional[str]:
    """Why a pre-training recorded as ``old`` is not one of ``new``'s inputs (None: it is)."""
    old_config = old.get("config", {})
    if old_config.get("digest") != new["config"]["digest"]:
        moved = "" if old_config.get("path") == new["config"]["path"] else f" (it was {old_config.get('path')})"
        return f"its config {new['config']['path']} changed{moved}"
    old_files, new_files = old.get("files", []), new["files"]
    if len(old_files) != len(new_files):
        return f"it reads {len(new_files)} data files now, {len(old_files)} when it was trained"
    for o, n in zip(old_files, new_files):
        if o.get("digest") != n["digest"]:
            return f"{n['path']} changed"
    return None


def check(out_dir: str, record: Dict) -> str:
    marker = Path(out_dir) / MARKER
    if not marker.is_file():
        return "absent"
    try:
        old = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        old = None
    if not isinstance(old, dict):
        return f"stale: {marker} records no digest of its config and data"
    reason = stale_reason(old, record)
    return f"stale: {reason}" if reason else "current"


def write(out_dir: str, record: Dict) -> None:
    record = dict(record, finished=datetime.datetime.now().isoformat(timespec="seconds"))
    (Path(out_dir) / MARKER).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def set_aside(out_dir: str) -> Path:
    """Move ``out_dir`` to the first free ``<out_dir>.stale.<n>``."""
    n = 1
    while Path(f"{out_dir}.stale.{n}").exists():
        n += 1
    return Path(out_dir).rename(f"{out_dir}.stale.{n}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["check", "write", "set_aside"])
    p.add_argument("--dir", required=True, help="the pre-training's experiment dir")
    p.add_argument("--config", help="the pre-training config (check, write)")
    p.epilog = "After --: the pre-training's training options (only the file names in them are read)."
    return p


def main(cmd: Optional[Sequence[str]] = None) -> int:
    cmd = list(sys.argv[1:] if cmd is None else cmd)
    cut = cmd.index("--") if "--" in cmd else len(cmd)
    args, opts = get_parser().parse_args(cmd[:cut]), cmd[cut + 1 :]
    if args.action == "set_aside":
        print(set_aside(args.dir))
        return 0
    if not args.config:
        raise SystemExit(f"pretrain_marker {args.action}: give --config (the pre-training config)")
    record = inputs_record(args.config, opts)
    if args.action == "check":
        print(check(args.dir, record))
    else:
        write(args.dir, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
