#!/usr/bin/env python3
"""Decode a Kaldi wav.scp with pocketsphinx's pretrained US-English model into a Kaldi text file.

    PYTHONPATH=../../.. python -m benchmarks.mini_emo.pocketsphinx_decode \\
        --wav_scp dump/raw/asr_test/wav.scp --out exp/pocketsphinx/decode/asr_test/text \\
        [--nj 2] [--hmm DIR --lm FILE --dict FILE]

``pip install pocketsphinx`` ships the model it uses by default (the en-us acoustic model, its
general-English trigram LM and CMUdict), so this is an external reference that needs no training
data: its vocabulary and LM know nothing of the corpus. Hypotheses are upper-cased (the
LibriSpeech-style references are); fillers and pronunciation-variant markers (``WORD(2)``) are
dropped. Audio must be 16 kHz mono (the recipes' format stage writes that); other rates are
resampled.
"""

from __future__ import annotations

import argparse
import logging
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

SAMPLE_RATE = 16000
_VARIANT = re.compile(r"\(\d+\)$")

_DECODER = None  # one per worker process


def make_decoder(hmm: Optional[str] = None, lm: Optional[str] = None, dict_: Optional[str] = None):
    """A pocketsphinx Decoder with the shipped en-us model unless paths are given."""
    from pocketsphinx import Decoder

    kwargs = dict(samprate=SAMPLE_RATE, loglevel="FATAL")
    for key, value in (("hmm", hmm), ("lm", lm), ("dict", dict_)):
        if value:
            kwargs[key] = value
    return Decoder(**kwargs)


def load_pcm16(path: str) -> np.ndarray:
    """16 kHz mono int16 samples of an audio file."""
    import soundfile as sf

    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        from math import gcd

        from scipy.signal import resample_poly

        g = gcd(sr, SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g).astype(np.float32)
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


def decode_audio(decoder, pcm: np.ndarray) -> str:
    """Upper-case words of the best hypothesis ('' when pocketsphinx finds none)."""
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    if hyp is None:
        return ""
    words = []
    for w in hyp.hypstr.split():
        w = _VARIANT.sub("", w)
        if w and not (w.startswith("<") or w.startswith("[") or w.startswith("++")):
            words.append(w.upper())
    return " ".join(words)


def _init_worker(hmm, lm, dict_):
    global _DECODER
    _DECODER = make_decoder(hmm, lm, dict_)


def _decode_one(item: Tuple[str, str]) -> Tuple[str, str]:
    uid, path = item
    return uid, decode_audio(_DECODER, load_pcm16(path))


def read_scp(path: str) -> List[Tuple[str, str]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(maxsplit=1)
            if len(parts) == 2:
                out.append((parts[0], parts[1]))
    return out


def decode_scp(wav_scp: str, out: str, nj: int = 1, hmm: Optional[str] = None, lm: Optional[str] = None,
               dict_: Optional[str] = None) -> Dict[str, str]:
    """Decode every utterance of ``wav_scp``; writes ``out`` (Kaldi text, wav.scp order)."""
    items = read_scp(wav_scp)
    if not items:
        raise ValueError(f"{wav_scp} holds no utterance")
    if nj <= 1:
        _init_worker(hmm, lm, dict_)
        results = [_decode_one(it) for it in items]
    else:
        with ProcessPoolExecutor(nj, initializer=_init_worker, initargs=(hmm, lm, dict_)) as ex:
            results = list(ex.map(_decode_one, items, chunksize=8))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for uid, text in results:
            f.write(f"{uid} {text}\n" if text else f"{uid}\n")
    logging.info("decoded %d utterances of %s into %s", len(results), wav_scp, out)
    return dict(results)


def version() -> str:
    from importlib.metadata import version as v

    return v("pocketsphinx")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--wav_scp", required=True)
    p.add_argument("--out", required=True, help="hypothesis Kaldi text file")
    p.add_argument("--nj", type=int, default=1, help="worker processes")
    p.add_argument("--hmm", default=None, help="acoustic model dir (default: the shipped en-us)")
    p.add_argument("--lm", default=None, help="n-gram LM (default: the shipped en-us.lm.bin)")
    p.add_argument("--dict", dest="dict_", default=None, help="pronunciation dictionary (default: CMUdict)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, str]:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (pocketsphinx_decode) %(levelname)s: %(message)s")
    logging.info("pocketsphinx %s", version())
    return decode_scp(args.wav_scp, args.out, args.nj, args.hmm, args.lm, args.dict_)


if __name__ == "__main__":
    main()
