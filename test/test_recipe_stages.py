"""Recipe stages 4, 6 and 7 of harmonifuse.sh: the tokenizer's vocabulary size, the reuse of a finished
encoder pre-training, and the decoding config (--inference_config)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
import yaml
from conftest import ASR_TEXTS, EMOTIONS, TINY_TASKS, toy_wave, write_task_dir

from espnet_harmonifuse.bin import tokenizer_train

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "egs2" / "TEMPLATE" / "harmonifuse1"


def toy_recipe(root: Path) -> Path:
    """A recipe dir that runs the TEMPLATE's harmonifuse.sh with its scripts/, cmd.sh and path.sh."""
    rec = root / "egs2" / "toy" / "harmonifuse1"
    (rec / "conf").mkdir(parents=True)
    for name in ("scripts", "harmonifuse.sh", "cmd.sh", "path.sh"):
        (rec / name).symlink_to(TEMPLATE / name)
    return rec


def run_stages(rec: Path, *args: str, python: str = sys.executable) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(["./harmonifuse.sh", "--python", python, *args], cwd=rec, env=env,
                          capture_output=True, text=True, timeout=600)


def test_help_describes_the_options_of_these_stages():
    r = subprocess.run(["bash", "harmonifuse.sh", "--help"], cwd=TEMPLATE, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  --")}
    assert "[false]" in lines["--pretrain_reuse"] and ".stale." in lines["--pretrain_reuse"]
    assert "beam_size: 4" in lines["--inference_config"]
    assert "stops" in lines["--nbpe"]


# ----------------------------------------------------------------------------- stage 4: vocabulary size
def train_tokenizer(tmp_path: Path, size: int) -> Path:
    text = tmp_path / "text"
    text.write_text("".join(f"u{i} {t}\n" for i, t in enumerate(ASR_TEXTS)))
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump({"tasks": TINY_TASKS}))
    out = tmp_path / f"bpe{size}"
    tokenizer_train.main(["--config", str(conf), "--text", str(text), "--out_dir", str(out), "--vocab_size", str(size)])
    return out


def refused(tmp_path: Path, size: int) -> str:
    with pytest.raises(SystemExit) as e:
        train_tokenizer(tmp_path, size)
    return str(e.value.code)


@pytest.mark.parametrize("kind", ["small", "large"])
def test_a_vocabulary_the_text_does_not_allow_stops_with_the_bound_that_works(tmp_path, kind):
    asked = 10 if kind == "small" else 5000
    msg = refused(tmp_path, asked)
    assert str(tmp_path / "text") in msg and f"--vocab_size {asked}" in msg and "Traceback" not in msg
    word = "at least" if kind == "small" else "at most"
    bound = int(re.search(rf"{word} (\d+) pieces", msg).group(1))
    assert f"Fix: --nbpe {bound} or {'more' if kind == 'small' else 'less'}" in msg
    # the bound is exact: it trains a model of that many pieces, one step beyond it does not
    out = train_tokenizer(tmp_path, bound)
    assert spm.SentencePieceProcessor(model_file=str(out / "bpe.model")).get_piece_size() == bound
    assert len((out / "tokens.txt").read_text().splitlines()) == bound
    beyond = bound - 1 if kind == "small" else bound + 1
    assert f"{word} {bound} pieces" in refused(tmp_path, beyond)


@pytest.mark.slow  # a recipe stage: ESPnet's import alone takes most of it
def test_stage4_stops_on_a_too_large_vocabulary_without_writing_a_model(tmp_path):
    rec = toy_recipe(tmp_path)
    write_task_dir(rec / "dump" / "raw", "a_tr", [(f"a{i}", toy_wave(i, 0.1), t) for i, t in enumerate(ASR_TEXTS)])
    (rec / "conf" / "train.yaml").write_text(yaml.safe_dump({"tasks": TINY_TASKS[:1]}))
    r = run_stages(rec, "--stage", "4", "--stop_stage", "4", "--asr_train_set", "a_tr", "--asr_valid_set", "a_tr",
                   "--train_config", "conf/train.yaml", "--nbpe", "5000")
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert re.search(r"--vocab_size 5000 does not fit the text of dump/raw/a_tr/text .*Fix: --nbpe \d+ or less", out)
    assert not (rec / "data" / "token_list" / "bpe5000" / "bpe.model").exists()


# ----------------------------------------------------------------------------- stage 6: pre-training reuse
FAKE_TRAIN = """#!/usr/bin/env bash
# harmonifuse_train stand-in: counts its calls and writes a model file holding the call's number
if [ "$1 $2" = "-m espnet2.bin.harmonifuse_train" ]; then
    while [ "$1" != --output_dir ]; do shift; done
    echo "$2" >> {calls}
    mkdir -p "$2" && wc -l < {calls} > "$2/valid.loss.best.pth"
    exit 0
fi
exec {python} "$@"
"""
PRETRAIN_CONF = "# encoder pre-training\nmax_epoch: 2\noptim_conf: {lr: 0.002}\n"


@pytest.fixture
def pretrain_recipe(tmp_path):
    """A recipe with formatted ASR data, shape files and a tokenizer file, whose training is a stand-in."""
    rec = toy_recipe(tmp_path)
    for dset in ("a_tr", "a_dv"):
        paths = write_task_dir(rec / "dump" / "raw", dset, [(f"{dset}{i}", toy_wave(i, 0.1), "A B") for i in range(2)])
        (rec / "exp" / "stats" / dset).mkdir(parents=True)
        os.rename(paths["shape"], rec / "exp" / "stats" / dset / "speech_shape")
    (rec / "data" / "token_list" / "bpe500").mkdir(parents=True)
    (rec / "data" / "token_list" / "bpe500" / "bpe.model").write_bytes(b"pieces")
    (rec / "conf" / "train.yaml").write_text("max_epoch: 1\n")
    (rec / "conf" / "pretrain.yaml").write_text(PRETRAIN_CONF)
    fake = tmp_path / "fake_python"
    fake.write_text(FAKE_TRAIN.format(calls=tmp_path / "calls", python=sys.executable))
    fake.chmod(0o755)

    def stage6(*extra: str):
        r = run_stages(rec, "--stage", "6", "--stop_stage", "6", "--ngpu", "0", "--asr_train_set", "a_tr",
                       "--asr_valid_set", "a_dv", "--train_config", "conf/train.yaml",
                       "--pretrain_config", "conf/pretrain.yaml", "--pretrain_only", "true", *extra, python=str(fake))
        assert r.returncode == 0, r.stdout + r.stderr
        calls = (tmp_path / "calls").read_text().splitlines() if (tmp_path / "calls").exists() else []
        return len(calls), r.stderr

    stage6()  # the first pre-training
    return rec, stage6


def model_of(pdir: Path) -> int:
    """The number of the training call that wrote this pre-training."""
    return int((pdir / "valid.loss.best.pth").read_text())


def test_pretraining_with_the_same_config_and_data_is_reused(pretrain_recipe):
    rec, stage6 = pretrain_recipe
    marker = json.loads((rec / "exp" / "pretrain" / "done").read_text())
    assert [Path(f["path"]).name for f in marker["files"]] == ["wav.scp", "text", "speech_shape"] * 2 + ["bpe.model"]
    # a comment and another layout say the same: still current
    (rec / "conf" / "pretrain.yaml").write_text("optim_conf:\n  lr: 0.002\nmax_epoch: 2  # same values\n")
    calls, log = stage6()
    assert calls == 1 and "finished earlier, from the same config and data" in log
    assert not list(rec.glob("exp/pretrain.stale.*"))


def test_the_digest_covers_the_resolved_config_of_an_override_file(pretrain_recipe):
    rec, stage6 = pretrain_recipe
    # the same options, now an override of a base config: still current
    (rec / "conf" / "base.yaml").write_text("max_epoch: 5\noptim_conf: {lr: 0.002}\n")
    (rec / "conf" / "pretrain.yaml").write_text("base_config: base.yaml\nmax_epoch: 2\n")
    assert stage6()[0] == 1
    # a value changed in the base alone changes the pre-training
    (rec / "conf" / "base.yaml").write_text("max_epoch: 5\noptim_conf: {lr: 0.01}\n")
    calls, log = stage6()
    assert calls == 2 and "its config conf/pretrain.yaml changed" in log


@pytest.mark.parametrize("change", ["config", "data list", "tokenizer"])
def test_a_changed_input_trains_again_and_keeps_the_old_pretraining(pretrain_recipe, change):
    rec, stage6 = pretrain_recipe
    changed = {"config": "conf/pretrain.yaml", "data list": "dump/raw/a_tr/text",
               "tokenizer": "data/token_list/bpe500/bpe.model"}[change]
    if change == "config":
        (rec / changed).write_text(PRETRAIN_CONF.replace("max_epoch: 2", "max_epoch: 3"))
    else:
        with open(rec / changed, "a") as f:
            f.write("a_tr9 C D\n")
    calls, log = stage6()
    assert calls == 2
    assert re.search(rf"pre-training again: .*{re.escape(changed)} changed .*exp/pretrain\.stale\.1", log)
    assert model_of(rec / "exp" / "pretrain.stale.1") == 1 and model_of(rec / "exp" / "pretrain") == 2
    assert (rec / "exp" / "pretrain.stale.1" / "done").is_file()
    # the new marker records the changed input: a further run reuses the new pre-training
    assert stage6()[0] == 2


def test_pretrain_reuse_true_keeps_a_stale_pretraining_on_purpose(pretrain_recipe):
    rec, stage6 = pretrain_recipe
    (rec / "dump" / "raw" / "a_dv" / "wav.scp").write_text("")
    calls, log = stage6("--pretrain_reuse", "true")
    assert calls == 1 and model_of(rec / "exp" / "pretrain") == 1
    assert "reused (--pretrain_reuse true) although dump/raw/a_dv/wav.scp changed" in log
    assert not list(rec.glob("exp/pretrain.stale.*"))
    # without it, the next run notices the change
    calls, _ = stage6()
    assert calls == 2 and model_of(rec / "exp" / "pretrain.stale.1") == 1


def test_a_marker_without_digests_counts_as_stale(pretrain_recipe):
    rec, stage6 = pretrain_recipe
    (rec / "exp" / "pretrain" / "done").write_text("Mon Dec  1 12:00:00 UTC\n")
    calls, log = stage6()
    assert calls == 2 and "records no digest of its config and data" in log


# ----------------------------------------------------------------------------- stage 7: decoding config
@pytest.fixture
def decode_recipe(tmp_path, make_args):
    """A recipe with an SER test set and a (randomly initialised) model in exp/m, as training writes it."""
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    rec = toy_recipe(tmp_path)
    write_task_dir(rec / "dump" / "raw", "s_te", [(f"s{i}", toy_wave(100 + i, 0.3), e) for i, e in enumerate(EMOTIONS)])
    args = make_args()
    torch.manual_seed(0)
    (rec / "exp" / "m").mkdir(parents=True)
    torch.save(HarmoniFuseTask.build_model(args).state_dict(), rec / "exp" / "m" / "valid.loss.best.pth")
    (rec / "exp" / "m" / "config.yaml").write_text(yaml.safe_dump(vars(args)))

    def stage7(*extra: str):
        return run_stages(rec, "--stage", "7", "--stop_stage", "7", "--ser_train_set", "s_tr", "--ser_test_sets",
                          "s_te", "--model_tag", "m", "--inference_nj", "1", *extra)

    return rec, stage7


def decoded(rec: Path, tag: str):
    out = rec / "exp" / "m" / f"decode_{tag}_valid_loss_best" / "s_te"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return rows, (out / "logdir" / "decode.1.log").read_text()


@pytest.mark.slow
def test_inference_config_sets_the_decoding_options(decode_recipe):
    rec, stage7 = decode_recipe
    (rec / "conf" / "decode_gen.yaml").write_text(
        "label_decoding: generate\nmax_new_tokens: 2\nbeam_size: 2\nbatch_size: 3\n")
    for extra in ([], ["--inference_config", "conf/decode_gen.yaml"]):
        r = stage7(*extra)
        assert r.returncode == 0, r.stdout + r.stderr
    rows, log = decoded(rec, "default")
    assert [r["key"] for r in rows] == ["s0", "s1", "s2", "s3"]
    assert all(set(r["label_posteriors"]) == set(EMOTIONS) and r["text"] in EMOTIONS for r in rows)
    assert "beam_size=1 max_new_tokens=128" in log and "label_decoding=score" in log
    # the config's options: labels generated freely (no posteriors), at most 2 tokens, a beam of 2;
    # --inference_batch_size (1) on the command line wins over its batch_size
    rows, log = decoded(rec, "decode_gen")
    assert [r["key"] for r in rows] == ["s0", "s1", "s2", "s3"]
    assert all("label_posteriors" not in r and len(r["tokens"]) <= 2 for r in rows)
    assert "batch_size=1 beam_size=2 max_new_tokens=2" in log and "label_decoding=generate" in log
    assert "(config: conf/decode_gen.yaml)" in log


def test_inference_config_with_an_unknown_key_stops_with_espnets_message(decode_recipe):
    rec, stage7 = decode_recipe
    (rec / "conf" / "decode_bad.yaml").write_text("beam_size: 4\nnbest: 2\n")
    r = stage7("--inference_config", "conf/decode_bad.yaml")
    assert r.returncode != 0
    assert "error: unrecognized arguments: nbest (from conf/decode_bad.yaml)" in r.stderr
