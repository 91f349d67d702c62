"""mini_emo: an embedded synthetic ASR + SER corpus rendered with espeak-ng.

Two separate corpora are produced, each split by *voice* into train/dev/test
(dev and test voices never occur in training):

* ASR (``asr_{train,dev,test}``): closed-vocabulary sentences (83 words; ``--asr_text closed``)
  or open-vocabulary ones whose dev/test words are partly unseen in training (``--asr_text open``,
  :mod:`open_vocab`), neutral-ish prosody with per-utterance jitter; ``text`` = transcript.
* SER (``ser_{train,dev,test}``): four emotions rendered by prosody rules
  (rate, pitch, pitch range, volume, word gap) with jitter; half of the
  sentences carry an emotion phrase consistent with the label, the other half
  are neutral text; ``text`` = the label, ``transcript`` = the words spoken.

Sentences are unique over the whole corpus (ASR and SER disjoint, and no
sentence repeated between splits). Audio: espeak 22.05 kHz -> silence padding
-> 16 kHz -> coloured noise at a random SNR -> random gain -> 16-bit PCM wav.
Every utterance is rendered from its own RNG, seeded by (seed, corpus, split,
index), so the output is byte-identical for a given seed whatever ``--nj``.

Usage::

    python -m espnet_harmonifuse.corpus.mini_emo --wav_dir DIR --data_dir DIR \\
        [--seed 0] [--asr_train N ...] [--nj 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import multiprocessing as mp
import os
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.signal import firwin, lfilter, resample_poly

from espnet_harmonifuse.corpus import espeak
from espnet_harmonifuse.corpus.open_vocab import OpenVocabulary, oov_stats
from espnet_harmonifuse.corpus.mini_emo_text import (
    EMOTIONS,
    asr_sentence,
    ser_sentence,
    unique_sentences,
)

SAMPLE_RATE = 16000
CORPORA = ("asr", "ser")
ASR_TEXTS = ("closed", "open")
SPLITS = ("train", "dev", "test")

# espeak voice + variant, split by voice. Every accent and every variant of the
# dev/test voices also occurs in training, but never in the same combination.
VOICES: Dict[str, Tuple[str, ...]] = {
    "train": ("en-us+m1", "en-us+f2", "en+m3", "en+f1", "en-gb-scotland+m2",
              "en-029+f4", "en-gb-x-rp+m6", "en-us-nyc+f3", "en-gb-x-gbclan+m4"),
    "dev": ("en-us+m3", "en+f4"),
    "test": ("en-us+f1", "en+m6", "en-gb-x-rp+f2"),
}

DEFAULT_SIZES: Dict[str, int] = {
    "asr_train": 1200, "asr_dev": 100, "asr_test": 200,
    "ser_train": 4000, "ser_dev": 100, "ser_test": 200,
}
# The open text's defaults where they differ: 1,200 sentences are too few to learn spelling from
# (a CTC encoder's dev loss is best at epoch 8, then rises); 4x more brings that encoder's test CER from 42 to 32 %.
TEXT_SIZES: Dict[str, Dict[str, int]] = {"closed": {}, "open": {"asr_train": 4800}}


def default_sizes(asr_text: str = "closed") -> Dict[str, int]:
    """The default number of utterances of every part for ``asr_text``."""
    return {**DEFAULT_SIZES, **TEXT_SIZES[asr_text]}


@dataclass(frozen=True)
class Prosody:
    """Mean and jitter (std) of espeak parameters for one speaking style."""

    rate: Tuple[float, float]  # words per minute
    pitch: Tuple[float, float]  # 0..100
    pitch_range: Tuple[float, float]  # 0..100
    volume: Tuple[float, float]  # 0..200
    word_gap: Tuple[float, float] = (0.0, 0.0)  # units of 10 ms


# Emotion prosody rules (Gaussian jitter per utterance, clipped to espeak's
# valid ranges). Neighbouring classes overlap on every single cue.
EMOTION_PROSODY: Dict[str, Prosody] = {
    "neutral": Prosody((165, 20), (48, 9), (45, 15), (100, 20)),
    "happy": Prosody((185, 20), (64, 9), (80, 15), (115, 20)),
    "angry": Prosody((200, 20), (58, 9), (28, 12), (160, 20)),
    "sad": Prosody((135, 15), (34, 9), (20, 10), (75, 15), (1.5, 1.0)),
}
# ASR: neutral-ish speech, uniform jitter (low, high) of the same parameters.
ASR_PROSODY = {"rate": (150, 195), "pitch": (35, 65), "pitch_range": (35, 70),
               "volume": (85, 115)}
SNR_DB = (15.0, 35.0)  # white noise through 1/(1 - a z^-1), a ~ U(0, 0.7)
NOISE_COLOUR = (0.0, 0.7)
GAIN_DB = (-6.0, 3.0)  # then scaled down if the peak exceeds PEAK
PEAK = 0.99
PAD_S = (0.10, 0.35)  # leading and trailing silence (before noise)


@dataclass(frozen=True)
class UttSpec:
    """Everything needed to render one utterance (picklable)."""

    uttid: str
    part: str
    index: int
    voice: str
    words: str  # the sentence spoken (UPPERCASE)
    label: str  # emotion ("" for ASR utterances)
    wav_path: str
    seed: Tuple[int, ...]


def speaker_id(voice: str) -> str:
    """Kaldi speaker id for an espeak voice: ``"en-us+m1"`` -> ``"en-us_m1"``."""
    return voice.replace("+", "_")


def _rng(seed: int, corpus: str, split: str, *extra: int) -> np.random.Generator:
    """RNG keyed by (seed, corpus, split, *extra); utterances use extra=(0, i)."""
    key = [seed, CORPORA.index(corpus), SPLITS.index(split), *extra]
    return np.random.default_rng(key)


def plan_corpus(
    wav_dir: str, seed: int = 0, sizes: Optional[Mapping[str, int]] = None, asr_text: str = "closed"
) -> Dict[str, List[UttSpec]]:
    """Choose sentences, voices and labels of every utterance (no audio).

    Sentences are drawn part by part (ASR then SER; test, dev, train) from a
    per-part RNG and rejected if already used anywhere in the corpus. ``asr_text``: the closed
    grammar or the open vocabulary (:mod:`open_vocab`) for the ASR sentences.
    """
    if asr_text not in ASR_TEXTS:
        raise ValueError(f"asr_text must be one of {ASR_TEXTS}, not '{asr_text}'")
    vocab = OpenVocabulary.build(seed) if asr_text == "open" else None
    sizes = {**default_sizes(asr_text), **(sizes or {})}
    taken: set = set()
    plan: Dict[str, List[UttSpec]] = {}
    wav_root = Path(wav_dir).absolute()
    for corpus in CORPORA:
        for split in ("test", "dev", "train"):
            part = f"{corpus}_{split}"
            n = int(sizes[part])
            rng = _rng(seed, corpus, split, 1)
            voices = VOICES[split]
            voice_of = rng.permutation(n) % len(voices)  # balanced, shuffled
            if corpus == "asr":
                labels = [""] * n
                if vocab is None:
                    words = unique_sentences(lambda: asr_sentence(rng), n, taken)
                else:
                    words = unique_sentences(lambda: vocab.sentence(rng, split), n, taken)
            else:
                # balanced labels; half of each class carries an emotion word
                code = rng.permutation(n)
                labels = [EMOTIONS[c % len(EMOTIONS)] for c in code]
                with_word = [(c // len(EMOTIONS)) % 2 == 0 for c in code]
                words = [
                    unique_sentences(
                        lambda: ser_sentence(rng, labels[i], with_word[i]), 1, taken
                    )[0]
                    for i in range(n)
                ]
            specs = []
            for i in range(n):
                voice = voices[int(voice_of[i])]
                uttid = f"{speaker_id(voice)}-{part}_{i:05d}"
                specs.append(UttSpec(
                    uttid=uttid, part=part, index=i, voice=voice,
                    words=words[i], label=labels[i],
                    wav_path=str(wav_root / part / f"{uttid}.wav"),
                    seed=(seed, CORPORA.index(corpus), SPLITS.index(split), 0, i),
                ))
            plan[part] = specs
    return {p: plan[p] for p in sorted(plan)}


def _prosody(spec: UttSpec, rng: np.random.Generator) -> Dict[str, int]:
    """espeak parameters for an utterance (jittered)."""
    if not spec.label:
        out = {k: rng.uniform(lo, hi) for k, (lo, hi) in ASR_PROSODY.items()}
        out["word_gap"] = 0.0
    else:
        rule = EMOTION_PROSODY[spec.label]
        out = {
            k: rng.normal(*getattr(rule, k))
            for k in ("rate", "pitch", "pitch_range", "volume", "word_gap")
        }
    limits = {"rate": (90, 400), "pitch": (0, 100), "pitch_range": (0, 100),
              "volume": (10, 200), "word_gap": (0, 10)}
    return {k: int(round(np.clip(v, *limits[k]))) for k, v in out.items()}


@functools.lru_cache(maxsize=4)
def _resampling_filter(up: int, down: int) -> np.ndarray:
    """The low-pass filter ``resample_poly`` designs by default (Kaiser, beta 5), made once."""
    rate = max(up, down)
    return firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def render_waveform(spec: UttSpec) -> np.ndarray:
    """Synthesise, pad, resample, add noise and gain; returns int16 16 kHz."""
    rng = np.random.default_rng(list(spec.seed))
    params = _prosody(spec, rng)
    x, sr = espeak.synthesize(
        spec.words.lower(), voice=spec.voice,
        rand_seed=int(rng.integers(2**31)), **params,
    )
    pad = [np.zeros(int(rng.uniform(*PAD_S) * sr), np.float32) for _ in range(2)]
    x = np.concatenate([pad[0], x, pad[1]]).astype(np.float64)
    g = np.gcd(SAMPLE_RATE, sr)
    x = resample_poly(x, SAMPLE_RATE // g, sr // g, window=_resampling_filter(SAMPLE_RATE // g, sr // g))
    noise = lfilter([1.0], [1.0, -rng.uniform(*NOISE_COLOUR)],
                    rng.standard_normal(len(x)))
    snr_db = rng.uniform(*SNR_DB)
    p_sig = float(np.mean(x**2)) + 1e-12
    noise *= np.sqrt(p_sig / (10 ** (snr_db / 10)) / (np.mean(noise**2) + 1e-12))
    y = (x + noise) * 10 ** (rng.uniform(*GAIN_DB) / 20)
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    if peak > PEAK:
        y *= PEAK / peak
    return np.round(y * 32767).astype(np.int16)


def write_wav(path: str, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write mono 16-bit PCM wav (deterministic bytes)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def _render(spec: UttSpec) -> Tuple[str, float]:
    y = render_waveform(spec)
    write_wav(spec.wav_path, y)
    return spec.uttid, len(y) / SAMPLE_RATE


def write_kaldi_dir(
    data_dir: str,
    entries: Iterable[Tuple[str, str, str, str]],
    extra: Optional[Mapping[str, Mapping[str, str]]] = None,
) -> None:
    """Write a Kaldi data dir (wav.scp, text, utt2spk, spk2utt), sorted.

    Args:
        data_dir: output directory (created).
        entries: ``(uttid, wav_path, text, spk)`` tuples; uttids should start
            with their speaker id so that both sort orders agree.
        extra: optional additional ``filename -> {uttid: value}`` files.
    """
    rows = sorted(entries)
    if len({r[0] for r in rows}) != len(rows):
        raise ValueError(f"duplicate utterance ids in {data_dir}")
    d = Path(data_dir)
    d.mkdir(parents=True, exist_ok=True)

    def dump(name: str, lines: Sequence[str]) -> None:
        (d / name).write_text("".join(f"{ln}\n" for ln in lines), encoding="utf-8")

    dump("wav.scp", [f"{u} {w}" for u, w, _, _ in rows])
    dump("text", [f"{u} {t}" for u, _, t, _ in rows])
    dump("utt2spk", [f"{u} {s}" for u, _, _, s in rows])
    spk2utt: Dict[str, List[str]] = {}
    for u, _, _, s in rows:
        spk2utt.setdefault(s, []).append(u)
    dump("spk2utt", [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())])
    for name, values in (extra or {}).items():
        dump(name, [f"{u} {values[u]}" for u, _, _, _ in rows])


def render_all(specs: Sequence[UttSpec], nj: int = 2, progress: bool = True) -> None:
    """Write the wav of every utterance of ``specs``, in ``nj`` processes."""
    espeak.sample_rate()  # fail early (and initialise before forking)
    from tqdm import tqdm

    bar = tqdm(total=len(specs), desc="mini_emo", unit="utt", disable=not progress)
    if nj <= 1:
        for s in specs:
            _render(s)
            bar.update()
    else:
        with mp.get_context("fork").Pool(nj) as pool:
            for _ in pool.imap_unordered(_render, specs, chunksize=8):
                bar.update()
    bar.close()


def generate(
    wav_dir: str,
    data_dir: str,
    seed: int = 0,
    sizes: Optional[Mapping[str, int]] = None,
    nj: int = 2,
    progress: bool = True,
    asr_text: str = "closed",
) -> Dict[str, List[UttSpec]]:
    """Render the whole corpus and write the six Kaldi data dirs."""
    plan = plan_corpus(wav_dir, seed, sizes, asr_text)
    write_corpus(plan, data_dir, nj, progress)
    return plan


def write_corpus(plan: Mapping[str, Sequence[UttSpec]], data_dir: str, nj: int = 2, progress: bool = True) -> None:
    """Render the planned utterances and write their Kaldi data dirs."""
    render_all([s for part in plan.values() for s in part], nj, progress)
    for part, part_specs in plan.items():
        write_part_dir(os.path.join(data_dir, part), part_specs, part.startswith("ser_"))


def plan_signature(plan: Mapping[str, Sequence[UttSpec]]) -> str:
    """A digest of every utterance's spec (id, voice, words, label, wav path, seed): two plans with the
    same signature render the same corpus. ``--stamp`` keeps a corpus only while it matches, so a
    changed default (sizes, held-out words) regenerates the corpus instead of reusing the old one."""
    specs = [dataclasses.asdict(s) for part in sorted(plan) for s in plan[part]]
    return hashlib.sha1(json.dumps(specs, sort_keys=True).encode()).hexdigest()[:16]


def write_part_dir(
    out_dir: str, specs: Sequence[UttSpec], ser: bool, uttid: Optional[Mapping[str, str]] = None
) -> None:
    """The Kaldi dir of one part: ``text`` holds the label (SER) or the words (ASR); an SER dir also
    gets ``transcript``, the words spoken. ``uttid`` renames utterances (default: their own ids)."""
    uid = {s.uttid: (uttid or {}).get(s.uttid, s.uttid) for s in specs}
    entries = [(uid[s.uttid], s.wav_path, s.label or s.words, speaker_id(s.voice)) for s in specs]
    extra = {"transcript": {uid[s.uttid]: s.words for s in specs}} if ser else None
    write_kaldi_dir(out_dir, entries, extra)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Generate the embedded mini_emo ASR+SER corpus (espeak-ng).")
    p.add_argument("--wav_dir", required=True, help="output dir for wav files")
    p.add_argument("--data_dir", required=True, help="output dir for data dirs")
    p.add_argument("--seed", type=int, default=0)
    for part, n in DEFAULT_SIZES.items():
        other = "".join(f", {k[part]} with --asr_text {t}" for t, k in TEXT_SIZES.items() if part in k)
        p.add_argument(f"--{part}", type=int, default=None, help=f"(default {n}{other})")
    p.add_argument("--asr_text", default="closed", choices=ASR_TEXTS,
                   help="the ASR sentences: the closed 83-word grammar or the open vocabulary (3,000 words, "
                        "about a quarter of the test's words unseen in training)")
    p.add_argument("--nj", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--stamp", default=None,
                   help="a file holding the signature of the corpus in --data_dir (plan_signature): if it is this "
                        "corpus's, nothing is rendered; otherwise the corpus is made and its signature written there")
    return p


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    start = time.time()
    sizes = {part: getattr(args, part) for part in DEFAULT_SIZES if getattr(args, part) is not None}
    plan = plan_corpus(args.wav_dir, args.seed, sizes, args.asr_text)
    signature = plan_signature(plan)
    stamp = Path(args.stamp) if args.stamp else None
    if stamp is not None and stamp.is_file() and stamp.read_text().strip() == signature:
        print(f"mini_emo: {args.data_dir} already holds this corpus (signature {signature} in {stamp}); "
              f"remove it to regenerate")
        return
    if stamp is not None:
        stamp.unlink(missing_ok=True)  # written again only once the new corpus is complete
    write_corpus(plan, args.data_dir, args.nj)
    if stamp is not None:
        stamp.write_text(signature + "\n")
    n = sum(len(v) for v in plan.values())
    print(f"mini_emo: {n} utterances in {time.time() - start:.1f} s -> "
          f"{args.data_dir}")
    train = [s.words for s in plan["asr_train"]]
    for part in ("asr_dev", "asr_test"):
        if plan[part]:
            st = oov_stats(train, [s.words for s in plan[part]])
            print(f"mini_emo: {part}: {st['types']} word types, {st['oov_types_pct']:.1f} % of them and "
                  f"{st['oov_tokens_pct']:.1f} % of its words not in asr_train's text")


if __name__ == "__main__":
    main()
