"""Resume under DDP: a 2-process gloo training (torchrun, ``--resume true``) killed in the middle of
epoch 2 and started again with the same command ends with the weights of an uninterrupted run, and
only rank 0 writes the checkpoint and the model files.

Run as a script (``torchrun ... test/test_ddp_resume.py <training options>``), this file runs
``python -m espnet2.bin.harmonifuse_train`` with the same options, after two hooks that the
environment turns on: ``KILL_RANK`` / ``KILL_AT_STEP`` make that rank SIGKILL itself as its N-th
training batch starts (torchrun then stops the other rank), and ``SAVE_LOG_DIR`` records the name of
every file each rank writes with ``torch.save`` to ``SAVE_LOG_DIR/saves.rank<R>.txt``.
"""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_TASKS
from test_ddp import ENV, finish, read_batches, torchrun
from test_resume import (EPOCHS, MID_EPOCH_2, assert_same_result, corpus, kill_at_step,  # noqa: F401 (a fixture)
                         load, train_cmd, write_conf)

KILLED_RANK = 1


def launch(script_args, env=None) -> subprocess.Popen:
    return subprocess.Popen(torchrun(*script_args), env={**ENV, **(env or {})}, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_ddp_killed_mid_epoch_then_rerun_ends_with_the_same_weights_written_by_rank_0_only(corpus, bpemodel,
                                                                                           tmp_path):
    conf = write_conf(tmp_path / "conf.yaml", "train_smoke", bpemodel, TINY_TASKS, {"cache_backbone_states": True})

    def cmd(out: Path):  # batches of 4: 2 utterances per rank
        return train_cmd(conf, out, corpus, ["asr", "ser"], "--dist_backend", "gloo", "--batch_size", "4",
                         "--batch_log_dir", str(out / "batches"))

    straight, out, saves = tmp_path / "straight", tmp_path / "exp", tmp_path / "saves"
    uninterrupted = launch(["-m", "espnet2.bin.harmonifuse_train", *cmd(straight)])
    hooks = {"SAVE_LOG_DIR": str(saves)}
    killed = launch([__file__, *cmd(out)], {**hooks, "KILL_RANK": str(KILLED_RANK), "KILL_AT_STEP": str(MID_EPOCH_2)})
    _, err = killed.communicate(timeout=300)
    assert killed.returncode != 0 and "(SIGKILL)" in err, "the run was not killed:\n" + err[-3000:]
    assert load(out / "checkpoint.pth")["reporter"]["epoch"] == 1 and not (out / "2epoch.pth").exists()
    log = finish(launch([__file__, *cmd(out)], hooks), "the rerun")
    finish(uninterrupted, "the uninterrupted run")
    assert f"The training was resumed using {out / 'checkpoint.pth'}" in log and f"2/{EPOCHS}epoch started" in log
    assert_same_result(straight, out)
    # both ranks trained epochs 1-2 in the killed run and 2-3 in the rerun; only rank 0 wrote files
    for rank in (0, 1):
        epochs = list(read_batches(out / "batches" / f"train.rank{rank}.jsonl"))
        assert epochs == [1, 2, 3], (rank, epochs)
    assert not (saves / f"saves.rank{KILLED_RANK}.txt").exists()
    written = (saves / "saves.rank0.txt").read_text().split()
    assert {".checkpoint.pth.tmp", ".1epoch.pth.tmp", f".{EPOCHS}epoch.pth.tmp"} <= set(written), written
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))  # every file renamed into place


def _record_saves(log_dir: Path, rank: int):
    """Append the name of every file ``torch.save`` writes to ``log_dir/saves.rank<rank>.txt``."""
    save = torch.save

    def recording(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) or hasattr(f, "name"):
            log_dir.mkdir(parents=True, exist_ok=True)
            with open(log_dir / f"saves.rank{rank}.txt", "a") as log:
                log.write(Path(f if isinstance(f, (str, os.PathLike)) else f.name).name + "\n")
        return save(obj, f, *args, **kwargs)

    torch.save = recording


if __name__ == "__main__":
    rank = int(os.environ["RANK"])
    if os.environ.get("SAVE_LOG_DIR"):
        _record_saves(Path(os.environ["SAVE_LOG_DIR"]), rank)
    if os.environ.get("KILL_RANK") == str(rank):
        kill_at_step(int(os.environ["KILL_AT_STEP"]))
    sys.argv = ["espnet2.bin.harmonifuse_train", *sys.argv[1:]]
    runpy.run_module("espnet2.bin.harmonifuse_train", run_name="__main__", alter_sys=True)
