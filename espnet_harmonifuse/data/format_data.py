"""Format a Kaldi data dir into 16-bit PCM mono wavs at one sample rate (recipe stage 2).

    python -m espnet_harmonifuse.data.format_data --src data/train --dst dump/raw/train \\
        --fs 16000 [--labels neutral,happy,angry,sad] [--audio_format wav] [--nj 4]

For every utterance: unreadable or empty audio -> dropped (counted); multichannel -> downmixed to
mono (counted); other sample rate -> resampled (counted). Ids missing from one of wav.scp/text/
utt2spk are dropped (counted, first ids named). Labels outside ``--labels`` stop with an error.
The summary goes to the log and to DST/format.log.json.
"""
import argparse
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from math import gcd
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from espnet_harmonifuse.data.kaldi_dir import (
    label_problems,
    parse_labels,
    read_kv,
    read_pairs,
    validate_data_dir,
    write_data_dir,
    write_kv,
)

COUNT_KEYS = ("kept", "dropped_unreadable", "dropped_empty", "downmixed", "resampled",
              "dropped_id_mismatch")
KEEP_FILES_SKIP = ("utt2spk", "utt2dur", "utt2num_samples")


class FormatError(ValueError):
    """A data problem the user must fix in local/data.sh (not silently dropped)."""


def read_audio(entry: str) -> Tuple[np.ndarray, int]:
    """Read a wav.scp entry as float32 (frames, channels) and its sample rate."""
    if re.search(r"\.ark:\d+$", entry):
        import kaldiio

        rate, arr = kaldiio.load_mat(entry)
        arr = np.asarray(arr)
        if arr.dtype.kind == "i":
            arr = arr.astype(np.float32) / 32768.0
        return arr.reshape(len(arr), -1).astype(np.float32), int(rate)
    data, rate = sf.read(entry, dtype="float32", always_2d=True)
    return data, int(rate)


def resample(x: np.ndarray, sr: int, fs: int) -> np.ndarray:
    """Resample a 1-D signal from ``sr`` to ``fs`` (soxr if installed, else scipy polyphase)."""
    try:
        import soxr  # fast, high quality, and quick to import (scipy.signal takes seconds)

        return soxr.resample(x, sr, fs, quality="HQ").astype(np.float32)
    except ImportError:
        from scipy.signal import resample_poly

        g = gcd(sr, fs)
        return resample_poly(x, fs // g, sr // g).astype(np.float32)


def safe_name(utt: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", utt)
    if name != utt:
        name += "_" + hashlib.md5(utt.encode("utf-8")).hexdigest()[:8]
    return name


def process_one(job: Tuple[str, str, str, int, str]) -> Dict:
    """Convert one utterance; returns its status and flags (never raises on bad audio)."""
    utt, entry, out_dir, fs, audio_format = job
    res = {"utt": utt, "status": "kept", "downmixed": False, "resampled": False, "path": None}
    try:
        data, sr = read_audio(entry)
    except Exception as e:  # noqa: BLE001 - any reader failure means "unreadable"
        res.update(status="unreadable", error=f"{type(e).__name__}: {e}")
        return res
    if data.size == 0 or data.shape[0] == 0:
        res["status"] = "empty"
        return res
    if data.shape[1] > 1:
        x = data.mean(axis=1)
        res["downmixed"] = True
    else:
        x = data[:, 0]
    if sr != fs:
        x = resample(x, sr, fs)
        res["resampled"] = True
    if x.size == 0:
        res["status"] = "empty"
        return res
    path = os.path.join(out_dir, f"{safe_name(utt)}.{audio_format}")
    sf.write(path, np.clip(x, -1.0, 1.0), fs, subtype="PCM_16", format=audio_format.upper())
    res["path"] = path
    return res


def _first(ids, n: int = 5) -> List[str]:
    return sorted(ids)[:n]


def _clean_dst(dst: str) -> None:
    """Remove outputs of an earlier run so that a rerun starts fresh (idempotent)."""
    if os.path.exists(os.path.join(dst, "format.log.json")) and os.path.isdir(os.path.join(dst, "data")):
        shutil.rmtree(os.path.join(dst, "data"))
    if os.path.isdir(dst):
        for name in os.listdir(dst):
            if name.endswith(".bak"):
                os.remove(os.path.join(dst, name))


def format_data(
    src: str,
    dst: str,
    fs: int = 16000,
    labels: Optional[Sequence[str]] = None,
    audio_format: str = "wav",
    nj: int = 1,
    progress: bool = True,
) -> Dict:
    """Format ``src`` into ``dst``; returns the summary dict (also written to format.log.json)."""
    labels = parse_labels(labels)
    for name in ("wav.scp", "text"):
        if not os.path.exists(os.path.join(src, name)):
            raise FormatError(f"{src}/{name} is missing; local/data.sh must write it")
    if os.path.exists(os.path.join(src, "segments")):
        raise FormatError(f"{src}/segments is not supported; cut the audio into files in local/data.sh")
    wav_pairs = read_pairs(os.path.join(src, "wav.scp"))
    for utt, entry in wav_pairs:
        if entry.rstrip().endswith("|"):
            raise FormatError(
                f"{src}/wav.scp: utterance '{utt}' is a pipe command ('{entry}'); pipes are not "
                f"supported: write audio file paths in wav.scp (convert the audio in local/data.sh)"
            )
    if labels:
        probs = label_problems(os.path.join(src, "text"), labels)
        if probs:
            raise FormatError("label outside --labels:\n  " + "\n  ".join(probs))
    wav = dict(wav_pairs)
    text = read_kv(os.path.join(src, "text"))
    has_u2s = os.path.exists(os.path.join(src, "utt2spk"))
    utt2spk = read_kv(os.path.join(src, "utt2spk")) if has_u2s else {k: k for k in wav}
    common = set(wav) & set(text) & set(utt2spk)
    mismatch = (set(wav) | set(text) | set(utt2spk)) - common
    if mismatch:
        details = []
        for name, d in (("wav.scp", wav), ("text", text), ("utt2spk", utt2spk)):
            missing = (common | mismatch) - set(d)
            if missing:
                details.append(f"{len(missing)} ids missing from {name} (e.g. {', '.join(_first(missing))})")
        logging.warning("%s: dropping ids not in all of wav.scp/text/utt2spk: %s", src, "; ".join(details))

    _clean_dst(dst)
    out_dir = os.path.join(dst, "data")
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(u, wav[u], out_dir, fs, audio_format) for u in sorted(common)]
    results: List[Dict] = []
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x, **kw):  # type: ignore
            return x
    bar = dict(total=len(jobs), desc=f"format {os.path.basename(src.rstrip('/'))}", unit="utt",
               disable=not progress, mininterval=1.0)
    if nj > 1 and len(jobs) > 1:
        with Pool(min(nj, len(jobs))) as pool:
            results = list(tqdm(pool.imap_unordered(process_one, jobs, chunksize=8), **bar))
    else:
        results = [process_one(j) for j in tqdm(jobs, **bar)]

    kept = {r["utt"]: r["path"] for r in results if r["status"] == "kept"}
    unreadable = [r for r in results if r["status"] == "unreadable"]
    counts = {
        "kept": len(kept),
        "dropped_unreadable": len(unreadable),
        "dropped_empty": sum(r["status"] == "empty" for r in results),
        "downmixed": sum(r["downmixed"] for r in results if r["status"] == "kept"),
        "resampled": sum(r["resampled"] for r in results if r["status"] == "kept"),
        "dropped_id_mismatch": len(mismatch),
    }
    summary = dict(counts, src=src, dst=dst, fs=fs,
                   first_id_mismatch=_first(mismatch),
                   first_unreadable={r["utt"]: r.get("error", "") for r in
                                     sorted(unreadable, key=lambda r: r["utt"])[:5]},
                   first_empty=_first(r["utt"] for r in results if r["status"] == "empty"))
    logging.info("format_data %s -> %s: %s", src, dst, " ".join(f"{k}={counts[k]}" for k in COUNT_KEYS))
    for utt, err in summary["first_unreadable"].items():
        logging.warning("unreadable audio for '%s' (%s): %s", utt, wav[utt], err)
    with open(os.path.join(dst, "format.log.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    if not kept:
        raise FormatError(f"{src}: no utterance left after formatting; see {dst}/format.log.json")

    write_data_dir(dst, kept, {u: text[u] for u in kept}, {u: utt2spk[u] for u in kept})
    for name in sorted(os.listdir(src)):  # extra per-utterance files (utt2emo, utt2lang, ...)
        if name.startswith("utt2") and name not in KEEP_FILES_SKIP:
            extra = read_kv(os.path.join(src, name))
            write_kv(os.path.join(dst, name), {u: v for u, v in extra.items() if u in kept})
    problems = validate_data_dir(dst, labels)
    if problems:
        raise FormatError(f"{dst} is not valid after formatting:\n  " + "\n  ".join(problems))
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--src", required=True, help="input Kaldi data dir")
    parser.add_argument("--dst", required=True, help="output dir (wavs go to DST/data/)")
    parser.add_argument("--fs", type=int, default=16000, help="output sample rate")
    parser.add_argument("--labels", default=None, help="comma list of allowed labels (SER sets)")
    parser.add_argument("--audio_format", default="wav", choices=["wav", "flac"])
    parser.add_argument("--nj", type=int, default=1, help="parallel processes")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    try:
        format_data(args.src, args.dst, args.fs, args.labels, args.audio_format, args.nj,
                    progress=not args.no_progress)
    except FormatError as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
