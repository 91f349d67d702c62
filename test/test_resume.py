"""Resume: a training killed at any point and restarted ends with the weights of an uninterrupted one.

Each training runs ``espnet_harmonifuse.bin.harmonifuse_train.main`` (what ``python -m
espnet2.bin.harmonifuse_train`` runs) with the options stage 6 of harmonifuse.sh passes, ``--resume
true`` included, on a tiny corpus, in a forked process (no second import of ESPnet) that SIGKILLs
itself at a chosen point: in the middle of an epoch, halfway through writing the checkpoint, or
between the checkpoint and the epoch's model file. The same command run again must end with the
same weights, bit for bit, as the uninterrupted run.
"""

import io
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import traceback
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ASR_TEXTS, EMOTIONS, RECIPE, TINY_TASKS, task_data_args, toy_wave, write_task_dir

from espnet_harmonifuse.trainer import AtomicSaver, load_resumable
from espnet_harmonifuse.utils.checkpoint import CheckpointError, safe_torch_load

EPOCHS = 3
# 4 sorted batches of 2 per task and 3 per task in an epoch: ESPnet's iterator wraps around and
# reshuffles in the middle of epoch 2 (a resume must find that position again)
N_UTTS, ITERS_PER_EPOCH = 8, 6
MID_EPOCH_2 = ITERS_PER_EPOCH + 3  # the training step at which the run is killed: epoch 2, batch 3

CONFIGS = {  # name: (recipe config, tasks, overrides)
    "pretrain_ctc": ("pretrain_smoke", [TINY_TASKS[0]], {}),
    "train_cached": ("train_smoke", TINY_TASKS, {"cache_backbone_states": True}),
    # a cache too small for the corpus: the utterances it stores depend on the order they came in
    "train_cache_full": ("train_smoke", TINY_TASKS, {"cache_backbone_states": True, "backbone_cache_gb": 2e-5}),
    "train_uncached": ("train_smoke", TINY_TASKS, {"cache_backbone_states": False}),
}


# ----------------------------------------------------------------------------- running a training
def write_conf(path: Path, config: str, bpemodel: str, tasks, model_conf) -> Path:
    conf = yaml.safe_load((RECIPE / "conf" / "tuning" / f"{config}.yaml").read_text())
    conf.update(tasks=tasks, bpemodel=bpemodel, max_epoch=EPOCHS, batch_size=2, num_iters_per_epoch=ITERS_PER_EPOCH,
                keep_nbest_models=2, num_workers=0, use_matplotlib=False, use_tensorboard=False, seed=3)
    conf["model_conf"] = {**conf.get("model_conf", {}), **model_conf}
    conf["decoder_conf"]["config"]["attention_dropout"] = 0.2  # as conf/train.yaml: dropout draws random numbers
    path.write_text(yaml.safe_dump(conf))
    return path


def train_cmd(config: Path, out: Path, corpus, tasks, *extra: str):
    """The options harmonifuse.sh's train_model passes (with --ngpu 0 and the tokenizer)."""
    cmd = ["--config", str(config), "--output_dir", str(out), "--ngpu", "0", "--resume", "true"]
    for t in tasks:
        cmd += task_data_args(t, corpus[t], "train") + task_data_args(t, corpus[t], "valid")
    return cmd + list(extra)


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at_step(step: int):
    """SIGKILL the process as its ``step``-th training batch starts."""
    from espnet_harmonifuse.espnet_model import HarmoniFuseModel

    forward, seen = HarmoniFuseModel.forward, [0]

    def counting(self, *args, **kwargs):
        seen[0] += self.training
        if seen[0] == step and self.training:
            _die()
        return forward(self, *args, **kwargs)

    HarmoniFuseModel.forward = counting


def kill_when_saving(name: str, nth: int, fraction: float):
    """SIGKILL the process after writing ``fraction`` of the ``nth`` file named ``name`` it saves."""
    save, seen = torch.save, [0]

    def cut(obj, f, *args, **kwargs):
        to_path = isinstance(f, (str, os.PathLike))
        target = Path(f if to_path else f.name)
        seen[0] += target.name.strip(".").removesuffix(".tmp") == name
        if seen[0] != nth:
            return save(obj, f, *args, **kwargs)
        data = io.BytesIO()
        save(obj, data, *args, **kwargs)
        with open(target, "wb") if to_path else f as out:
            out.write(data.getvalue()[: int(fraction * len(data.getvalue()))])
            out.flush()
        _die()

    torch.save = cut


def _child(cmd, log_path: Path, hook):
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        logging.root.handlers.clear()  # ESPnet's main configures logging (to the log file)
        code = 0
        try:
            if hook is not None:
                hook()
            from espnet_harmonifuse.bin import harmonifuse_train

            harmonifuse_train.main(cmd)
        except SystemExit as e:
            code = 0 if e.code in (None, 0) else 1
            print(e.code, file=log)
        except BaseException:  # noqa: BLE001 - the parent reads the traceback from the log
            traceback.print_exc(file=log)
            code = 1
        log.flush()
    os._exit(code)


def train(cmd, log_path: Path, hook=None, killed: bool = False) -> str:
    """Run one training in a forked process; returns its log."""
    proc = multiprocessing.get_context("fork").Process(target=_child, args=(cmd, log_path, hook))
    proc.start()
    proc.join(timeout=300)
    if proc.is_alive():
        proc.kill()
        proc.join()
    log = log_path.read_text()
    want = -signal.SIGKILL if killed else 0
    assert proc.exitcode == want, f"exit code {proc.exitcode}, expected {want}:\n{log[-4000:]}"
    return log


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_data")
    seconds = [0.3 + 0.07 * (i % 5) for i in range(N_UTTS)]
    asr = [(f"asr{i}", toy_wave(i, seconds[i]), ASR_TEXTS[i % len(ASR_TEXTS)]) for i in range(N_UTTS)]
    ser = [(f"ser{i}", toy_wave(100 + i, seconds[-1 - i]), EMOTIONS[i % len(EMOTIONS)]) for i in range(N_UTTS)]
    return {"asr": write_task_dir(root, "asr", asr), "ser": write_task_dir(root, "ser", ser)}


@pytest.fixture(scope="module")
def setup(corpus, bpemodel, tmp_path_factory):
    """``setup(name)`` -> (the training command for ``out``, the uninterrupted run's exp dir), per config."""
    root = tmp_path_factory.mktemp("resume")
    straight = {}

    def _get(name: str):
        config, tasks, model_conf = CONFIGS[name]
        conf = write_conf(root / f"{name}.yaml", config, bpemodel, tasks, model_conf)

        def cmd(out: Path, *extra: str):
            return train_cmd(conf, out, corpus, [t["name"] for t in tasks], *extra)

        if name not in straight:
            straight[name] = root / f"{name}_straight"
            train(cmd(straight[name]), root / f"{name}_straight.log")
        return cmd, straight[name]

    return _get


def load(path: Path) -> dict:
    return safe_torch_load(path)  # weights_only, with the numpy scalars of ESPnet's reporter allowed


def assert_same_weights(a: Path, b: Path):
    sa, sb = load(a), load(b)
    assert sa.keys() == sb.keys()
    diff = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not diff, f"{len(diff)}/{len(sa)} tensors differ between {a} and {b}, e.g. {diff[:4]}"


def assert_same_result(straight: Path, resumed: Path):
    """The last epoch's weights and every averaged / best model are the uninterrupted run's."""
    finals = sorted(p.name for p in straight.glob("valid.*.pth")) + [f"{EPOCHS}epoch.pth"]
    assert any(".ave" in f for f in finals) and any(".best" in f for f in finals)
    for name in finals:
        assert (resumed / name).resolve().name == (straight / name).resolve().name, name  # same epoch linked
        assert_same_weights(straight / name, resumed / name)
    assert load(resumed / "checkpoint.pth")["reporter"]["epoch"] == EPOCHS


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", list(CONFIGS))
def test_killed_mid_epoch_then_rerun_ends_with_the_same_weights(name, setup, tmp_path):
    cmd, straight = setup(name)
    out = tmp_path / "exp"
    train(cmd(out), tmp_path / "killed.log", lambda: kill_at_step(MID_EPOCH_2), killed=True)
    assert load(out / "checkpoint.pth")["reporter"]["epoch"] == 1 and not (out / "2epoch.pth").exists()
    log = train(cmd(out), tmp_path / "rerun.log")
    assert "resumed using" in log and "2/3epoch started" in log
    assert_same_result(straight, out)


@pytest.mark.parametrize("name,nth,fraction", [("checkpoint.pth", 2, 0.5), ("2epoch.pth", 1, 0.0)])
def test_killed_while_writing_files_then_rerun_ends_with_the_same_weights(name, nth, fraction, setup, tmp_path):
    """Halfway through writing epoch 2's checkpoint, or before its model file: epoch 1's checkpoint
    stays whole and in place, and the rerun trains epoch 2 again."""
    cmd, straight = setup("train_cached")
    out = tmp_path / "exp"
    train(cmd(out), tmp_path / "killed.log", lambda: kill_when_saving(name, nth, fraction), killed=True)
    assert load(out / "checkpoint.pth")["reporter"]["epoch"] == 1
    log = train(cmd(out), tmp_path / "rerun.log")
    assert "2/3epoch started" in log and "cannot read" not in log
    assert_same_result(straight, out)


def test_truncated_checkpoint_falls_back_on_the_previous_one(setup, tmp_path):
    cmd, straight = setup("train_cached")
    out = tmp_path / "exp"
    shutil.copytree(straight, out, symlinks=True)
    assert load(out / "checkpoint.prev.pth")["reporter"]["epoch"] == EPOCHS - 1
    data = (out / "checkpoint.pth").read_bytes()
    (out / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    log = train(cmd(out, "--max_epoch", str(EPOCHS + 1)), tmp_path / "rerun.log")
    warning = next(line for line in log.splitlines() if "cannot read" in line)
    assert str(out / "checkpoint.pth") in warning and str(out / "checkpoint.prev.pth") in warning
    assert f"epoch {EPOCHS} is trained again" in warning
    assert load(out / "checkpoint.pth")["reporter"]["epoch"] == EPOCHS + 1
    retrained = load(out / "checkpoint.prev.pth")
    assert retrained["reporter"]["epoch"] == EPOCHS
    want = load(straight / f"{EPOCHS}epoch.pth")
    assert all(torch.equal(want[k], retrained["model"][k]) for k in want)


def test_unreadable_checkpoint_without_a_previous_one_stops_with_the_fix(tmp_path):
    (tmp_path / "checkpoint.pth").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(CheckpointError, match="no '.*checkpoint.prev.pth'") as e:
        load_resumable(tmp_path / "checkpoint.pth")
    assert f"Fix: remove '{tmp_path / 'checkpoint.pth'}'" in str(e.value)
    torch.save({"x": torch.zeros(1)}, tmp_path / "checkpoint.prev.pth")
    (tmp_path / "checkpoint.prev.pth").write_bytes((tmp_path / "checkpoint.prev.pth").read_bytes()[:40])
    with pytest.raises(CheckpointError, match="previous one cannot be read either"):
        load_resumable(tmp_path / "checkpoint.pth")


def test_a_failed_save_leaves_the_old_file_and_the_checkpoint_waits_for_commit(tmp_path):
    saver = AtomicSaver()
    target = tmp_path / "3epoch.pth"
    saver({"w": torch.ones(2)}, target)
    with pytest.raises(Exception):
        saver({"w": lambda: None}, target)  # fails while writing
    assert torch.equal(load(target)["w"], torch.ones(2))
    ckpt = tmp_path / "checkpoint.pth"
    saver({"epoch": torch.tensor(1)}, ckpt)
    assert not ckpt.exists()  # held back until the epoch's other files are written
    saver.commit()
    saver({"epoch": torch.tensor(2)}, ckpt)
    assert int(load(ckpt)["epoch"]) == 1
    saver.commit()
    assert int(load(ckpt)["epoch"]) == 2 and int(load(tmp_path / "checkpoint.prev.pth")["epoch"]) == 1
    buffer = io.BytesIO()
    saver({"w": torch.ones(1)}, buffer)  # a file object: written as torch.save writes it
    assert torch.equal(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)["w"], torch.ones(1))
