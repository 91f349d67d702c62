"""Prepare IEMOCAP (4 emotion classes, leave-one-session-out) as Kaldi-style data dirs.

    python -m espnet_harmonifuse.data.iemocap --root $IEMOCAP --data_dir data --fold 5 \\
        [--dev_ratio 0.1] [--seed 0]

``--root`` is ``IEMOCAP_full_release`` (holding ``Session1`` ... ``Session5``; a dir holding
``IEMOCAP_full_release/`` is accepted too). Labels come from the summary lines of
``Session{N}/dialog/EmoEvaluation/<dialog>.txt``::

    [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]

and audio from ``Session{N}/sentences/wav/<dialog>/<utt>.wav``. Label mapping: neu -> neutral,
hap and exc -> happy, ang -> angry, sad -> sad; every other category (fru, sur, fea, dis, oth, xxx)
is dropped and counted. Speaker = session + the gender letter of the utterance's last id part
(``Ses01F_impro01_M000`` -> ``Ses01M``), i.e. 10 speakers.

Fold k: session k is the test set; the other sessions are training data, of which a random
``--dev_ratio`` share (seeded, stratified by label, NOT speaker-disjoint: IEMOCAP has only 8
training speakers per fold) is held out as the dev set. Writes
``DATA_DIR/iemocap_{train,dev,test}_fold{k}/{wav.scp,text,utt2spk,spk2utt}``; ``text`` holds
the label word.
"""
import argparse
import logging
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_harmonifuse.data.kaldi_dir import write_data_dir
from espnet_harmonifuse.utils.cli import run_cli

LABEL_MAP = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
LABELS = ("neutral", "happy", "angry", "sad")
SUMMARY_RE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\S+)\s+(\S+)\s+\[")
SESSION_RE = re.compile(r"^Session([1-9])$")


class IemocapError(ValueError):
    """The IEMOCAP tree is missing or does not have the expected layout."""


def find_root(root: str) -> Path:
    """The dir holding ``Session{N}`` (``root`` itself or ``root/IEMOCAP_full_release``)."""
    base = Path(root)
    if not base.is_dir():
        raise IemocapError(
            f"IEMOCAP root '{root}' is not a directory; it must be IEMOCAP_full_release/, "
            f"holding Session1 ... Session5 (set IEMOCAP in db.sh)"
        )
    for cand in (base, base / "IEMOCAP_full_release"):
        if cand.is_dir() and any(SESSION_RE.match(p.name) and p.is_dir() for p in cand.iterdir()):
            return cand
    raise IemocapError(
        f"IEMOCAP root '{root}' holds no Session1 ... Session5 dirs; it must be "
        f"IEMOCAP_full_release/ (Session{{N}}/sentences/wav/, Session{{N}}/dialog/EmoEvaluation/)"
    )


def sessions_in(root: Path) -> List[int]:
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := SESSION_RE.match(p.name)))


def speaker_of(utt: str) -> str:
    """``Ses01F_impro01_M000`` -> ``Ses01M`` (session + the gender letter of the last part)."""
    last = utt.rsplit("_", 1)[-1]
    if not utt.startswith("Ses") or len(utt) < 5 or not last or last[0] not in "FM":
        raise IemocapError(f"unexpected IEMOCAP utterance id '{utt}' (expected e.g. Ses01F_impro01_F000)")
    return utt[:5] + last[0]


def read_emo_evaluation(path: Path) -> List[Tuple[str, str]]:
    """(utterance id, raw category) for each summary line of one EmoEvaluation file."""
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = SUMMARY_RE.match(line.rstrip("\r\n"))
            if m:
                out.append((m.group(3), m.group(4)))
    return out


def scan_session(root: Path, session: int) -> Tuple[List[Tuple[str, str, str]], Counter, int]:
    """Utterances of one session as (utt, label, wav path); raw category counts; missing wavs."""
    sdir = root / f"Session{session}"
    emo_dir = sdir / "dialog" / "EmoEvaluation"
    wav_dir = sdir / "sentences" / "wav"
    for d in (emo_dir, wav_dir):
        if not d.is_dir():
            raise IemocapError(f"'{d}' is missing: is '{root}' a complete IEMOCAP_full_release?")
    files = sorted(p for p in emo_dir.glob("*.txt") if not p.name.startswith("."))
    if not files:
        raise IemocapError(f"no <dialog>.txt label files in '{emo_dir}'")
    utts, raw, missing = [], Counter(), 0
    for path in files:
        for utt, cat in read_emo_evaluation(path):
            raw[cat] += 1
            if cat not in LABEL_MAP:
                continue
            wav = wav_dir / path.stem / f"{utt}.wav"
            if not wav.is_file():
                missing += 1
                logging.warning("IEMOCAP: no audio for labelled utterance %s (%s); skipped", utt, wav)
                continue
            utts.append((utt, LABEL_MAP[cat], str(wav.resolve())))
    return utts, raw, missing


def split_dev(utts: Sequence[Tuple[str, str, str]], dev_ratio: float, seed: int) -> Tuple[list, list]:
    """Random dev share of ``utts``, stratified by label (at least one per label when possible)."""
    rng = np.random.RandomState(seed)
    train, dev = [], []
    for label in LABELS:
        group = sorted(u for u in utts if u[1] == label)
        order = rng.permutation(len(group))
        n_dev = int(round(dev_ratio * len(group)))
        if dev_ratio > 0 and n_dev == 0 and len(group) > 1:
            n_dev = 1
        dev += [group[i] for i in order[:n_dev]]
        train += [group[i] for i in order[n_dev:]]
    return sorted(train), sorted(dev)


def _write(data_dir: str, name: str, utts: Sequence[Tuple[str, str, str]]) -> str:
    d = os.path.join(data_dir, name)
    write_data_dir(d, {u: w for u, _, w in utts}, {u: lab for u, lab, _ in utts},
                   {u: speaker_of(u) for u, _, _ in utts})
    return d


def prepare_iemocap(root: str, data_dir: str, fold: int = 5, dev_ratio: float = 0.1, seed: int = 0) -> Dict:
    """Write the fold's train/dev/test dirs; returns a summary (counts per split, drops)."""
    if not 0 <= dev_ratio < 1:
        raise IemocapError(f"--dev_ratio must be in [0, 1), got {dev_ratio}")
    base = find_root(root)
    sessions = sessions_in(base)
    if fold not in sessions:
        raise IemocapError(
            f"fold {fold} needs '{base / f'Session{fold}'}' as its test session; found sessions "
            f"{sessions} in '{base}'"
        )
    if len(sessions) < 2:
        raise IemocapError(f"'{base}' holds only Session{fold}: no training session left")
    per_session, raw, missing = {}, Counter(), 0
    for s in sessions:
        per_session[s], r, m = scan_session(base, s)
        raw += r
        missing += m
    test = sorted(per_session[fold])
    train_all = [u for s in sessions if s != fold for u in per_session[s]]
    train, dev = split_dev(train_all, dev_ratio, seed)
    if not test or not train:
        raise IemocapError(f"fold {fold}: no usable utterances in the {'test' if not test else 'train'} part")
    dropped = {c: n for c, n in sorted(raw.items()) if c not in LABEL_MAP}
    summary = {
        "fold": fold, "sessions": sessions, "root": str(base),
        "raw_counts": dict(sorted(raw.items())), "dropped": dropped,
        "dropped_total": sum(dropped.values()), "missing_wav": missing, "splits": {},
    }
    for part, utts in (("train", train), ("dev", dev), ("test", test)):
        name = f"iemocap_{part}_fold{fold}"
        if not utts:
            logging.warning("IEMOCAP: %s is empty (dev_ratio=%s); not written", name, dev_ratio)
            continue
        _write(data_dir, name, utts)
        summary["splits"][name] = dict(Counter(lab for _, lab, _ in utts), total=len(utts))
    logging.info("IEMOCAP %s: sessions %s, test session %d", base, sessions, fold)
    logging.info("IEMOCAP raw categories: %s", " ".join(f"{k}={v}" for k, v in summary["raw_counts"].items()))
    logging.info("IEMOCAP dropped %d utterances: %s (exc merged into happy)", summary["dropped_total"],
                 " ".join(f"{k}={v}" for k, v in dropped.items()) or "none")
    for name, counts in summary["splits"].items():
        logging.info("IEMOCAP %s: %s", name, " ".join(f"{k}={v}" for k, v in counts.items()))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--root", required=True, help="IEMOCAP_full_release dir (holds Session1..5)")
    parser.add_argument("--data_dir", default="data", help="where iemocap_*_fold<k>/ are written")
    parser.add_argument("--fold", type=int, default=5, help="test session (1-5); the others train")
    parser.add_argument("--dev_ratio", type=float, default=0.1,
                        help="random share of training utterances held out as dev (per label)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev split")
    args = parser.parse_args(argv)
    return run_cli(lambda: prepare_iemocap(args.root, args.data_dir, args.fold, args.dev_ratio, args.seed), (IemocapError,))


if __name__ == "__main__":
    sys.exit(main())
