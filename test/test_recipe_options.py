"""The asr.sh options of harmonifuse.sh: --speed_perturb_factors (stage 2, data/speed_perturb.py) and the
--skip_* flags."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_recipe_stages import TEMPLATE, run_stages, toy_recipe

from espnet_harmonifuse.data.format_data import read_audio
from espnet_harmonifuse.data.kaldi_dir import KaldiDirError, read_kv
from espnet_harmonifuse.data.speed_perturb import parse_factors, perturb_data_dir

FACTORS = ["0.9", "1.0", "1.1"]
HAS_SOX = shutil.which("sox") is not None
NEEDS_SOX = pytest.mark.skipif(not HAS_SOX, reason="no sox")
TONES = {"a_0": 300.0, "a_1": 500.0, "a_2": 800.0}  # Hz, one tone per utterance


def write_data_dir(d: Path, utts=TONES, seconds: float = 1.0) -> Path:
    """A Kaldi dir of pure tones: 2 speakers, a text, an utt2emo and a spk2gender."""
    (d / "wav").mkdir(parents=True)
    t = np.arange(int(16000 * seconds)) / 16000
    for u, hz in utts.items():
        sf.write(d / "wav" / f"{u}.wav", (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000, subtype="PCM_16")
    ids = sorted(utts)
    (d / "wav.scp").write_text("".join(f"{u} {d / 'wav' / u}.wav\n" for u in ids))
    (d / "text").write_text("".join(f"{u} WORDS OF {u}\n" for u in ids))
    (d / "utt2spk").write_text("".join(f"{u} spk{i % 2}\n" for i, u in enumerate(ids)))
    (d / "utt2emo").write_text("".join(f"{u} happy\n" for u in ids))
    (d / "spk2gender").write_text("spk0 f\nspk1 m\n")
    return d


def peak_hz(x: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def audio(dst: Path):
    return {u: read_audio(e)[0][:, 0] for u, e in read_kv(dst / "wav.scp").items()}


# ----------------------------------------------------------------------------- speed perturbation
@pytest.mark.parametrize("backend", ["python", pytest.param("sox", marks=NEEDS_SOX)])
def test_copies_are_named_as_kaldi_names_them_and_sped_up(tmp_path, backend):
    src = write_data_dir(tmp_path / "train")
    summary = perturb_data_dir(str(src), str(tmp_path / "train_sp"), FACTORS, backend)
    dst = tmp_path / "train_sp"
    assert summary["backend"] == backend and summary["utterances"] == 9
    ids = [f"{p}{u}" for p in ("", "sp0.9-", "sp1.1-") for u in sorted(TONES)]
    assert list(read_kv(dst / "wav.scp")) == sorted(ids)
    assert read_kv(dst / "utt2spk")["sp0.9-a_1"] == "sp0.9-spk1" and read_kv(dst / "utt2spk")["a_1"] == "spk1"
    assert read_kv(dst / "spk2utt")["sp1.1-spk0"] == "sp1.1-a_0 sp1.1-a_2"
    assert read_kv(dst / "text")["sp1.1-a_2"] == "WORDS OF a_2" and len(read_kv(dst / "utt2emo")) == 9
    assert read_kv(dst / "spk2gender") == {"spk0": "f", "spk1": "m", "sp0.9-spk0": "f", "sp0.9-spk1": "m",
                                           "sp1.1-spk0": "f", "sp1.1-spk1": "m"}
    waves = audio(dst)
    for u, hz in TONES.items():
        assert np.array_equal(waves[u], read_audio(str(src / "wav" / f"{u}.wav"))[0][:, 0])  # factor 1.0: the original
        for f in (0.9, 1.1):
            x = waves[f"sp{f}-{u}"]
            assert abs(len(x) - 16000 / f) <= 2  # n / f samples at the same rate
            assert peak_hz(x) == pytest.approx(hz * f, rel=0.01)  # pitch moves with the tempo, as sox speed


@NEEDS_SOX
def test_python_resampling_gives_soxs_audio(tmp_path):
    src = write_data_dir(tmp_path / "train")
    got = {b: audio(Path(perturb_data_dir(str(src), str(tmp_path / b), ["0.9", "1.1"], b)["dst"]))
           for b in ("sox", "python")}
    for u, x in got["sox"].items():
        assert len(x) == len(got["python"][u]) and np.max(np.abs(x - got["python"][u])) < 1e-3, u


def test_pipe_entries_take_the_python_backend_and_unreadable_copies_are_named(tmp_path, caplog):
    src = write_data_dir(tmp_path / "train")
    wav = read_kv(src / "wav.scp")
    wav["a_0"] = f"cat {wav['a_0']} |"
    wav["a_1"] = str(tmp_path / "missing.wav")
    (src / "wav.scp").write_text("".join(f"{u} {e}\n" for u, e in wav.items()))
    summary = perturb_data_dir(str(src), str(tmp_path / "sp"), ["0.9"], "auto")
    assert summary["backend"] == "python" and summary["failed"] == ["sp0.9-a_1"]
    assert list(read_kv(tmp_path / "sp" / "wav.scp")) == ["sp0.9-a_0", "sp0.9-a_2"]
    assert list(read_kv(tmp_path / "sp" / "text")) == ["sp0.9-a_0", "sp0.9-a_2"]
    assert "sp0.9-a_1" in caplog.text and "missing.wav" in caplog.text


@pytest.mark.parametrize("factors,msg", [("0.9 fast", "'fast' is not a positive number"),
                                         ("0.9 -1", "'-1' is not a positive number"),
                                         ("1.0 1 0.9", "give each factor once"), ("", "give each factor once")])
def test_bad_factors_are_refused_with_the_option_named(factors, msg):
    with pytest.raises(KaldiDirError) as e:
        parse_factors(factors)
    assert f"--speed_perturb_factors '{factors}'" in str(e.value) and msg in str(e.value)


def test_stage2_makes_the_sp_set_that_stage3_filters(tmp_path):
    rec = toy_recipe(tmp_path)
    write_data_dir(rec / "data" / "a_tr")
    write_data_dir(rec / "data" / "a_dv", {"d_0": 400.0})
    r = run_stages(rec, "--stage", "2", "--stop_stage", "3", "--asr_train_set", "a_tr", "--asr_valid_set", "a_dv",
                   "--speed_perturb_factors", "0.9 1.0 1.1", "--nj", "1", "--min_sec", "0.95")
    assert r.returncode == 0, r.stdout + r.stderr
    raw = rec / "dump" / "raw"
    assert not (raw / "a_tr").exists()  # as asr.sh: only the combined set is formatted and used
    u2s = read_kv(raw / "a_tr_sp" / "utt2spk")
    # 1 s sped up by 1.1 is 0.91 s: --min_sec 0.95 (stage 3) drops those copies from the train set
    assert sorted(u2s) == sorted(f"{p}{u}" for p in ("", "sp0.9-") for u in TONES)
    assert u2s["sp0.9-a_2"] == "sp0.9-spk0" and read_kv(raw / "a_tr_sp" / "spk2utt")["sp0.9-spk1"] == "sp0.9-a_1"
    for u, e in read_kv(raw / "a_tr_sp" / "wav.scp").items():
        info = sf.info(str(rec / e))
        assert info.samplerate == 16000 and abs(info.frames - 16000 / (0.9 if u.startswith("sp") else 1.0)) <= 2
    assert (rec / "exp" / "logs" / "filter_length_a_tr_sp.log").is_file()
    assert (rec / "exp" / "logs" / "speed_perturb_a_tr_sp.log").is_file()


# ----------------------------------------------------------------------------- --skip_* flags
# Each range fails when it runs here (its Python commands fail, or a config or model is missing); skipped, it
# does nothing.
SKIPS = [
    ("skip_data_prep", ["--stage", "2", "--stop_stage", "4"], "2 (--skip_data_prep true) 3 (--skip_data_prep true)"),
    ("skip_train", ["--stage", "5", "--stop_stage", "6"], "5 (--skip_train true) 6 (--skip_train true)"),
    ("skip_eval", ["--stage", "7", "--stop_stage", "9"], "7 (--skip_eval true) 8 (--skip_eval true) 9"),
    ("skip_packing", ["--stage", "10", "--stop_stage", "10"], "10 (--skip_packing true)"),
    ("skip_upload", ["--stage", "11", "--stop_stage", "11", "--hf_repo", "org/name"], "11 (--skip_upload true)"),
]


@pytest.mark.parametrize("flag,stages,logged", SKIPS, ids=[s[0] for s in SKIPS])
def test_a_skip_flag_turns_its_stages_off(tmp_path, flag, stages, logged):
    common = [*stages, "--asr_train_set", "a_tr", "--asr_valid_set", "a_dv", "--model_tag", "m"]
    r = run_stages(toy_recipe(tmp_path / "on"), *common, f"--{flag}", "false", "--python", "false")  # fails fast
    assert r.returncode != 0, f"without --{flag} the stages should run (and fail here): {r.stderr}"
    rec = toy_recipe(tmp_path / "off")
    r = run_stages(rec, *common, f"--{flag}", "true")
    assert r.returncode == 0, r.stderr
    assert f"skipped stages: {logged}" in r.stderr and "Stage " not in r.stderr
    assert not (rec / "dump").exists() and not (rec / "exp" / "m").exists()


def test_help_lists_the_options():
    r = subprocess.run(["bash", "harmonifuse.sh", "--help"], cwd=TEMPLATE, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  --")}
    for flag in ("skip_data_prep", "skip_train", "skip_eval", "skip_packing", "hf_dry_run", "hf_private"):
        assert "[false]" in lines[f"--{flag}"], flag
    assert "[true]" in lines["--skip_upload"] and "[11]" in lines["--stop_stage"]
    assert "_sp" in lines["--speed_perturb_factors"] and "org/name" in lines["--hf_repo"]
