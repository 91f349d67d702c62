"""Reading Kaldi-style ``text`` files and matching reference/hypothesis ids.

A Kaldi ``text`` file has one ``uttid<space>text`` entry per line; the text
may be empty (a line holding only the id).  Blank lines are ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

PathLike = Union[str, Path]

logger = logging.getLogger(__name__)

_MAX_IDS_SHOWN = 5


def read_text(path: PathLike) -> Dict[str, str]:
    """Read a Kaldi-style ``text`` file into an ordered ``{uttid: text}`` dict.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file holds no utterance or has a duplicated id.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Text file not found: {path}")
    entries: Dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.strip().split(maxsplit=1)
            uttid = parts[0]
            if uttid in entries:
                raise ValueError(
                    f"Duplicated utterance id '{uttid}' at {path}:{lineno}"
                )
            entries[uttid] = parts[1] if len(parts) > 1 else ""
    if not entries:
        raise ValueError(f"Text file is empty (no utterances): {path}")
    return entries


def _preview(ids: List[str]) -> str:
    shown = ", ".join(ids[:_MAX_IDS_SHOWN])
    if len(ids) > _MAX_IDS_SHOWN:
        shown += ", ..."
    return shown


def match_ids(
    ref: Dict[str, str], hyp: Dict[str, str]
) -> List[Tuple[str, str, Optional[str]]]:
    """Pair every reference utterance with its hypothesis.

    Returns:
        ``(uttid, ref_text, hyp_text)`` triples in reference order;
        ``hyp_text`` is None when the hypothesis is missing.  Missing and
        extra (hypothesis-only, ignored) ids are reported with a warning.
    """
    missing = [k for k in ref if k not in hyp]
    extra = [k for k in hyp if k not in ref]
    if missing:
        logger.warning(
            "%d of %d reference utterances have no hypothesis (scored as "
            "errors): %s",
            len(missing),
            len(ref),
            _preview(missing),
        )
    if extra:
        logger.warning(
            "%d hypothesis utterances are not in the reference (ignored): %s",
            len(extra),
            _preview(extra),
        )
    return [(k, v, hyp.get(k)) for k, v in ref.items()]


def read_utt2spk(path: PathLike) -> Dict[str, str]:
    """Read a Kaldi ``utt2spk`` file (``uttid spkid`` per line)."""
    entries = read_text(path)
    return {k: (v.split()[0] if v.strip() else k) for k, v in entries.items()}
