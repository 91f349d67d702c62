"""Checkpoints and packed models load without running pickled code, packed models extract atomically
(also with two processes at once) and safely, and a checkpoint of another config ends in one message."""

import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import task_data_args, toy_wave, write_config

from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.bin import harmonifuse_train, pack
from espnet_harmonifuse.tasks import HarmoniFuseTask
from espnet_harmonifuse.utils.checkpoint import CheckpointError, load_state_dict_strict, safe_torch_load
from espnet_harmonifuse.utils.packed import COMPLETE_MARKER, cache_dir_for, extract_packed
from espnet_harmonifuse.utils.plots import load_reporter_stats

FAST = ["--ngpu", "0", "--num_workers", "0", "--batch_size", "2", "--optim", "adam", "--optim_conf", "lr=0.001",
        "--use_tensorboard", "false", "--use_matplotlib", "false", "--keep_nbest_models", "1", "--max_epoch", "1"]
WIDE = {"backbone_conf": {"output_size": 48}}  # another config: every backbone parameter changes shape


class Payload:
    """Pickles as a call that writes ``marker``: what a malicious checkpoint runs when pickle loads it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ESPNET_HARMONIFUSE_CACHE", str(root))
    return root


@pytest.fixture
def exp(make_args, tmp_path):
    """An exp dir as training leaves it (config.yaml with every option, model.pth) and its model."""
    args = make_args()
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    d = tmp_path / "exp"
    d.mkdir()
    (d / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), d / "model.pth")
    return d, model, args


@pytest.fixture
def packed(exp, tmp_path) -> Path:
    return pack.main(["--exp_dir", str(exp[0]), "--out", str(tmp_path / "packed.zip")])


def rezip(src: Path, dst: Path, replace: dict) -> Path:
    """A copy of the zip ``src`` with the members in ``replace`` (name -> bytes) replaced or added."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name not in replace:
                zout.writestr(name, zin.read(name))
        for name, data in replace.items():
            zout.writestr(name, data)
    return dst


def saved_bytes(obj, path: Path) -> bytes:
    torch.save(obj, path)
    return path.read_bytes()


def ser_decode(hf: HarmoniFuse):
    out = hf.decode([toy_wave(7)], "ser")[0]
    return out["label_posteriors"], out["layer_weights"]


def first_mismatch(own: torch.nn.Module, other: torch.nn.Module) -> str:
    a, b = own.state_dict(), other.state_dict()
    k = next(k for k in a if k in b and a[k].shape != b[k].shape)
    return f"{k}: checkpoint {tuple(b[k].shape)} vs config {tuple(a[k].shape)}"


# ----------------------------------------------------------------------------- no pickled code runs
def test_the_payload_runs_under_pickle_but_safe_torch_load_refuses_it(tmp_path):
    ran, refused = tmp_path / "ran", tmp_path / "refused"
    torch.save({"w": torch.ones(2), "x": Payload(ran)}, tmp_path / "a.pth")
    torch.load(tmp_path / "a.pth", weights_only=False)
    assert ran.read_text() == "ran"  # the payload is real
    torch.save({"w": torch.ones(2), "x": Payload(refused)}, tmp_path / "b.pth")
    with pytest.raises(CheckpointError) as e:
        safe_torch_load(tmp_path / "b.pth")
    msg = str(e.value)
    assert f"'{tmp_path / 'b.pth'}' is not a plain checkpoint" in msg and "'exec'" in msg
    assert "re-save it as a plain state dict" in msg
    assert not refused.exists()
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint" * 4)
    with pytest.raises(CheckpointError, match=r"cannot read '.*junk\.pth' as a PyTorch checkpoint"):
        safe_torch_load(tmp_path / "junk.pth")


def test_packed_model_whose_weights_need_pickle_is_refused(exp, packed, tmp_path):
    d, model, args = exp
    marker = tmp_path / "ran"
    evil = saved_bytes({**model.state_dict(), "x": Payload(marker)}, tmp_path / "evil.pth")
    evil_zip = rezip(packed, tmp_path / "evil.zip", {"model.pth": evil})
    with pytest.raises(CheckpointError) as e:
        HarmoniFuse.from_pretrained(evil_zip)
    msg = str(e.value)
    assert msg.startswith(f"packed model '{evil_zip}': '") and "model.pth' is not a plain checkpoint" in msg
    assert "re-save it as a plain state dict" in msg
    # the checkpoint utilities refuse the same file
    with pytest.raises(CheckpointError, match="is not a plain checkpoint"):
        load_state_dict_strict(model, tmp_path / "evil.pth", d / "config.yaml")
    with pytest.raises(CheckpointError, match="is not a plain checkpoint"):
        HarmoniFuseTask.build_model_from_file(d / "config.yaml", tmp_path / "evil.pth")
    torch.save({"reporter": Payload(marker)}, d / "checkpoint.pth")
    with pytest.raises(CheckpointError, match="checkpoint.pth' is not a plain checkpoint"):
        load_reporter_stats(d)
    assert not marker.exists()


def test_packed_model_loads_decodes_as_its_exp_dir_and_is_extracted_once(exp, packed, cache, monkeypatch):
    from_zip, from_dir = HarmoniFuse.from_pretrained(packed), HarmoniFuse.from_pretrained(exp[0])
    for a, b in zip(ser_decode(from_zip), ser_decode(from_dir)):
        assert a == pytest.approx(b, abs=1e-6)
    target = cache_dir_for(packed, cache)
    assert sorted(p.name for p in cache.iterdir()) == [target.name]  # no temporary dir left behind
    with zipfile.ZipFile(packed) as zf:
        assert {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} == {
            *zf.namelist(), COMPLETE_MARKER}

    def no_extraction(*a, **k):
        raise AssertionError("a complete cache dir is extracted again")

    monkeypatch.setattr(zipfile.ZipFile, "extractall", no_extraction)
    assert extract_packed(packed) == target


# ----------------------------------------------------------------------------- atomic, concurrent extraction
CHILD = r"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from espnet_harmonifuse.api import HarmoniFuse
zip_path, wave, ready, go = sys.argv[1:5]
Path(ready).touch()
while not Path(go).exists():
    time.sleep(0.005)
out = HarmoniFuse.from_pretrained(zip_path).decode([np.load(wave)], "ser")[0]
print("RESULT=" + json.dumps([out["label_posteriors"], out["layer_weights"]]))
"""


@pytest.mark.slow
def test_two_processes_extract_the_same_zip_at_once(exp, packed, cache, tmp_path):
    np.save(tmp_path / "wave.npy", toy_wave(7))
    go = tmp_path / "go"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(packed), str(tmp_path / "wave.npy"), str(tmp_path / f"ready{i}"),
                          str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    deadline = time.time() + 240
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):  # both imported: start them together
        assert time.time() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(next(line for line in out.splitlines() if line.startswith("RESULT="))[7:]))
    assert results[0] == results[1]
    reference = ser_decode(HarmoniFuse.from_pretrained(exp[0]))
    assert results[0][0] == pytest.approx(reference[0], abs=1e-5) and results[0][1] == pytest.approx(reference[1], abs=1e-5)
    target = cache_dir_for(packed, cache)
    assert sorted(p.name for p in cache.iterdir()) == [target.name] and (target / COMPLETE_MARKER).is_file()


def test_threads_extracting_the_same_zip_at_once_share_one_complete_dir(packed, cache):
    barrier = threading.Barrier(4)
    results = []

    def extract():
        barrier.wait()
        results.append(extract_packed(packed))

    threads = [threading.Thread(target=extract) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target = cache_dir_for(packed, cache)
    assert results == [target] * 4 and (target / COMPLETE_MARKER).is_file()
    assert sorted(p.name for p in cache.iterdir()) == [target.name]
    with zipfile.ZipFile(packed) as zf:
        assert all((target / name).read_bytes() == zf.read(name) for name in zf.namelist())


def test_when_another_process_wins_the_rename_its_copy_is_used(packed, cache, monkeypatch):
    target = cache_dir_for(packed, cache)
    real = zipfile.ZipFile.extractall

    def racing(self, path=None, *args, **kwargs):  # our copy is ready; another process renames its copy first
        real(self, path, *args, **kwargs)
        other = Path(path).parent / "other"
        real(self, other)
        (other / COMPLETE_MARKER).write_text("")
        (other / "winner").write_text("")
        os.rename(other, target)

    monkeypatch.setattr(zipfile.ZipFile, "extractall", racing)
    assert extract_packed(packed) == target
    assert (target / "winner").is_file()
    assert sorted(p.name for p in cache.iterdir()) == [target.name]  # ours was discarded


@pytest.mark.parametrize("leftover", ["empty", "partial"])
def test_an_incomplete_cache_dir_is_replaced(exp, packed, cache, leftover):
    target = cache_dir_for(packed, cache)
    target.mkdir(parents=True)
    if leftover == "partial":  # an extraction that stopped half-way: a truncated config, no model
        (target / "config.yaml").write_text("tasks:\n- name: as")
        (target / "stale.txt").write_text("")
    hf = HarmoniFuse.from_pretrained(packed)
    for a, b in zip(ser_decode(hf), ser_decode(HarmoniFuse.from_pretrained(exp[0]))):
        assert a == pytest.approx(b, abs=1e-6)
    assert (target / COMPLETE_MARKER).is_file() and (target / "model.pth").is_file()
    assert not (target / "stale.txt").exists()
    assert not [p for p in cache.iterdir() if p.suffix in (".tmp", ".old")]


@pytest.mark.parametrize("member", ["../escaped.txt", "tokenizer/../../escaped.txt", "/tmp/escaped.txt"])
def test_a_zip_member_outside_the_extraction_dir_is_refused(packed, cache, tmp_path, member):
    bad = rezip(packed, tmp_path / "bad.zip", {member: b"x"})
    with pytest.raises(ValueError) as e:
        HarmoniFuse.from_pretrained(bad)
    assert f"packed model '{bad}' has the member '{member}'" in str(e.value)
    assert not (cache.parent / "escaped.txt").exists() and not cache.exists()


# ----------------------------------------------------------------------------- a checkpoint of another config
def test_from_pretrained_of_a_checkpoint_from_another_config(exp, packed, make_args, tmp_path):
    d, model, _ = exp
    wide = HarmoniFuseTask.build_model(make_args(**WIDE))
    torch.save(wide.state_dict(), d / "model.pth")
    with pytest.raises(CheckpointError) as e:
        HarmoniFuse.from_pretrained(d)
    msg = str(e.value)
    assert msg.startswith(f"checkpoint '{d / 'model.pth'}' does not fit the model built from '{d / 'config.yaml'}':")
    assert f"  shape mismatch: {first_mismatch(model, wide)}" in msg
    assert "Fix: load the checkpoint with the config.yaml written next to it" in msg and "PATH:SRC:DST" in msg
    wide_zip = rezip(packed, tmp_path / "wide.zip", {"model.pth": (d / "model.pth").read_bytes()})
    with pytest.raises(CheckpointError, match=rf"^packed model '{wide_zip}': checkpoint '.*model\.pth' does not fit"):
        HarmoniFuse.from_pretrained(wide_zip)


@pytest.fixture
def train(bpemodel, toy_corpus, tmp_path):
    """``train(*options)``: one tiny training epoch of TINY_CONF into ``tmp_path/out``; returns out."""
    config = write_config(tmp_path / "train.yaml", bpemodel)
    data = [x for mode in ("train", "valid") for task, paths in toy_corpus.items() for x in task_data_args(task, paths, mode)]

    def _train(*options):
        out = tmp_path / "out"
        harmonifuse_train.main(["--config", str(config), "--output_dir", str(out), *FAST, *data, *options])
        return out

    return _train


def test_init_param_from_another_config_ends_training_with_one_message(train, make_args, tmp_path):
    own = HarmoniFuseTask.build_model(make_args())
    wide = HarmoniFuseTask.build_model(make_args(**WIDE))
    ckpt = tmp_path / "wide.pth"
    torch.save(wide.state_dict(), ckpt)
    for spec in (str(ckpt), f"{ckpt}:backbone:backbone"):
        with pytest.raises(SystemExit) as e:
            train("--init_param", spec)
        msg = str(e.value.code)
        assert msg.startswith(f"ERROR: --init_param '{spec}': checkpoint '{ckpt}' does not fit the model")
        assert f"  shape mismatch: {first_mismatch(own, wide)}" in msg
        assert f"--init_param {ckpt}:SRC:DST (e.g. {ckpt}:backbone:backbone)" in msg
        assert "train with the config the checkpoint was trained with" in msg and "--ignore_init_mismatch true" in msg
        assert "unexpected" not in msg
    with pytest.raises(SystemExit, match=r"copies no parameter .* top-level modules are \['backbone', 'decoder'"):
        train("--init_param", f"{ckpt}:encoder:backbone")
    with pytest.raises(SystemExit, match="the model has no module 'encoder'"):
        train("--init_param", f"{ckpt}:backbone:encoder")
    marker = tmp_path / "ran"
    torch.save({**own.state_dict(), "x": Payload(marker)}, tmp_path / "evil.pth")
    with pytest.raises(SystemExit, match=r"ERROR: '.*evil\.pth' is not a plain checkpoint"):
        train("--init_param", f"{tmp_path / 'evil.pth'}:backbone:backbone")
    assert not marker.exists()  # ESPnet's own (pickle) load of --init_param never ran
    assert not (tmp_path / "out" / "checkpoint.pth").exists()


def test_init_param_that_fits_is_copied_and_the_checkpoint_loads_without_pickle(train, make_args, tmp_path):
    torch.manual_seed(123)
    pre = HarmoniFuseTask.build_model(make_args())
    source = pre.state_dict()
    torch.save(source, tmp_path / "pre.pth")
    out = train("--init_param", f"{tmp_path / 'pre.pth'}:backbone:backbone", "--freeze_param", "backbone")
    trained = safe_torch_load(out / "latest.pth")
    backbone = [k for k, _ in pre.named_parameters() if k.startswith("backbone.")]  # frozen (buffers still move)
    assert backbone and all(torch.equal(trained[k], source[k]) for k in backbone)
    assert not all(torch.equal(trained[k], source[k]) for k in source)  # the rest is ESPnet's own init + training
    # ESPnet's checkpoint.pth (numpy scalars in the reporter) loads weights-only, for plots and as a model file
    assert [s["epoch"] for s in load_reporter_stats(out)] == [1]
    model, _ = HarmoniFuseTask.build_model_from_file(out / "config.yaml", out / "checkpoint.pth")
    assert all(torch.equal(v, trained[k]) for k, v in model.state_dict().items())
