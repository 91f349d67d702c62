"""Speed-perturbed copies of a Kaldi data dir (recipe stage 2, ``--speed_perturb_factors`` of ESPnet's asr.sh).

    python -m espnet_harmonifuse.data.speed_perturb --src data/train --dst data/train_sp \\
        --factors "0.9 1.0 1.1" [--backend auto|sox|python] [--nj 4]

For each factor f other than 1.0, every utterance gets a copy with the id ``sp{f}-{id}`` and the
speaker ``sp{f}-{speaker}``, as Kaldi's perturb_data_dir_speed.sh names them; factor 1.0 keeps the
original ids. The copy is sped up by f, pitch and tempo together (sox's ``speed`` effect; its
length becomes n / f samples at the same rate). With sox on PATH and file paths in wav.scp, a copy's
wav.scp entry is a sox pipe that the formatting of stage 2 runs; otherwise (or with ``--backend
python``) the same resampling runs here and the copies are written to DST/wavs/.
text, utt2spk and the other ``utt2*``/``spk2*`` files follow the new ids; spk2utt is written anew.
"""

import argparse
import logging
import os
import re
import shlex
import shutil
import sys
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf

from espnet_harmonifuse.data.format_data import read_audio, read_src, resample, safe_name
from espnet_harmonifuse.data.kaldi_dir import KaldiDirError, read_kv, utt2spk_to_spk2utt, write_kv, write_spk2utt
from espnet_harmonifuse.utils.cli import run_cli

SKIPPED = ("utt2dur", "utt2num_samples", "spk2utt", "wav.scp", "utt2spk", "text")


def parse_factors(factors: str) -> List[str]:
    """The factors as written (they name the copies), checked: positive numbers, each once."""
    out = factors.split()
    for f in out:
        try:
            ok = float(f) > 0
        except ValueError:
            ok = False
        if not ok:
            raise KaldiDirError(f"--speed_perturb_factors '{factors}': '{f}' is not a positive number "
                                "(e.g. \"0.9 1.0 1.1\")")
    if len({float(f) for f in out}) < len(out) or not out:
        raise KaldiDirError(f"--speed_perturb_factors '{factors}': give each factor once (e.g. \"0.9 1.0 1.1\")")
    return out


def sox_entry(entry: str, factor: str) -> str:
    """The wav.scp entry that plays ``entry`` sped up by ``factor`` (a Kaldi pipe through sox)."""
    return f"sox {shlex.quote(entry)} -t wav - speed {factor} |"


def perturb_one(job: Tuple[str, str, str, float]) -> Tuple[str, Optional[str], str]:
    """(id, written path or None, error): ``entry`` sped up by ``factor``, as sox's speed effect."""
    utt, entry, path, factor = job
    try:
        data, rate = read_audio(entry)
        out = np.stack([resample(data[:, c], round(rate * factor), rate) for c in range(data.shape[1])], axis=1)
        sf.write(path, np.clip(out, -1.0, 1.0), rate, subtype="PCM_16")
        return utt, path, ""
    except Exception as e:  # noqa: BLE001 - the copy is left out and named; formatting drops the original alike
        return utt, None, f"{type(e).__name__}: {e}"


def use_sox(wav: Dict[str, str], backend: str) -> bool:
    plain_files = all(not v.rstrip().endswith("|") and not re.search(r"\.ark:\d+$", v) for v in wav.values())
    if backend == "sox":
        if shutil.which("sox") is None:
            raise KaldiDirError("--backend sox: sox is not on PATH; install it or use --backend python")
        if not plain_files:
            raise KaldiDirError("--backend sox needs file paths in wav.scp (not pipes or ark entries); "
                                "use --backend python")
        return True
    return backend == "auto" and plain_files and shutil.which("sox") is not None


def perturb_data_dir(src: str, dst: str, factors: Sequence[str], backend: str = "auto", nj: int = 1) -> Dict:
    """Write the speed-perturbed union of ``src`` into ``dst``; returns a summary."""
    wav, text, utt2spk = read_src(src, None)  # the checks of the format stage: missing files, duplicate ids
    extras = {n: read_kv(os.path.join(src, n)) for n in sorted(os.listdir(src))
              if n.startswith(("utt2", "spk2")) and n not in SKIPPED}
    extras["text"] = text
    sox = use_sox(wav, backend)
    if os.path.isdir(dst):
        shutil.rmtree(dst)
    os.makedirs(os.path.join(dst, "wavs") if not sox else dst)
    out_wav, out_u2s, out_extra, jobs = {}, {}, {n: {} for n in extras}, []
    for f in factors:
        pre = "" if float(f) == 1.0 else f"sp{f}-"
        for utt, entry in wav.items():  # ids missing from text or utt2spk are left to formatting to report
            new = pre + utt
            if not pre:
                out_wav[new] = entry
            elif sox:
                out_wav[new] = sox_entry(entry, f)
            else:
                jobs.append((new, entry, os.path.join(dst, "wavs", safe_name(new) + ".wav"), float(f)))
            if utt in utt2spk:
                out_u2s[new] = pre + utt2spk[utt]
        for name, kv in extras.items():  # keys are utterance ids (text, utt2*) or speaker ids (spk2*)
            out_extra[name].update({pre + k: v for k, v in kv.items()})
    failed = {}
    if jobs:
        with Pool(max(1, min(nj, len(jobs)))) as pool:
            for utt, path, err in pool.imap_unordered(perturb_one, jobs, chunksize=8):
                if path:
                    out_wav[utt] = path
                else:
                    failed[utt] = err
    if failed:
        logging.warning("%s: %d copies not written (unreadable audio, which formatting drops too): %s", src,
                        len(failed), "; ".join(f"{u} ({e})" for u, e in sorted(failed.items())[:10]))
    kept = sorted(out_wav)
    write_kv(os.path.join(dst, "wav.scp"), {u: out_wav[u] for u in kept})
    u2s = {u: out_u2s[u] for u in kept if u in out_u2s}
    write_kv(os.path.join(dst, "utt2spk"), u2s)
    write_spk2utt(os.path.join(dst, "spk2utt"), utt2spk_to_spk2utt(u2s))
    for name, kv in out_extra.items():
        write_kv(os.path.join(dst, name), {k: kv[k] for k in sorted(kv) if name.startswith("spk2") or k in out_wav})
    summary = dict(src=src, dst=dst, factors=list(factors), utterances=len(out_wav), backend="sox" if sox else "python",
                   failed=sorted(failed))
    logging.info("speed perturbation %s -> %s: factors %s, %d utterances (%s)", src, dst, " ".join(factors),
                 len(out_wav), summary["backend"])
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--src", required=True, help="input Kaldi data dir")
    parser.add_argument("--dst", required=True, help="output data dir (the union of the perturbed copies)")
    parser.add_argument("--factors", required=True, help='speed factors, e.g. "0.9 1.0 1.1"')
    parser.add_argument("--backend", default="auto", choices=["auto", "sox", "python"],
                        help="auto: sox pipes when sox is on PATH and wav.scp holds file paths, else python")
    parser.add_argument("--nj", type=int, default=1, help="parallel processes (python backend)")
    args = parser.parse_args(argv)
    return run_cli(lambda: perturb_data_dir(args.src, args.dst, parse_factors(args.factors), args.backend, args.nj),
                   (KaldiDirError,))


if __name__ == "__main__":
    sys.exit(main())
