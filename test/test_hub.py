"""Sharing through the Hugging Face Hub (bin/upload.py, recipe stage 11) and loading by repo id from the hub's
local cache, offline; and the device/dtype options of from_pretrained and the inference CLI. No network."""

import hashlib
import json
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch
import yaml
from conftest import EMOTIONS, ROOT, toy_wave, write_task_dir
from test_hf_local import hf_args, hf_dirs  # noqa: F401 (hf_dirs: a fixture)
from test_recipe_stages import run_stages, toy_recipe

from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.bin import harmonifuse_inference, pack, upload
from espnet_harmonifuse.tasks import HarmoniFuseTask
from espnet_harmonifuse.utils.hub import HubModelNotFoundError, looks_like_repo_id

REPO = "someorg/tiny-harmonifuse"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESULTS = "# RESULTS\n\n| set | WER |\n|---|---:|\n| asr_test | 12.5 |\n"
TRAIN_YAML = "# the recipe's training config\nbatch_size: 2\nmax_epoch: 1\n"


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch) -> Path:
    """Empty packed-model and hub caches; the hub offline (the hub reads its settings at import time)."""
    monkeypatch.setenv("ESPNET_HARMONIFUSE_CACHE", str(tmp_path / "packed_cache"))
    hub = tmp_path / "hf_home" / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return hub


@pytest.fixture
def exp(make_args, tmp_path) -> Path:
    """An exp dir as the recipe leaves it: config.yaml, a (random) model, RESULTS.md and packed.zip."""
    args = make_args()
    torch.manual_seed(0)
    d = tmp_path / "exp" / "m"
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(HarmoniFuseTask.build_model(args).state_dict(), d / "valid.loss.best.pth")
    (d / "RESULTS.md").write_text(RESULTS)
    pack.main(["--exp_dir", str(d), "--out", str(d / "packed.zip")])
    return d


def dry_run(exp: Path, tmp_path: Path, *extra: str) -> Path:
    conf = tmp_path / "train.yaml"
    conf.write_text(TRAIN_YAML)
    return upload.main(["--exp_dir", str(exp), "--hf_repo", REPO, "--train_config", str(conf),
                        "--recipe", "mini_emo", "--dry_run", "true", *extra])


def files_of(folder: Path):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def card(folder: Path):
    """(front matter, body) of the model card."""
    _, meta, body = (folder / "README.md").read_text(encoding="utf-8").split("---\n", 2)
    return yaml.safe_load(meta), body


def ser_posteriors(hf: HarmoniFuse):
    return [list(r["label_posteriors"].values()) for r in hf.decode([toy_wave(1, 0.4), toy_wave(2, 0.5)], "ser")]


def put_in_hub_cache(folder: Path, cache: Path, repo_id: str, commit: str = COMMIT) -> Path:
    """``folder`` as the hub caches a download: blobs by hash, a snapshot of links, refs/main -> commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for f in files_of(folder):
        data = (folder / f).read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / f
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot


class FakeApi:
    """Records what would go to the Hub."""

    calls = []
    fail = None

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))
        if FakeApi.fail:
            raise FakeApi.fail
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        FakeApi.calls.append(("upload_folder", kw["repo_id"], {k: v for k, v in kw.items() if k != "repo_id"}))


@pytest.fixture
def fake_api(monkeypatch):
    FakeApi.calls, FakeApi.fail = [], None
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    return FakeApi


# ----------------------------------------------------------------------------- upload
def test_dry_run_writes_the_packed_model_the_card_and_the_config_and_uploads_nothing(exp, tmp_path, fake_api):
    folder = dry_run(exp, tmp_path)
    assert folder == exp / "hf_upload" and fake_api.calls == []
    with zipfile.ZipFile(exp / "packed.zip") as zf:
        packed = zf.namelist()
    assert files_of(folder) == sorted([*packed, "README.md", "conf/train.yaml"])
    for name in packed:
        with zipfile.ZipFile(exp / "packed.zip") as zf:
            assert (folder / name).read_bytes() == zf.read(name), name
    assert (folder / "conf" / "train.yaml").read_text() == TRAIN_YAML
    meta, body = card(folder)
    assert meta["library_name"] == "espnet" and meta["language"] == ["en"] and meta["datasets"] == ["mini_emo"]
    assert {"espnet", "automatic-speech-recognition", "speech-emotion-recognition"} <= set(meta["tags"])
    assert {"wer", "recall", "accuracy"} <= set(meta["metrics"])
    assert f'HarmoniFuse.from_pretrained("{REPO}")' in body and f"--model_dir {REPO}" in body
    assert RESULTS.strip() in body and TRAIN_YAML.strip() in body
    assert "| `ser` | one of " + ", ".join(EMOTIONS) in body


def test_a_second_dry_run_replaces_the_folder_and_the_card_takes_the_tags_given(exp, tmp_path, fake_api):
    (dry_run(exp, tmp_path) / "stale.txt").write_text("left from before")
    folder = dry_run(exp, tmp_path, "--language", "en,de", "--datasets", "iemocap librispeech")
    assert "stale.txt" not in files_of(folder)
    meta, _ = card(folder)
    assert meta["language"] == ["en", "de"] and meta["datasets"] == ["iemocap", "librispeech"]
    assert not any(p.name.startswith(".hf_upload") for p in exp.iterdir())  # no temporary dir left


def test_upload_creates_the_repository_and_uploads_the_folder(exp, tmp_path, fake_api):
    conf = tmp_path / "train.yaml"
    conf.write_text(TRAIN_YAML)
    folder = upload.main(["--exp_dir", str(exp), "--hf_repo", REPO, "--train_config", str(conf), "--private", "true"])
    assert [c[:2] for c in fake_api.calls] == [("create_repo", REPO), ("upload_folder", REPO)]
    assert fake_api.calls[0][2] == {"private": True, "exist_ok": True}
    assert fake_api.calls[1][2]["folder_path"] == str(folder) and "README.md" in files_of(folder)


def test_a_refused_upload_or_a_missing_packed_model_ends_in_one_message(exp, tmp_path, fake_api, caplog):
    from huggingface_hub.errors import LocalTokenNotFoundError

    fake_api.fail = LocalTokenNotFoundError("Token is required but no token found")
    with pytest.raises(SystemExit) as e:
        upload.main(["--exp_dir", str(exp), "--hf_repo", REPO])
    assert e.value.code == 1
    assert "hf auth login" in caplog.text and f"hf upload {REPO} {exp / 'hf_upload'}" in caplog.text
    caplog.clear()
    (exp / "packed.zip").unlink()
    with pytest.raises(SystemExit):
        upload.main(["--exp_dir", str(exp), "--hf_repo", REPO, "--dry_run", "true"])
    assert f"packed model '{exp / 'packed.zip'}' not found" in caplog.text and "--stage 10" in caplog.text
    with pytest.raises(SystemExit):
        upload.main(["--exp_dir", str(exp), "--hf_repo", "not a repo"])
    assert "give org/name" in caplog.text


# ----------------------------------------------------------------------------- loading
def test_the_upload_folder_loads_as_a_local_dir_and_decodes_as_the_exp_dir(exp, tmp_path):
    folder = dry_run(exp, tmp_path)
    want = ser_posteriors(HarmoniFuse.from_pretrained(exp))
    got = ser_posteriors(HarmoniFuse.from_pretrained(folder))
    assert np.allclose(got, want, atol=1e-6)


def test_a_model_in_the_hub_cache_loads_by_repo_id_offline(exp, tmp_path, caches):
    put_in_hub_cache(dry_run(exp, tmp_path), caches, REPO)
    want = ser_posteriors(HarmoniFuse.from_pretrained(exp))
    assert np.allclose(ser_posteriors(HarmoniFuse.from_pretrained(REPO)), want, atol=1e-6)
    assert np.allclose(ser_posteriors(HarmoniFuse.from_pretrained(REPO, revision=COMMIT)), want, atol=1e-6)


def test_a_model_not_in_the_cache_offline_says_how_to_get_it(exp, tmp_path, caches):
    put_in_hub_cache(dry_run(exp, tmp_path), caches, REPO)
    with pytest.raises(HubModelNotFoundError) as e:
        HarmoniFuse.from_pretrained("someorg/other-model")
    msg = str(e.value)
    assert "'someorg/other-model' is not a local path" in msg and "HF_HUB_OFFLINE is set" in msg
    assert str(caches) in msg and "hf download someorg/other-model" in msg and "packed .zip" in msg
    with pytest.raises(HubModelNotFoundError, match="is not at revision 'v2' in the local hub cache"):
        HarmoniFuse.from_pretrained(REPO, revision="v2")
    with pytest.raises(FileNotFoundError, match="does not exist: give an exp dir"):
        HarmoniFuse.from_pretrained(tmp_path / "no_such_exp")  # a path, not a repo id: no hub lookup


def test_a_hub_repo_without_config_is_not_taken_for_a_model(tmp_path, caches):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "weights.bin").write_bytes(b"x")
    put_in_hub_cache(tmp_path / "other", caches, "someorg/not-harmonifuse")
    with pytest.raises(HubModelNotFoundError, match="has no config.yaml: it is not a HarmoniFuse model"):
        HarmoniFuse.from_pretrained("someorg/not-harmonifuse")


@pytest.mark.parametrize("name,is_repo", [("org/name", True), ("Org-1/model.v2_x", True), ("exp/train", True),
                                          ("name", False), ("a/b/c", False), ("/abs/dir", False), ("./exp", False),
                                          ("org/packed.zip", False), ("org/a--b", False), ("org/..", False)])
def test_what_counts_as_a_repo_id(name, is_repo):
    assert looks_like_repo_id(name) == is_repo


# ----------------------------------------------------------------------------- recipe stage 11
def test_stage_11_dry_run_writes_the_folder_and_without_a_repo_is_skipped(exp, tmp_path):
    rec = toy_recipe(tmp_path / "r")
    (rec / "exp").mkdir()
    exp.rename(rec / "exp" / "m")
    (rec / "conf" / "train.yaml").write_text(TRAIN_YAML)
    stage11 = ("--stage", "11", "--stop_stage", "11", "--model_tag", "m", "--train_config", "conf/train.yaml")
    r = run_stages(rec, *stage11, "--hf_repo", REPO)
    assert r.returncode == 0, r.stderr
    assert "skipped stages: 11 (--skip_upload true)" in r.stderr and not (rec / "exp" / "m" / "hf_upload").exists()
    r = run_stages(rec, *stage11, "--skip_upload", "false")
    assert r.returncode == 0, r.stderr
    assert "Stage 11 (upload) skipped: no --hf_repo" in r.stderr and not (rec / "exp" / "m" / "hf_upload").exists()
    r = run_stages(rec, *stage11, "--skip_upload", "false", "--hf_repo", REPO, "--hf_dry_run", "true")
    assert r.returncode == 0, r.stderr
    folder = rec / "exp" / "m" / "hf_upload"
    assert {"README.md", "config.yaml", "model.pth", "conf/train.yaml", "RESULTS.md"} <= set(files_of(folder))
    meta, body = card(folder)
    assert meta["datasets"] == ["toy"] and "egs2/toy/harmonifuse1" in body
    assert "dry run: nothing uploaded" in r.stdout
    assert (rec / "exp" / "m" / "logs" / "upload.log").is_file()


# ----------------------------------------------------------------------------- device and dtype
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_from_pretrained_in_a_lower_precision_decodes_on_cpu(exp, dtype):
    hf = HarmoniFuse.from_pretrained(exp, dtype=dtype)
    assert {p.dtype for p in hf.model.parameters()} == {getattr(torch, dtype)}
    want = ser_posteriors(HarmoniFuse.from_pretrained(exp))
    got = ser_posteriors(hf)
    assert np.allclose(np.sum(got, axis=1), 1.0, atol=1e-3) and np.allclose(got, want, atol=0.01)
    out = hf.decode([toy_wave(3, 0.5)], "asr", max_new_tokens=3)[0]
    assert 1 <= len(out["tokens"]) <= 3 and isinstance(out["text"], str)


def test_the_hf_backbone_and_lora_llm_decode_in_bfloat16(hf_dirs, tmp_path):  # noqa: F811
    """The paper's kind of model (WavLM + a causal LM with LoRA, tiny and random) in bfloat16."""
    args = hf_args(tmp_path, hf_dirs)
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    want = ser_posteriors(HarmoniFuse(model, args))
    model.load_state_dict(state)
    hf = HarmoniFuse(model, args, dtype=torch.bfloat16)
    assert {p.dtype for p in hf.model.parameters()} == {torch.bfloat16}
    assert np.allclose(ser_posteriors(hf), want, atol=0.01)


def test_a_wrong_device_or_dtype_stops_before_loading(exp):
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, not 'int8'"):
        HarmoniFuse.from_pretrained(exp, dtype="int8")
    with pytest.raises(ValueError, match="device must be cpu, cuda or cuda:N, not 'gpu'"):
        HarmoniFuse.from_pretrained(exp, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")
def test_cuda_without_cuda_is_an_error_in_the_api_and_the_cli(exp, tmp_path):
    with pytest.raises(ValueError, match="'cuda:1' was asked for, but CUDA is not available"):
        HarmoniFuse.from_pretrained(exp, device="cuda:1")
    paths = write_task_dir(tmp_path, "ser", [("s0", toy_wave(1, 0.3), "happy")])
    base = ["--model_dir", str(exp), "--task", "ser", "--output_dir", str(tmp_path / "out"),
            "--data_path_and_name_and_type", f"{paths['wav.scp']},speech,sound"]
    for extra in (["--ngpu", "1"], ["--device", "cuda"]):
        with pytest.raises(SystemExit) as e:
            harmonifuse_inference.main(base + extra)
        msg = str(e.value.code)
        assert msg.startswith("Error: device 'cuda' was asked for") and "use device cpu" in msg


def test_inference_cli_device_and_dtype(exp, tmp_path, caplog):
    paths = write_task_dir(tmp_path, "ser", [(f"s{i}", toy_wave(i, 0.3), e) for i, e in enumerate(EMOTIONS)])
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    harmonifuse_inference.main(["--model_dir", str(exp), "--task", "ser", "--output_dir", str(out), "--device", "cpu",
                                "--dtype", "bfloat16",
                                "--data_path_and_name_and_type", f"{paths['wav.scp']},speech,sound"])
    assert "on cpu in bfloat16" in caplog.text
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows] == ["s0", "s1", "s2", "s3"] and all(r["text"] in EMOTIONS for r in rows)
    with pytest.raises(SystemExit) as e:
        harmonifuse_inference.main(["--model_dir", str(exp), "--task", "ser", "--output_dir", str(out),
                                    "--dtype", "int8", "--data_path_and_name_and_type", "x,speech,sound"])
    assert e.value.code == 2  # argparse: not one of the choices


@pytest.mark.slow
def test_the_cli_loads_a_hub_model_by_repo_id_with_hf_home_and_offline_set(exp, tmp_path):
    """As a user runs it: HF_HOME and HF_HUB_OFFLINE=1 in the environment of a fresh process."""
    put_in_hub_cache(dry_run(exp, tmp_path), tmp_path / "home" / "hub", REPO)
    paths = write_task_dir(tmp_path, "ser", [(f"s{i}", toy_wave(i, 0.3), e) for i, e in enumerate(EMOTIONS)])
    env = dict(os.environ, HF_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               ESPNET_HARMONIFUSE_CACHE=str(tmp_path / "pc"), PYTHONPATH=str(ROOT))
    env.pop("HF_HUB_CACHE", None)
    cmd = [sys.executable, "-m", "espnet2.bin.harmonifuse_inference", "--model_dir", REPO, "--task", "ser",
           "--output_dir", str(tmp_path / "out"), "--data_path_and_name_and_type", f"{paths['wav.scp']},speech,sound"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(x) for x in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    want = HarmoniFuse.from_pretrained(exp).decode([toy_wave(i, 0.3) for i in range(4)], "ser")
    assert [r["text"] for r in rows] == [w["text"] for w in want]
    r = subprocess.run(cmd[:4] + ["someorg/missing"] + cmd[5:], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "Error: 'someorg/missing' is not a local path" in r.stderr and "HF_HUB_OFFLINE is set" in r.stderr
