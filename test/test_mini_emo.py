"""Tests of the espeak wrapper and of the mini_emo corpus generator."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from espnet_harmonifuse.corpus import espeak  # noqa: E402
from espnet_harmonifuse.corpus.mini_emo import (  # noqa: E402
    DEFAULT_SIZES,
    VOICES,
    generate,
    plan_corpus,
    speaker_id,
    write_kaldi_dir,
)
from espnet_harmonifuse.corpus.mini_emo_text import (  # noqa: E402
    ASR_VOCAB,
    EMOTION_PREFIXES,
    EMOTION_SUFFIXES,
    EMOTIONS,
)

PARTS = [f"{c}_{s}" for c in ("asr", "ser") for s in ("train", "dev", "test")]
TINY = {p: 8 for p in PARTS}


# --------------------------------------------------------------- helpers
def median_f0(x: np.ndarray, sr: int) -> float:
    """Crude F0: autocorrelation peak (60-450 Hz) of the loud 40 ms frames."""
    fl, hop = int(0.04 * sr), int(0.01 * sr)
    frames = [x[s:s + fl] - x[s:s + fl].mean() for s in range(0, len(x) - fl, hop)]
    energy = np.array([np.mean(f**2) for f in frames])
    f0 = []
    for f, e in zip(frames, energy):
        if e < 0.1 * energy.max():
            continue
        ac = np.correlate(f, f, "full")[fl - 1:]
        lo, hi = sr // 450, sr // 60
        k = lo + int(np.argmax(ac[lo:hi]))
        if ac[k] > 0.4 * ac[0]:
            f0.append(sr / k)
    return float(np.median(f0))


def read_wav(path: str) -> np.ndarray:
    with wave.open(path) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0


def read_map(path: Path) -> Dict[str, str]:
    lines = path.read_text().splitlines()
    keys = [ln.split(" ", 1)[0] for ln in lines]
    assert keys == sorted(keys) and len(set(keys)) == len(keys), path
    return dict(ln.split(" ", 1) for ln in lines)


def emotion_phrases(sentence: str) -> List[str]:
    """Labels whose emotion phrases occur in ``sentence``."""
    return [e for e in EMOTIONS
            if any(sentence.startswith(p + " ") for p in EMOTION_PREFIXES[e])
            or any(sentence.endswith(" " + p) for p in EMOTION_SUFFIXES[e])]


# --------------------------------------------------------------- espeak
def test_espeak_word_is_audible_and_plausibly_long():
    x, sr = espeak.synthesize("hello", voice="en-us+m1")
    assert sr == 22050 and x.dtype == np.float32
    assert 0.2 < len(x) / sr < 1.5
    assert np.sqrt(np.mean(x**2)) > 0.01 and np.abs(x).max() <= 1.0


def test_espeak_slower_rate_gives_longer_audio():
    slow, _ = espeak.synthesize("the red dog sees a bird", "en-us+m1", rate=100)
    fast, _ = espeak.synthesize("the red dog sees a bird", "en-us+m1", rate=300)
    assert len(slow) > 1.8 * len(fast)


def test_espeak_higher_pitch_raises_f0():
    low, sr = espeak.synthesize("a long vowel aaah", "en-us+m1", pitch=20)
    high, _ = espeak.synthesize("a long vowel aaah", "en-us+m1", pitch=80)
    assert median_f0(high, sr) > 1.4 * median_f0(low, sr)


def test_espeak_is_reproducible_and_history_free():
    a, _ = espeak.synthesize("hello world", "en+f2", rand_seed=3)
    espeak.synthesize("something else entirely", "en-us+m1", pitch=90)
    b, _ = espeak.synthesize("hello world", "en+f2", rand_seed=3)
    np.testing.assert_array_equal(a, b)


def test_espeak_unknown_voice_raises():
    with pytest.raises(espeak.EspeakError, match="unknown voice"):
        espeak.synthesize("hello", voice="xx-nonexistent")


# --------------------------------------------------------------- plan
def test_plan_voices_sentences_and_labels():
    plan = plan_corpus("/nonexistent", seed=0)
    assert {p: len(v) for p, v in plan.items()} == DEFAULT_SIZES
    assert len({v for vs in VOICES.values() for v in vs}) >= 12
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not set(VOICES[a]) & set(VOICES[b])
    for part, specs in plan.items():
        assert {s.voice for s in specs} == set(VOICES[part.split("_")[1]])
    sents = {p: [s.words for s in v] for p, v in plan.items()}
    every = [w for ws in sents.values() for w in ws]
    assert len(set(every)) == len(every)  # unique over corpora and splits
    for w in sents["asr_train"] + sents["asr_test"]:
        assert 3 <= len(w.split()) <= 7 and set(w.split()) <= set(ASR_VOCAB)
        assert w == w.upper()
    assert 60 <= len(ASR_VOCAB) <= 120
    for part in ("ser_train", "ser_test"):
        labels = [s.label for s in plan[part]]
        counts = [labels.count(e) for e in EMOTIONS]
        assert max(counts) - min(counts) <= 1
        found = [emotion_phrases(s.words) for s in plan[part]]
        assert all(f in ([], [s.label]) for f, s in zip(found, plan[part]))
        frac = np.mean([bool(f) for f in found])
        assert 0.4 < frac < 0.6


# --------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mini_emo")
    generate(str(root / "wav"), str(root / "data"), seed=0, sizes=TINY, nj=1,
             progress=False)
    return root


def test_tiny_corpus_layout(tiny: Path):
    for part in PARTS:
        d = tiny / "data" / part
        wav, text, u2s = (read_map(d / f) for f in ("wav.scp", "text", "utt2spk"))
        assert len(wav) == TINY[part] and wav.keys() == text.keys() == u2s.keys()
        spk2utt = {ln.split()[0]: ln.split()[1:]
                   for ln in (d / "spk2utt").read_text().splitlines()}
        assert list(spk2utt) == sorted(spk2utt)
        inverse = {u: s for s, us in spk2utt.items() for u in us}
        assert inverse == u2s
        for u, s in u2s.items():
            assert u.startswith(s + "-") and s in {speaker_id(v) for v in
                                                     VOICES[part.split("_")[1]]}
            assert Path(wav[u]).is_absolute()
            x = read_wav(wav[u])
            assert 0.5 < len(x) / 16000 < 8.0 and np.abs(x).max() > 0.05
        if part.startswith("ser"):
            assert set(text.values()) <= set(EMOTIONS)
            assert read_map(d / "transcript").keys() == wav.keys()
        else:
            assert all(t == t.upper() for t in text.values())


def _snapshot(root: Path) -> Dict[str, bytes]:
    files = {}
    for f in sorted(root.rglob("*")):
        if f.is_file():
            data = f.read_bytes().replace(str(root).encode(), b"ROOT")
            files[str(f.relative_to(root))] = data
    return files


def test_same_seed_is_byte_identical_whatever_nj(tiny: Path, tmp_path: Path):
    generate(str(tmp_path / "wav"), str(tmp_path / "data"), seed=0, sizes=TINY,
             nj=2, progress=False)
    assert _snapshot(tmp_path) == _snapshot(tiny)


def test_other_seed_gives_other_audio(tiny: Path, tmp_path: Path):
    sizes = {**{p: 0 for p in PARTS}, "ser_test": 8}
    generate(str(tmp_path / "wav"), str(tmp_path / "data"), seed=1, sizes=sizes,
             nj=1, progress=False)
    new = read_map(tmp_path / "data" / "ser_test" / "wav.scp")
    old = read_map(tiny / "data" / "ser_test" / "wav.scp")
    new_audio = {Path(p).read_bytes() for p in new.values()}
    assert not new_audio & {Path(p).read_bytes() for p in old.values()}


def test_emotion_prosody_directions(tmp_path: Path):
    sizes = {**{p: 0 for p in PARTS}, "ser_train": 64}
    plan = generate(str(tmp_path / "wav"), str(tmp_path / "data"), seed=0,
                    sizes=sizes, nj=2, progress=False)
    feats: Dict[str, List[List[float]]] = {e: [] for e in EMOTIONS}
    for s in plan["ser_train"]:
        x = read_wav(s.wav_path)
        e = np.mean(x[: len(x) // 160 * 160].reshape(-1, 160) ** 2, axis=1)
        active = np.nonzero(e > 0.01 * e.max())[0]
        per_word = (active[-1] - active[0] + 1) * 0.01 / len(s.words.split())
        feats[s.label].append([per_word, 10 * np.log10(e[active].mean())])
    m = {k: np.mean(v, axis=0) for k, v in feats.items()}
    assert m["sad"][0] > m["neutral"][0] > m["angry"][0]  # seconds per word
    assert m["angry"][1] > m["neutral"][1] > m["sad"][1]  # loudness (dB)


def test_write_kaldi_dir_sorts_and_rejects_duplicates(tmp_path: Path):
    entries = [("b-2", "/w/b2.wav", "HI", "b"), ("a-1", "/w/a1.wav", "YO", "a"),
               ("b-1", "/w/b1.wav", "HEY", "b")]
    write_kaldi_dir(str(tmp_path / "d"), entries, {"transcript": {
        "a-1": "X", "b-1": "Y", "b-2": "Z"}})
    d = tmp_path / "d"
    assert (d / "text").read_text() == "a-1 YO\nb-1 HEY\nb-2 HI\n"
    assert (d / "spk2utt").read_text() == "a a-1\nb b-1 b-2\n"
    assert (d / "transcript").read_text() == "a-1 X\nb-1 Y\nb-2 Z\n"
    with pytest.raises(ValueError):
        write_kaldi_dir(str(tmp_path / "e"), entries + entries[:1])


def test_local_data_keeps_a_corpus_only_while_its_signature_matches(tmp_path: Path, monkeypatch):
    """local/data.sh skips a corpus it already made with the same options and the same generator, and
    regenerates one whose signature differs (as after a change of the generator's defaults)."""
    import os
    import shutil
    import subprocess
    import sys

    from espnet_harmonifuse.corpus import mini_emo

    repo = Path(__file__).resolve().parents[1]
    rec = tmp_path / "rec"
    (rec / "local").mkdir(parents=True)
    shutil.copy(repo / "egs2" / "mini_emo" / "harmonifuse1" / "local" / "data.sh", rec / "local" / "data.sh")
    (rec / "scripts").symlink_to(repo / "egs2" / "TEMPLATE" / "harmonifuse1" / "scripts")
    env = dict(os.environ, PYTHONPATH=str(repo))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"

    def data_sh() -> str:
        out = subprocess.run(["bash", "local/data.sh", "--size", "tiny", "--gen_opts", "--asr_train 4 --ser_train 4"],
                             cwd=rec, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    first = data_sh()
    assert "utterances in" in first
    stamp = rec / "data" / ".mini_emo.done"
    sizes = {"asr_train": 4, "asr_dev": 8, "asr_test": 8, "ser_train": 4, "ser_dev": 8, "ser_test": 8}
    want = mini_emo.plan_signature(mini_emo.plan_corpus(str(rec / "downloads" / "mini_emo"), 0, sizes))
    assert stamp.read_text().strip() == want
    assert "already holds this corpus" in data_sh()
    stamp.write_text("0123456789abcdef\n")  # what an older generator would have left
    wav = rec / "data" / "asr_train" / "wav.scp"
    wav.write_text("stale\n")
    assert "utterances in" in data_sh() and wav.read_text() != "stale\n"
    assert stamp.read_text().strip() == want
    # the signature follows every utterance's spec
    other = mini_emo.plan_corpus(str(rec / "downloads" / "mini_emo"), 1, sizes)
    assert mini_emo.plan_signature(other) != want
