"""Drop utterances shorter or longer than given bounds, in place (recipe stage 3).

    python -m espnet_harmonifuse.data.filter_length --data_dir dump/raw/train --min_sec 0.3 --max_sec 20

The first run keeps the originals as ``<file>.bak``; later runs filter from the ``.bak`` files, so a
rerun with other bounds is idempotent. Durations are read with ``soundfile.info`` and written to
``utt2dur`` (of the kept utterances).
"""
import argparse
import json
import logging
import os
import shutil
import sys
from typing import Dict, Optional, Sequence

import soundfile as sf

from espnet_harmonifuse.data.kaldi_dir import read_kv, utt2spk_to_spk2utt, write_kv, write_spk2utt
from espnet_harmonifuse.utils.cli import run_cli

PER_UTT = ("wav.scp", "text", "utt2spk")
MAX_LISTED = 10


def _source(data_dir: str, name: str) -> str:
    """Path of the original version of ``name``: its .bak if there is one."""
    bak = os.path.join(data_dir, name + ".bak")
    return bak if os.path.exists(bak) else os.path.join(data_dir, name)


def durations(wav: Dict[str, str]) -> Dict[str, float]:
    out = {}
    for utt, path in wav.items():
        try:
            info = sf.info(path)
            out[utt] = info.frames / float(info.samplerate)
        except Exception as e:  # noqa: BLE001
            logging.warning("cannot read duration of '%s' (%s): %s; dropping it", utt, path, e)
            out[utt] = -1.0
    return out


def filter_length(data_dir: str, min_sec: float = 0.0, max_sec: Optional[float] = None) -> Dict:
    """Filter ``data_dir`` in place; returns counts {kept, dropped_short, dropped_long, ...}."""
    max_sec = float("inf") if max_sec is None or max_sec <= 0 else max_sec
    if min_sec > max_sec:
        raise ValueError(f"min_sec={min_sec} > max_sec={max_sec}")
    extra = [n for n in sorted(os.listdir(data_dir))
             if n.startswith("utt2") and not n.endswith(".bak") and n not in ("utt2spk", "utt2dur")]
    names = [n for n in PER_UTT + tuple(extra) if os.path.exists(_source(data_dir, n))]
    wav = read_kv(_source(data_dir, "wav.scp"))
    dur = durations(wav)
    unreadable = [u for u, d in dur.items() if d < 0]
    short = [u for u, d in dur.items() if 0 <= d < min_sec]
    long = [u for u, d in dur.items() if d > max_sec]
    keep = {u for u, d in dur.items() if min_sec <= d <= max_sec}
    if not keep:
        raise ValueError(f"{data_dir}: no utterance within [{min_sec}, {max_sec}] s "
                         f"(short={len(short)} long={len(long)} unreadable={len(unreadable)}); "
                         f"set --min_sec/--max_sec to fit the data (durations: {data_dir}/wav.scp)")
    for what, utts in ((f"shorter than --min_sec {min_sec}", short), (f"longer than --max_sec {max_sec}", long)):
        if utts:
            shown = ", ".join(f"'{u}' ({dur[u]:.2f} s)" for u in sorted(utts)[:MAX_LISTED])
            logging.warning("%s: dropped %d utterance(s) %s s: %s%s", data_dir, len(utts), what, shown,
                            f" ... (+{len(utts) - MAX_LISTED} more)" if len(utts) > MAX_LISTED else "")
    for name in names + ["spk2utt"]:
        p = os.path.join(data_dir, name)
        if os.path.exists(p) and not os.path.exists(p + ".bak"):
            shutil.copy2(p, p + ".bak")
    for name in names:
        kv = read_kv(_source(data_dir, name))
        write_kv(os.path.join(data_dir, name), {u: v for u, v in kv.items() if u in keep})
    if "utt2spk" in names:
        utt2spk = read_kv(os.path.join(data_dir, "utt2spk"))
        write_spk2utt(os.path.join(data_dir, "spk2utt"), utt2spk_to_spk2utt(utt2spk))
    write_kv(os.path.join(data_dir, "utt2dur"), {u: f"{dur[u]:.3f}" for u in keep})
    total = sum(dur[u] for u in keep)
    counts = {"kept": len(keep), "dropped_short": len(short), "dropped_long": len(long),
              "dropped_unreadable": len(unreadable), "kept_hours": round(total / 3600.0, 4),
              "min_sec": min_sec, "max_sec": None if max_sec == float("inf") else max_sec}
    logging.info("filter_length %s: %s", data_dir, " ".join(f"{k}={v}" for k, v in counts.items()))
    with open(os.path.join(data_dir, "filter_length.log.json"), "w", encoding="utf-8") as f:
        json.dump(counts, f, indent=2)
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--min_sec", type=float, default=0.0)
    parser.add_argument("--max_sec", type=float, default=0.0, help="<= 0: no upper bound")
    args = parser.parse_args(argv)
    return run_cli(lambda: filter_length(args.data_dir, args.min_sec, args.max_sec), (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
