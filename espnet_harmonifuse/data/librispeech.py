"""Prepare LibriSpeech subsets as Kaldi-style data dirs.

    python -m espnet_harmonifuse.data.librispeech --root $LIBRISPEECH --data_dir data \\
        --sets train-clean-100,dev-clean,test-clean,test-other [--lowercase]

``--root`` is the ``LibriSpeech`` dir (a dir holding ``LibriSpeech/`` is accepted too), with
``<set>/<spk>/<chapter>/<spk>-<chapter>.trans.txt`` (lines ``<uttid> <TRANSCRIPT>``) and
``<set>/<spk>/<chapter>/<uttid>.flac``. Writes ``DATA_DIR/librispeech_<set, - as _>/`` with
``wav.scp`` (absolute flac paths), ``text`` (the transcript, upper case as distributed unless
``--lowercase``), ``utt2spk`` (speaker = the reader id ``<spk>``) and ``spk2utt``.
"""
import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from espnet_harmonifuse.data.kaldi_dir import write_data_dir
from espnet_harmonifuse.utils.cli import run_cli

DEFAULT_SETS = ("train-clean-100", "dev-clean", "test-clean", "test-other")
KNOWN_SETS = DEFAULT_SETS + ("train-clean-360", "train-other-500", "dev-other")


class LibriSpeechError(ValueError):
    """The LibriSpeech tree is missing or does not have the expected layout."""


def data_name(subset: str) -> str:
    """``train-clean-100`` -> ``librispeech_train_clean_100``."""
    return "librispeech_" + subset.replace("-", "_")


def find_set_dir(root: str, subset: str) -> Path:
    """``root/<set>`` (or ``root/LibriSpeech/<set>``); a clear error naming the missing path."""
    base = Path(root)
    if not base.is_dir():
        raise LibriSpeechError(
            f"LibriSpeech root '{root}' is not a directory; it must be the LibriSpeech/ dir "
            f"holding {', '.join(DEFAULT_SETS)} (set LIBRISPEECH in db.sh)"
        )
    for cand in (base / subset, base / "LibriSpeech" / subset):
        if cand.is_dir():
            return cand
    hint = "" if subset in KNOWN_SETS else f" (LibriSpeech sets are {', '.join(KNOWN_SETS)})"
    raise LibriSpeechError(
        f"LibriSpeech set dir '{base / subset}' not found: download and extract {subset} "
        f"from openslr.org/12 into '{base}'{hint}"
    )


def scan_set(set_dir: Path, lowercase: bool = False) -> Dict[str, Dict[str, str]]:
    """wav (absolute flac path), text and utt2spk of one subset; unreadable entries are counted."""
    wav, text, utt2spk = {}, {}, {}
    missing, bad_lines = 0, 0
    trans_files = sorted(set_dir.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise LibriSpeechError(f"no <spk>/<chapter>/<spk>-<chapter>.trans.txt files under '{set_dir}'")
    for trans in trans_files:
        spk = trans.parent.parent.name
        with open(trans, encoding="utf-8") as f:
            for line in f:
                parts = line.strip().split(maxsplit=1)
                if not parts:
                    continue
                if len(parts) < 2 or not parts[0].startswith(f"{spk}-"):
                    bad_lines += 1
                    logging.warning("%s: unexpected line '%s'; skipped", trans, line.rstrip())
                    continue
                utt, words = parts
                flac = trans.parent / f"{utt}.flac"
                if not flac.is_file():
                    missing += 1
                    logging.warning("LibriSpeech: %s is missing; utterance %s skipped", flac, utt)
                    continue
                wav[utt] = str(flac.resolve())
                text[utt] = words.lower() if lowercase else words
                utt2spk[utt] = spk
    if not wav:
        raise LibriSpeechError(f"no utterance with audio found under '{set_dir}'")
    return {"wav": wav, "text": text, "utt2spk": utt2spk, "missing_flac": missing, "bad_lines": bad_lines}


def prepare_librispeech(
    root: str, data_dir: str, sets: Sequence[str] = DEFAULT_SETS, lowercase: bool = False
) -> Dict[str, Dict[str, int]]:
    """Write one data dir per subset; returns per-dir counts. All set dirs are checked first."""
    set_dirs = {s: find_set_dir(root, s) for s in sets}
    summary = {}
    for subset, set_dir in set_dirs.items():
        res = scan_set(set_dir, lowercase)
        out = os.path.join(data_dir, data_name(subset))
        write_data_dir(out, res["wav"], res["text"], res["utt2spk"])
        summary[data_name(subset)] = {
            "utts": len(res["wav"]), "speakers": len(set(res["utt2spk"].values())),
            "missing_flac": res["missing_flac"], "bad_lines": res["bad_lines"],
        }
        logging.info("LibriSpeech %s -> %s: %s", set_dir, out,
                     " ".join(f"{k}={v}" for k, v in summary[data_name(subset)].items()))
    return summary


def _parse_sets(value: str) -> List[str]:
    sets = [s.strip() for s in value.replace(" ", ",").split(",") if s.strip()]
    if not sets:
        raise argparse.ArgumentTypeError("--sets must name at least one LibriSpeech set")
    return sets


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--root", required=True, help="LibriSpeech dir (holds train-clean-100/, ...)")
    parser.add_argument("--data_dir", default="data", help="where librispeech_<set>/ are written")
    parser.add_argument("--sets", type=_parse_sets, default=list(DEFAULT_SETS),
                        help=f"comma list of subsets (default: {','.join(DEFAULT_SETS)})")
    parser.add_argument("--lowercase", action="store_true", help="lower-case the transcripts")
    args = parser.parse_args(argv)
    return run_cli(lambda: prepare_librispeech(args.root, args.data_dir, args.sets, args.lowercase), (LibriSpeechError,))


if __name__ == "__main__":
    sys.exit(main())
