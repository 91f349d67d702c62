"""IEMOCAP/LibriSpeech preparation on fake corpus trees; the recipe's data.sh and stages 1-2."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_harmonifuse.data import iemocap, librispeech
from espnet_harmonifuse.data.kaldi_dir import read_kv, read_spk2utt, validate_data_dir

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "iemocap_librispeech" / "harmonifuse1"
LABELS = "neutral,happy,angry,sad"
DIALOG_CATS = ["neu", "hap", "exc", "ang", "sad", "fru", "xxx", "neu", "sad", "exc"]  # 10 turns/dialog, F M F M..
MAPPED = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
LS_TEXTS = ["HELLO WORLD", "THE QUICK BROWN FOX", "IT WAS A DARK NIGHT"]
LS_SETS = ["train-clean-100", "dev-clean", "test-clean", "test-other"]
SETS_FOLD1 = ["iemocap_dev_fold1", "iemocap_test_fold1", "iemocap_train_fold1", "librispeech_dev_clean",
              "librispeech_test_clean", "librispeech_test_other", "librispeech_train_clean_100"]


def _sine(seed: int, sec: float = 0.25) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * (200 + 37 * seed) * np.arange(int(sec * 16000)) / 16000)).astype(np.float32)


def make_iemocap(root: Path, sessions=(1, 2)) -> dict:
    """Session{N}: 2 dialogs of 10 turns; {uttid: (session, raw category)}; Session2 has one 'sur'."""
    truth = {}
    for s in sessions:
        sdir = root / f"Session{s}"
        emo = sdir / "dialog" / "EmoEvaluation"
        (emo / "Categorical").mkdir(parents=True)
        (emo / "Categorical" / f"Ses0{s}F_impro01_e1_cat.txt").write_text(f"Ses0{s}F_impro01_F000 :Neutral; ()\n")
        for dialog in (f"Ses0{s}F_impro01", f"Ses0{s}M_script01_1"):
            wdir = sdir / "sentences" / "wav" / dialog
            wdir.mkdir(parents=True)
            lines = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            for i, cat in enumerate(DIALOG_CATS):
                if s == 2 and dialog.endswith("script01_1") and i == 7:
                    cat = "sur"
                utt = f"{dialog}_{'FM'[i % 2]}{i // 2:03d}"
                sf.write(wdir / f"{utt}.wav", _sine(len(truth)), 16000, subtype="PCM_16")
                truth[utt] = (s, cat)
                start = 1.5 * i + 0.25
                lines += [f"[{start:.4f} - {start + 1.2:.4f}]\t{utt}\t{cat}\t[2.5000, 3.0000, 2.5000]",
                          "C-E1:\tNeutral;\t()", "A-E2:\tval 3; act 2; dom  2;\t()", ""]
            (emo / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
            (emo / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07 resource fork")
    return truth


def make_librispeech(root: Path, sets=LS_SETS) -> dict:
    """LibriSpeech/<set>/<spk>/<chapter>/: 2 speakers x 1 chapter x 3 flacs per set."""
    truth = {}
    for k, subset in enumerate(sets):
        for spk in (100 + 10 * k, 2000 + 10 * k):
            chap = root / subset / str(spk) / "5555"
            chap.mkdir(parents=True)
            lines = []
            for j, words in enumerate(LS_TEXTS):
                utt = f"{spk}-5555-{j:04d}"
                sf.write(chap / f"{utt}.flac", _sine(j + k, sec=0.3), 16000, format="FLAC", subtype="PCM_16")
                lines.append(f"{utt} {words}")
                truth[utt] = (subset, str(spk), words, str((chap / f"{utt}.flac").resolve()))
            (chap / f"{spk}-5555.trans.txt").write_text("\n".join(lines) + "\n")
    return truth


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpora")
    iemo, libri = base / "IEMOCAP_full_release", base / "LibriSpeech"
    return {"iemocap": iemo, "iemocap_truth": make_iemocap(iemo),
            "librispeech": libri, "librispeech_truth": make_librispeech(libri)}


def _usable(truth, session=None, exclude=None):
    return {u: MAPPED[c] for u, (s, c) in truth.items() if c in MAPPED
            and (session is None or s == session) and (exclude is None or s != exclude)}


def test_speaker_of():
    assert iemocap.speaker_of("Ses01F_impro01_F000") == "Ses01F"
    assert iemocap.speaker_of("Ses01F_impro01_M003") == "Ses01M"
    assert iemocap.speaker_of("Ses03M_script01_1_F012") == "Ses03F"
    with pytest.raises(iemocap.IemocapError, match="unexpected IEMOCAP utterance id"):
        iemocap.speaker_of("foo_bar")


def test_iemocap_label_mapping_and_drop_counts(corpora, tmp_path, caplog):
    truth = corpora["iemocap_truth"]
    with caplog.at_level("INFO"):
        summary = iemocap.prepare_iemocap(str(corpora["iemocap"]), str(tmp_path), fold=2, dev_ratio=0.25)
    assert summary["dropped"] == {"fru": 4, "sur": 1, "xxx": 4}
    assert summary["dropped_total"] == 9 and summary["missing_wav"] == 0
    assert summary["raw_counts"]["exc"] == 8 and summary["raw_counts"]["neu"] == 7
    assert "dropped 9 utterances: fru=4 sur=1 xxx=4" in caplog.text
    text = {}
    for part in ("train", "dev", "test"):
        text.update(read_kv(tmp_path / f"iemocap_{part}_fold2" / "text"))
    assert text == _usable(truth)  # exc -> happy; fru, sur and xxx gone
    assert all(text[u] == "happy" for u, (_, c) in truth.items() if c == "exc")
    n = sum(summary["splits"][f"iemocap_{p}_fold2"]["total"] for p in ("train", "dev", "test"))
    assert n == len(text) == 31


@pytest.mark.parametrize("fold", [1, 2])
def test_iemocap_fold_is_leave_one_session_out(corpora, tmp_path, fold):
    truth = corpora["iemocap_truth"]
    iemocap.prepare_iemocap(str(corpora["iemocap"]), str(tmp_path), fold=fold, dev_ratio=0.25, seed=3)
    d = {p: tmp_path / f"iemocap_{p}_fold{fold}" for p in ("train", "dev", "test")}
    ids = {p: list(read_kv(d[p] / "wav.scp")) for p in d}
    assert set(ids["test"]) == set(_usable(truth, session=fold))
    assert not {u for p in ("train", "dev") for u in ids[p] if truth[u][0] == fold}
    assert not set(ids["train"]) & set(ids["dev"])
    assert set(ids["train"]) | set(ids["dev"]) == set(_usable(truth, exclude=fold))
    assert 3 <= len(ids["dev"]) <= 6  # ~25 % of 15-16 training utterances, >= 1 per label
    assert set(read_kv(d["dev"] / "text").values()) == {"neutral", "happy", "angry", "sad"}
    for p, path in d.items():
        assert validate_data_dir(path, LABELS) == [], p
        wav = read_kv(path / "wav.scp")
        assert list(wav) == sorted(wav)
        assert all(os.path.isabs(w) and os.path.isfile(w) and w.endswith(f"/{u}.wav") for u, w in wav.items())
        utt2spk = read_kv(path / "utt2spk")
        assert all(s == u[:5] + u.rsplit("_", 1)[1][0] for u, s in utt2spk.items())
        assert read_spk2utt(path / "spk2utt") == {s: sorted(u for u in utt2spk if utt2spk[u] == s)
                                                   for s in sorted(set(utt2spk.values()))}
    assert set(read_kv(d["test"] / "utt2spk").values()) == {f"Ses0{fold}F", f"Ses0{fold}M"}


def test_iemocap_dev_split_is_seeded(corpora, tmp_path):
    dev = []
    for run, seed in enumerate((0, 0, 1)):
        iemocap.prepare_iemocap(str(corpora["iemocap"]), str(tmp_path / str(run)), fold=1, dev_ratio=0.3, seed=seed)
        dev.append(list(read_kv(tmp_path / str(run) / "iemocap_dev_fold1" / "text")))
    assert dev[0] == dev[1] and dev[0] != dev[2]


def test_iemocap_errors_name_the_path(corpora, tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(iemocap.IemocapError, match=re.escape(f"'{missing}' is not a directory")):
        iemocap.prepare_iemocap(str(missing), str(tmp_path / "data"))
    (empty := tmp_path / "empty").mkdir()
    with pytest.raises(iemocap.IemocapError, match=re.escape(f"'{empty}' holds no Session1 ... Session5")):
        iemocap.prepare_iemocap(str(empty), str(tmp_path / "data"))
    with pytest.raises(iemocap.IemocapError, match="fold 5 needs .*Session5"):
        iemocap.prepare_iemocap(str(corpora["iemocap"]), str(tmp_path / "data"), fold=5)
    for sub in ("Session1/sentences/wav", "Session2"):
        (tmp_path / "broken" / sub).mkdir(parents=True)
    with pytest.raises(iemocap.IemocapError, match="EmoEvaluation' is missing"):
        iemocap.prepare_iemocap(str(tmp_path / "broken"), str(tmp_path / "data"), fold=1)
    assert not (tmp_path / "data").exists()


def test_iemocap_cli(corpora, tmp_path, caplog):  # also: --root may be the dir above IEMOCAP_full_release
    rc = iemocap.main(["--root", str(corpora["iemocap"].parent), "--data_dir", str(tmp_path), "--fold", "1",
                       "--dev_ratio", "0.1", "--seed", "0"])
    assert rc == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"iemocap_{p}_fold1" for p in ("dev", "test", "train")]
    assert iemocap.main(["--root", str(tmp_path / "nope"), "--data_dir", str(tmp_path)]) == 1
    assert f"'{tmp_path / 'nope'}' is not a directory" in caplog.text


def test_librispeech_dirs(corpora, tmp_path):
    truth = corpora["librispeech_truth"]
    summary = librispeech.prepare_librispeech(str(corpora["librispeech"]), str(tmp_path), LS_SETS)
    assert sorted(summary) == sorted(f"librispeech_{s.replace('-', '_')}" for s in LS_SETS)
    for subset in LS_SETS:
        d = tmp_path / librispeech.data_name(subset)
        assert validate_data_dir(d) == []
        expected = {u: t for u, t in truth.items() if t[0] == subset}
        wav, text, utt2spk = (read_kv(d / f) for f in ("wav.scp", "text", "utt2spk"))
        assert list(wav) == sorted(expected)
        assert wav == {u: t[3] for u, t in expected.items()}
        assert all(os.path.isabs(p) and p.endswith(".flac") and os.path.isfile(p) for p in wav.values())
        assert text == {u: t[2] for u, t in expected.items()}
        assert utt2spk == {u: t[1] for u, t in expected.items()}
        assert {s: len(u) for s, u in read_spk2utt(d / "spk2utt").items()} == {s: 3 for s in set(utt2spk.values())}
        assert summary[d.name] == {"utts": 6, "speakers": 2, "missing_flac": 0, "bad_lines": 0}
    # the CLI; --root may be the dir above LibriSpeech/
    assert librispeech.main(["--root", str(corpora["librispeech"].parent), "--data_dir", str(tmp_path / "lc"),
                             "--sets", "dev-clean", "--lowercase"]) == 0
    assert [p.name for p in (tmp_path / "lc").iterdir()] == ["librispeech_dev_clean"]
    lc = read_kv(tmp_path / "lc" / "librispeech_dev_clean" / "text")
    assert lc == {u: t.lower() for u, t in read_kv(tmp_path / "librispeech_dev_clean" / "text").items()}


def test_librispeech_errors_name_the_path(corpora, tmp_path, caplog):
    root = corpora["librispeech"]
    with pytest.raises(librispeech.LibriSpeechError, match=re.escape(f"'{root / 'train-clean-360'}' not found")):
        librispeech.prepare_librispeech(str(root), str(tmp_path / "data"), ["dev-clean", "train-clean-360"])
    assert not (tmp_path / "data").exists()  # every set is checked before anything is written
    with pytest.raises(librispeech.LibriSpeechError, match=re.escape(f"'{tmp_path / 'nope'}' is not a directory")):
        librispeech.prepare_librispeech(str(tmp_path / "nope"), str(tmp_path / "data"))
    (tmp_path / "empty" / "dev-clean").mkdir(parents=True)
    with pytest.raises(librispeech.LibriSpeechError, match="no <spk>/<chapter>/<spk>-<chapter>.trans.txt"):
        librispeech.prepare_librispeech(str(tmp_path / "empty"), str(tmp_path / "data"), ["dev-clean"])
    assert librispeech.main(["--root", str(root), "--data_dir", str(tmp_path), "--sets", "test-foo"]) == 1
    assert f"'{root / 'test-foo'}' not found" in caplog.text and "LibriSpeech sets are" in caplog.text


@pytest.fixture
def recipe(tmp_path, corpora):
    """A scratch copy of the recipe (TEMPLATE symlinks resolve) with db.sh set to the fake trees."""
    (tmp_path / "egs2").mkdir()
    os.symlink(REPO / "egs2" / "TEMPLATE", tmp_path / "egs2" / "TEMPLATE")
    rdir = tmp_path / "egs2" / "iemocap_librispeech" / "harmonifuse1"
    shutil.copytree(RECIPE, rdir, symlinks=True, ignore=shutil.ignore_patterns("data", "dump", "exp"))
    (rdir / "db.sh").write_text(f"IEMOCAP={corpora['iemocap']}\nLIBRISPEECH={corpora['librispeech']}\n")
    return rdir


def _run(cmd, cwd):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_recipe_files():
    for name in ("harmonifuse.sh", "scripts", "cmd.sh", "path.sh"):
        assert os.readlink(RECIPE / name) == f"../../TEMPLATE/harmonifuse1/{name}" and (RECIPE / name).exists()
    db = (RECIPE / "db.sh").read_text()
    assert not (RECIPE / "db.sh").is_symlink() and "\nIEMOCAP=\n" in db and "\nLIBRISPEECH=\n" in db
    assert os.access(RECIPE / "run.sh", os.X_OK) and os.access(RECIPE / "local/data.sh", os.X_OK)


def test_local_data_sh(recipe, corpora):
    proc = _run(["bash", "local/data.sh", "--fold", "1", "--dev_ratio", "0.2"], recipe)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in (recipe / "data").iterdir()) == SETS_FOLD1
    assert "dropped 9 utterances" in proc.stderr
    for name in SETS_FOLD1:
        assert validate_data_dir(recipe / "data" / name, LABELS if "iemocap" in name else None) == [], name
    assert set(read_kv(recipe / "data/iemocap_test_fold1/text")) == set(_usable(corpora["iemocap_truth"], 1))
    assert not (REPO / "egs2" / "iemocap_librispeech" / "harmonifuse1" / "data").exists()


@pytest.mark.parametrize("db, message", [
    ("IEMOCAP=\nLIBRISPEECH=/x\n", "IEMOCAP is not set: edit {db} and set IEMOCAP="),
    ("IEMOCAP=/no/such/dir\nLIBRISPEECH=/x\n", "IEMOCAP=/no/such/dir (from {db}) is not a directory"),
    ("IEMOCAP={iemo}\nLIBRISPEECH=\n", "LIBRISPEECH is not set: edit {db} and set LIBRISPEECH="),
    ("IEMOCAP={empty}\nLIBRISPEECH={libri}\n", "IEMOCAP={empty} (from {db}) holds no Session1"),
    ("IEMOCAP={iemo}\nLIBRISPEECH={empty}\n", "'{empty}/train-clean-100' not found"),
])
def test_local_data_sh_explains_bad_db_sh(recipe, corpora, tmp_path, db, message):
    fill = dict(iemo=corpora["iemocap"], libri=corpora["librispeech"], empty=tmp_path, db=recipe / "db.sh")
    (recipe / "db.sh").write_text(db.format(**fill))
    proc = _run(["bash", "local/data.sh", "--fold", "1"], recipe)
    assert proc.returncode != 0 and message.format(**fill) in proc.stderr, proc.stderr


def test_run_sh_stages_1_2(recipe):
    proc = _run(["./run.sh", "--fold", "7", "--stage", "1", "--stop_stage", "1"], recipe)
    assert proc.returncode == 2 and "--fold must be 1-5" in proc.stderr and not (recipe / "data").exists()
    proc = _run(["./run.sh", "--fold", "1", "--stage", "1", "--stop_stage", "2", "--nj", "2",
                 "--local_data_opts", "--dev_ratio 0.2"], recipe)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "--fold 1 --dev_ratio 0.2" in (recipe / "exp" / "logs" / "data_prep.log").read_text() + proc.stderr
    assert sorted(p.name for p in (recipe / "dump" / "raw").iterdir()) == SETS_FOLD1
    for name in SETS_FOLD1:
        src, dst = recipe / "data" / name, recipe / "dump" / "raw" / name
        assert validate_data_dir(dst) == [], name
        assert read_kv(dst / "text") == read_kv(src / "text")
        wavs = read_kv(dst / "wav.scp")
        assert list(wavs) == list(read_kv(src / "wav.scp"))
        for utt, path in wavs.items():
            assert path.endswith(".wav"), path
            info = sf.info(os.path.join(recipe, path))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "WAV")
            assert info.frames == sf.info(read_kv(src / "wav.scp")[utt]).frames
    rows = (recipe / "exp" / "stage_times.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[0] for r in rows] == ["1", "2"]


@pytest.mark.parametrize("conf, llm", [("conf/train.yaml", "Qwen/Qwen2.5-1.5B-Instruct"),
                                       ("conf/tuning/train_llama.yaml", "meta-llama/Llama-3.2-1B-Instruct")])
def test_configs_parse_offline(conf, llm, monkeypatch):
    from espnet_harmonifuse.bin.common import load_train_args

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = load_train_args(str(RECIPE / conf))
    assert args.backbone == "hf_ssl" and args.backbone_conf["model_name_or_path"] == "microsoft/wavlm-large"
    assert args.backbone_conf["freeze"] is True and args.backbone_conf["normalize_waveform"] is True
    assert (args.fusion, args.gate, args.projector) == ("prompt_adaptive", "task_gate", "stack_mlp")
    assert args.projector_conf == {"downsample_rate": 5, "hidden_size": 2048}
    dec = args.decoder_conf
    assert args.decoder == "hf_causal_lm" and (dec["model_name_or_path"], dec["freeze"], dec["dtype"]) == (
        llm, True, "bfloat16")
    assert dec["lora_conf"] == {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                                "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    assert args.token_type == "hf" and args.multitask_schedule == "alternate"
    assert [(t["name"], len(t["prompts"]), t.get("labels")) for t in args.tasks] == [
        ("asr", 3, None), ("ser", 3, LABELS.split(","))]
    assert (args.batch_type, args.batch_bins, args.optim, args.optim_conf["lr"]) == ("numel", 4000000, "adamw", 1e-4)
    assert args.scheduler == "warmuplr" and args.max_epoch == 10 and args.use_amp is False
    assert ["valid", "acc", "max"] in args.best_model_criterion and args.num_workers == 4
