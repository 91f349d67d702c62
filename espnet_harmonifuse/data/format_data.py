"""Format a Kaldi data dir into 16-bit PCM mono wavs at one sample rate (recipe stage 2).

    python -m espnet_harmonifuse.data.format_data --src data/train --dst dump/raw/train \\
        --fs 16000 [--labels neutral,happy,angry,sad] [--audio_format wav] [--nj 4]

wav.scp entries are audio file paths (any format libsndfile reads: wav, flac, ogg, 16/24/32-bit
or float PCM), ``ark:offset`` entries, or Kaldi pipe commands (``sox a.flac -t wav - |``: the
command runs in a shell and its output is read as audio, as ESPnet's format_wav_scp.py does).

Every utterance is converted or dropped, never silently: unreadable, truncated or empty audio ->
dropped; an empty transcript (sets without ``--labels``) -> dropped; ids missing from one of
wav.scp/text/utt2spk -> dropped; multichannel -> downmixed to mono; other sample rate ->
resampled; all-silent audio -> kept and named in a warning. A warning lists the dropped
utterances of each kind, and DST/format.log.json holds the counts and every dropped id with its
reason. The stage stops (exit 1, naming the file and the fix) for what it cannot decide alone:
labels outside ``--labels``, an id repeated with different values, a file that is not UTF-8.
"""
import argparse
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from math import gcd
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from espnet_harmonifuse.data.kaldi_dir import (
    KaldiDirError,
    label_problems,
    parse_labels,
    read_kv,
    read_kv_unique,
    validate_data_dir,
    write_data_dir,
    write_kv,
)
from espnet_harmonifuse.utils.cli import run_cli

COUNT_KEYS = ("kept", "dropped_unreadable", "dropped_truncated", "dropped_empty", "dropped_empty_text",
              "dropped_id_mismatch", "downmixed", "resampled", "silent")
KEEP_FILES_SKIP = ("utt2spk", "utt2dur", "utt2num_samples")
# Why an utterance was dropped: the status of process_one (or of the id/text checks) -> words.
REASONS = {"unreadable": "unreadable audio", "truncated": "truncated audio file", "empty": "empty audio",
           "empty_text": "empty transcript", "id_mismatch": "id not in all of wav.scp/text/utt2spk"}
MAX_LISTED = 10
# libsndfile's log line for a WAV whose header declares more audio than the file holds.
_TRUNCATED_RE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAM_SIZE = 0x7FFF0000  # at or above: a header written to a pipe, whose length was unknown


class FormatError(KaldiDirError):
    """A data problem the user must fix in local/data.sh (not silently dropped)."""


def _run_pipe(entry: str) -> io.BytesIO:
    """The output of a Kaldi pipe entry (``cmd ... |``), run in a shell."""
    cmd = entry.rstrip()[:-1].strip()
    proc = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", errors="replace").strip().splitlines()
        raise OSError(f"command '{cmd}' failed (exit status {proc.returncode}"
                      f"{', no output' if not proc.stdout else ''}){': ' + err[-1] if err else ''}")
    return io.BytesIO(proc.stdout)


def truncation(extra_info: str) -> Optional[Tuple[int, int]]:
    """(declared, present) bytes of audio data when a WAV header declares more than the file holds."""
    m = _TRUNCATED_RE.search(extra_info or "")
    if m and int(m.group(2)) < int(m.group(1)) < _STREAM_SIZE:
        return int(m.group(1)), int(m.group(2))
    return None


def read_audio(entry: str) -> Tuple[np.ndarray, int]:
    """Read a wav.scp entry as float32 (frames, channels) and its sample rate.

    Raises OSError for a truncated WAV file (its header declares more audio than it holds)."""
    if re.search(r"\.ark:\d+$", entry):
        import kaldiio

        rate, arr = kaldiio.load_mat(entry)
        arr = np.asarray(arr)
        if arr.dtype.kind == "i":
            arr = arr.astype(np.float32) / 32768.0
        return arr.reshape(len(arr), -1).astype(np.float32), int(rate)
    source = _run_pipe(entry) if entry.rstrip().endswith("|") else entry
    with sf.SoundFile(source) as f:
        cut = truncation(f.extra_info) if isinstance(source, str) else None
        if cut:
            raise OSError(f"truncated: its header declares {cut[0]} bytes of audio, the file holds "
                          f"{cut[1]}; copy or extract it again")
        return f.read(dtype="float32", always_2d=True), int(f.samplerate)


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
    res = {"utt": utt, "status": "kept", "downmixed": False, "resampled": False, "silent": False, "path": None}
    try:
        data, sr = read_audio(entry)
    except Exception as e:  # noqa: BLE001 - any reader failure means "unreadable"
        status = "truncated" if str(e).startswith("truncated:") else "unreadable"
        res.update(status=status, error=str(e) if status == "truncated" else f"{type(e).__name__}: {e}")
        return res
    if data.size == 0 or data.shape[0] == 0:
        res.update(status="empty", error="0 samples")
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
        res.update(status="empty", error=f"0 samples at {fs} Hz")
        return res
    res["silent"] = bool(np.max(np.abs(x)) <= 1.0 / 32768)
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


def read_src(src: str, labels: Optional[List[str]]) -> Tuple[Dict[str, str], Dict[str, str], Dict[str, str]]:
    """wav, text and utt2spk of ``src``; FormatError for what the user must fix first."""
    for name in ("wav.scp", "text"):
        if not os.path.exists(os.path.join(src, name)):
            raise FormatError(f"{src}/{name} is missing; local/data.sh must write it")
    if os.path.exists(os.path.join(src, "segments")):
        raise FormatError(f"{src}/segments is not supported; cut the audio into files in local/data.sh")
    if labels:
        probs = label_problems(os.path.join(src, "text"), labels)
        if probs:
            raise FormatError("\n  ".join(probs))
    has_u2s = os.path.exists(os.path.join(src, "utt2spk"))
    out = []
    for name in ("wav.scp", "text", "utt2spk") if has_u2s else ("wav.scp", "text"):
        kv, repeated = read_kv_unique(os.path.join(src, name))
        if repeated:
            logging.warning("%s/%s: %d ids appear more than once, each time with the same value; kept "
                            "once: %s", src, name, len(repeated), ", ".join(repeated[:MAX_LISTED]))
        out.append(kv)
    if not has_u2s:
        out.append({k: k for k in out[0]})
    return out[0], out[1], out[2]


def _warn_dropped(src: str, dst: str, dropped: Dict[str, str], detail: Dict[str, str]) -> None:
    """One warning per reason, listing the utterances (up to MAX_LISTED) and what was wrong."""
    for reason in REASONS.values():
        utts = sorted(u for u, r in dropped.items() if r == reason)
        if utts:
            shown = "; ".join(f"'{u}'{' (' + detail[u] + ')' if detail.get(u) else ''}" for u in utts[:MAX_LISTED])
            more = f"; ... (+{len(utts) - MAX_LISTED} more)" if len(utts) > MAX_LISTED else ""
            logging.warning("%s: dropped %d utterance(s) with %s: %s%s (all are listed in %s/format.log.json)",
                            src, len(utts), reason, shown, more, dst)


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
    wav, text, utt2spk = read_src(src, labels)
    common = set(wav) & set(text) & set(utt2spk)
    mismatch = (set(wav) | set(text) | set(utt2spk)) - common
    dropped = {u: REASONS["id_mismatch"] for u in mismatch}
    detail = {}
    for u in mismatch:
        detail[u] = "missing from " + ", ".join(n for n, d in (("wav.scp", wav), ("text", text),
                                                               ("utt2spk", utt2spk)) if u not in d)
    if not labels:
        dropped.update({u: REASONS["empty_text"] for u in common if not text[u].strip()})

    _clean_dst(dst)
    out_dir = os.path.join(dst, "data")
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(u, wav[u], out_dir, fs, audio_format) for u in sorted(common) if u not in dropped]
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
    for r in results:
        if r["status"] != "kept":
            dropped[r["utt"]] = REASONS[r["status"]]
            detail[r["utt"]] = f"{wav[r['utt']]}: {r['error']}"
    silent = sorted(r["utt"] for r in results if r["status"] == "kept" and r["silent"])
    by_reason = {key: sum(r == reason for r in dropped.values()) for key, reason in REASONS.items()}
    counts = {
        "kept": len(kept),
        **{f"dropped_{key}": n for key, n in by_reason.items()},
        "downmixed": sum(r["downmixed"] for r in results if r["status"] == "kept"),
        "resampled": sum(r["resampled"] for r in results if r["status"] == "kept"),
        "silent": len(silent),
    }
    summary = dict({k: counts[k] for k in COUNT_KEYS}, src=src, dst=dst, fs=fs,
                   first_id_mismatch=_first(mismatch),
                   first_unreadable={u: detail[u] for u in _first(u for u, r in dropped.items()
                                                                  if r == REASONS["unreadable"])},
                   first_empty=_first(u for u, r in dropped.items() if r == REASONS["empty"]),
                   silent_utts=silent, dropped={u: dropped[u] for u in sorted(dropped)})
    logging.info("format_data %s -> %s: %s", src, dst, " ".join(f"{k}={counts[k]}" for k in COUNT_KEYS))
    _warn_dropped(src, dst, dropped, detail)
    if silent:
        logging.warning("%s: %d utterance(s) are all silence (kept; check their audio): %s", src, len(silent),
                        ", ".join(silent[:MAX_LISTED]) + (" ..." if len(silent) > MAX_LISTED else ""))
    with open(os.path.join(dst, "format.log.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
    if not kept:
        raise FormatError(f"{src}: no utterance left after formatting ({len(dropped)} dropped, reasons in "
                          f"{dst}/format.log.json); fix the entries of {src}/wav.scp and {src}/text in local/data.sh")

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
    return run_cli(lambda: format_data(args.src, args.dst, args.fs, args.labels, args.audio_format, args.nj,
                                      progress=not args.no_progress), (KaldiDirError,))


if __name__ == "__main__":
    sys.exit(main())
