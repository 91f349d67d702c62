"""Tests of the data-preparation helpers (kaldi_dir, format_data, filter_length)."""
import json
import os

import numpy as np
import pytest
import soundfile as sf

from espnet_harmonifuse.data import filter_length as fl
from espnet_harmonifuse.data import format_data as fd
from espnet_harmonifuse.data import kaldi_dir as kd


def _sine(sec, fs, ch=1, f0=440.0):
    t = np.arange(int(round(sec * fs))) / fs
    x = 0.3 * np.sin(2 * np.pi * f0 * t).astype(np.float32)
    return np.stack([x, 0.5 * x], axis=1) if ch == 2 else x


def _write(path, lines):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{ln}\n" for ln in lines)


@pytest.fixture
def src(tmp_path):
    """a: 16 kHz mono, b: 44.1 kHz stereo, c: empty, d: corrupt, e: only in text, f: no text."""
    w = tmp_path / "wavs"
    w.mkdir()
    sf.write(w / "a.wav", _sine(1.0, 16000), 16000)
    sf.write(w / "b.wav", _sine(1.5, 44100, ch=2), 44100)
    sf.write(w / "c.wav", np.zeros(0, dtype=np.float32), 16000)
    (w / "d.wav").write_bytes(b"RIFF\x00\x01garbage" * 10)
    sf.write(w / "f.wav", _sine(0.5, 16000), 16000)
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    _write(d / "wav.scp", [f"{u} {w}/{u}.wav" for u in "abcdf"])
    _write(d / "text", ["a HELLO WORLD", "b GOOD MORNING", "c EMPTY", "d BROKEN", "e NO AUDIO"])
    _write(d / "utt2spk", [f"{u} spk{u}" for u in "abcdef"])
    _write(d / "spk2utt", [f"spk{u} {u}" for u in "abcdef"])
    return d


@pytest.mark.parametrize("nj", [1, 2])
def test_format_data_counts_and_outputs(src, tmp_path, nj):
    dst = tmp_path / "dump" / "train"
    summary = fd.format_data(str(src), str(dst), fs=16000, nj=nj, progress=False)
    counts = {k: summary[k] for k in fd.COUNT_KEYS}
    assert counts == {"kept": 2, "dropped_unreadable": 1, "dropped_truncated": 0, "dropped_empty": 1,
                      "dropped_empty_text": 0, "dropped_id_mismatch": 2, "downmixed": 1, "resampled": 1,
                      "silent": 0}
    assert summary["first_id_mismatch"] == ["e", "f"]
    assert json.loads((dst / "format.log.json").read_text())["kept"] == 2
    wav = kd.read_kv(dst / "wav.scp")
    assert list(wav) == ["a", "b"]
    assert list(kd.read_kv(dst / "text")) == ["a", "b"]
    assert kd.read_spk2utt(dst / "spk2utt") == {"spka": ["a"], "spkb": ["b"]}
    for utt, sec in (("a", 1.0), ("b", 1.5)):
        info = sf.info(wav[utt])
        assert wav[utt].startswith(str(dst / "data"))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.frames / 16000 - sec) / sec < 0.01
    assert kd.validate_data_dir(dst) == []


def test_format_data_rerun_is_clean(src, tmp_path):
    dst = tmp_path / "dump" / "train"
    fd.format_data(str(src), str(dst), progress=False)
    (dst / "wav.scp.bak").write_text("stale\n")
    fd.format_data(str(src), str(dst), progress=False)
    assert not (dst / "wav.scp.bak").exists()
    assert sorted(os.listdir(dst / "data")) == ["a.wav", "b.wav"]


def test_format_data_label_outside_list_raises(src, tmp_path):
    _write(src / "text", ["a neutral", "b excited", "c sad", "d sad", "e sad"])
    with pytest.raises(fd.FormatError) as err:
        fd.format_data(str(src), str(tmp_path / "dst"), labels="neutral,happy,angry,sad", progress=False)
    msg = str(err.value)
    assert "'excited'" in msg and "'b'" in msg and str(src / "text") in msg and "ser_labels" in msg
    rc = fd.main(["--src", str(src), "--dst", str(tmp_path / "dst"), "--labels", "neutral,sad"])
    assert rc == 1


def test_format_data_reads_a_pipe_and_drops_a_failing_one(src, tmp_path):
    wavs = kd.read_kv(src / "wav.scp")
    _write(src / "wav.scp", [f"a cat {wavs['a']} |", "b no_such_command_xyz |"])
    summary = fd.format_data(str(src), str(tmp_path / "dst"), progress=False)
    assert summary["kept"] == 1 and summary["dropped"]["b"] == "unreadable audio"
    out, fs = sf.read(kd.read_kv(tmp_path / "dst" / "wav.scp")["a"])
    assert fs == 16000 and np.abs(out - sf.read(wavs["a"])[0]).max() < 1e-4


def test_format_data_cli(src, tmp_path):
    dst = tmp_path / "out"
    assert fd.main(["--src", str(src), "--dst", str(dst), "--fs", "8000", "--no_progress"]) == 0
    assert sf.info(kd.read_kv(dst / "wav.scp")["a"]).samplerate == 8000


def test_validate_data_dir_finds_problems(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "wav.scp", ["b b.wav", "a a.wav", "a a2.wav"])  # unsorted + duplicate
    _write(d / "text", ["a happy", "b joyful", "c sad"])  # c not in wav.scp, joyful not a label
    _write(d / "utt2spk", ["a s1", "b s1"])
    _write(d / "spk2utt", ["s1 a"])  # inconsistent
    probs = "\n".join(kd.validate_data_dir(d, labels="neutral,happy,angry,sad"))
    assert "wav.scp: not sorted" in probs
    assert "wav.scp: duplicate ids: a" in probs
    assert "ids in text but not in wav.scp: c" in probs
    assert "ids in text but not in utt2spk: c" in probs
    assert "spk2utt: inconsistent with utt2spk for speakers s1" in probs
    assert "'b' has label 'joyful'" in probs and str(d / "text") in probs and "local/data.sh" in probs
    good = tmp_path / "good"
    kd.write_data_dir(good, {"u2": "x.wav", "u1": "y.wav"}, {"u1": "sad", "u2": "happy"},
                      {"u1": "s", "u2": "s"})
    assert kd.validate_data_dir(good, labels=["sad", "happy"]) == []
    assert (good / "wav.scp").read_text().splitlines()[0].startswith("u1 ")


def test_validate_missing_files(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    _write(d / "wav.scp", ["a a.wav"])
    probs = kd.validate_data_dir(d)
    assert any("text: missing" in p for p in probs)


def test_utt2spk_spk2utt_roundtrip():
    u2s = {"u3": "s2", "u1": "s1", "u2": "s1"}
    s2u = kd.utt2spk_to_spk2utt(u2s)
    assert s2u == {"s1": ["u1", "u2"], "s2": ["u3"]}
    assert dict(kd.spk2utt_to_utt2spk(s2u)) == u2s


def test_split_and_merge(tmp_path):
    scp = tmp_path / "wav.scp"
    _write(scp, [f"u{i} x" for i in range(5)])
    n = kd.split_keys(scp, 3, str(tmp_path / "keys.JOB.scp"))
    parts = [list(kd.read_kv(tmp_path / f"keys.{j}.scp")) for j in (1, 2, 3)]
    assert n == 3 and sum(parts, []) == [f"u{i}" for i in range(5)]
    assert kd.split_keys(scp, 10, str(tmp_path / "k.JOB")) == 5
    _write(tmp_path / "t2", ["u3 c", "u4 d"])
    _write(tmp_path / "t1", ["u1 a", "u0 b"])
    kd.merge_files([tmp_path / "t2", tmp_path / "t1"], tmp_path / "text")
    assert (tmp_path / "text").read_text() == "u0 b\nu1 a\nu3 c\nu4 d\n"
    _write(tmp_path / "r2.jsonl", ['{"key": "u2"}'])
    _write(tmp_path / "r1.jsonl", ['{"key": "u1"}'])
    kd.merge_files([tmp_path / "r2.jsonl", tmp_path / "r1.jsonl"], tmp_path / "results.jsonl")
    assert [json.loads(x)["key"] for x in (tmp_path / "results.jsonl").read_text().splitlines()] == ["u1", "u2"]


def test_filter_length(tmp_path):
    d = tmp_path / "d"
    wavs = {}
    for utt, sec in (("short", 0.05), ("mid", 1.0), ("long", 5.0)):
        p = tmp_path / f"{utt}.wav"
        sf.write(p, _sine(sec, 16000), 16000)
        wavs[utt] = str(p)
    kd.write_data_dir(d, wavs, {u: "TEXT" for u in wavs}, {u: "spk" for u in wavs})
    _write(d / "utt2emo", [f"{u} sad" for u in sorted(wavs)])
    counts = fl.filter_length(str(d), min_sec=0.1, max_sec=3.0)
    assert (counts["kept"], counts["dropped_short"], counts["dropped_long"]) == (1, 1, 1)
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2emo"):
        assert (d / f"{name}.bak").exists()
        assert len((d / name).read_text().splitlines()) == 1
    assert kd.validate_data_dir(d) == []
    assert abs(float(kd.read_kv(d / "utt2dur")["mid"]) - 1.0) < 1e-3
    # a rerun starts from the originals (.bak), so other bounds work and the .bak stays original
    assert fl.main(["--data_dir", str(d), "--min_sec", "0.1", "--max_sec", "10"]) == 0
    assert list(kd.read_kv(d / "wav.scp")) == ["long", "mid"]
    assert len((d / "wav.scp.bak").read_text().splitlines()) == 3
    assert kd.read_spk2utt(d / "spk2utt") == {"spk": ["long", "mid"]}
    assert fl.main(["--data_dir", str(d), "--min_sec", "20"]) == 1  # nothing left -> error


def test_resample_fallback_without_soxr(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "soxr", None)  # import soxr -> ImportError
    y = fd.resample(_sine(1.0, 44100), 44100, 16000)
    assert y.dtype == np.float32 and abs(len(y) - 16000) <= 1
