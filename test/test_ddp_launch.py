"""Launching DDP training: the DataParallel guard, and the processes that stage 6 of harmonifuse.sh
starts on one node with several GPUs and on several Slurm nodes (dry runs: the launcher prints its
job; ESPnet's main is run with its process spawning recorded, under the environment srun gives)."""

import os
import shlex
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import ROOT, TINY_TASKS, task_data_args, write_config

TEMPLATE = ROOT / "egs2" / "TEMPLATE" / "harmonifuse1"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_several_gpus_in_one_process_stop_with_the_option_to_set(make_args, toy_corpus, tmp_path):
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    conf = write_config(tmp_path / "conf.yaml", make_args().bpemodel)
    cmd = ["--config", str(conf), "--output_dir", str(tmp_path / "exp"), "--ngpu", "2"]
    with pytest.raises(SystemExit) as e:
        HarmoniFuseTask.main(cmd=cmd + [x for t in ("asr", "ser") for m in ("train", "valid")
                                        for x in task_data_args(t, toy_corpus[t], m)])
    msg = str(e.value.code)
    assert "DataParallel" in msg and "Fix: add --multiprocessing_distributed true" in msg
    assert not (tmp_path / "exp").exists()  # stopped before anything was built or written


class SpawnRecorder:
    """Stands in for torch.multiprocessing's spawn context: records each worker's arguments."""

    def __init__(self):
        self.workers = []

    def Process(self, target, args, daemon):  # noqa: N802 (torch's name)
        return SimpleNamespace(start=lambda: self.workers.append(args[0]))


def spawned_workers(monkeypatch, cmd, env):
    """The workers ESPnet's main starts for ``cmd`` (training options) under ``env``."""
    from espnet2.tasks import abs_task
    from espnet2.train.distributed_utils import DistributedOption
    from espnet2.utils.build_dataclass import build_dataclass

    from espnet_harmonifuse.tasks import HarmoniFuseTask
    from espnet_harmonifuse.utils.distributed import check_not_data_parallel

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    recorder = SpawnRecorder()
    monkeypatch.setattr(torch.multiprocessing, "get_context", lambda method: recorder)
    monkeypatch.setattr(abs_task, "ProcessContext", lambda procs, files: SimpleNamespace(join=lambda: True))
    HarmoniFuseTask.main(cmd=cmd)
    for args in recorder.workers:
        check_not_data_parallel(args)
        option = build_dataclass(DistributedOption, args)
        option.init_options()  # ESPnet's own checks of the rank, world size and init method
        assert option.distributed and option.ngpu == 1
    return recorder.workers


def stage6_dry_run(tmp_path, cuda_cmd, *opts):
    """harmonifuse.sh stage 6 in a bare recipe dir, its launcher printing instead of submitting."""
    (tmp_path / "scripts").symlink_to(TEMPLATE / "scripts")
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump({"tasks": TINY_TASKS}))
    env = {**ENV, "train_cmd": "x", "decode_cmd": "x", "cuda_cmd": cuda_cmd, "PYTHON": sys.executable}
    cmd = [str(TEMPLATE / "harmonifuse.sh"), "--stage", "6", "--stop_stage", "6", "--python", sys.executable,
           "--train_config", "conf.yaml", "--asr_train_set", "a", "--asr_valid_set", "b", *opts]
    return subprocess.run(["bash", *cmd], cwd=tmp_path, env=env, text=True, capture_output=True, timeout=120)


def test_stage6_on_one_node_with_4_gpus_starts_one_ddp_process_per_gpu(tmp_path, monkeypatch):
    r = stage6_dry_run(tmp_path, "scripts/utils/launch.sh --backend local --dry_run", "--ngpu", "4")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "harmonifuse_train" in x)
    words = shlex.split(line.split("  > ")[0])
    assert words[words.index("--ngpu") + 1] == "4" and words[words.index("--multiprocessing_distributed") + 1] == "true"
    monkeypatch.chdir(tmp_path)
    workers = spawned_workers(monkeypatch, words[words.index("--config"):], {})
    assert sorted((w.dist_rank, w.local_rank) for w in workers) == [(i, i) for i in range(4)]
    assert {w.dist_world_size for w in workers} == {4}


def test_stage6_on_2_slurm_nodes_with_4_gpus_runs_8_ranks_through_espnet_launcher(tmp_path, monkeypatch):
    r = stage6_dry_run(tmp_path, "scripts/utils/slurm.pl --dry_run", "--ngpu", "4", "--num_nodes", "2")
    assert r.returncode == 0, r.stderr
    script = r.stdout.splitlines()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gres=gpu:4"):
        assert line in script
    run_line = next(x for x in script if x.startswith("( srun "))
    words = shlex.split(run_line[2 : run_line.rindex(" )")])
    assert words[:2] == ["srun", "--export=ALL"] and "espnet2.bin.harmonifuse_train" in words
    assert words[words.index("--dist_launcher") + 1] == "slurm"
    init = words[words.index("--dist_init_method") + 1]
    assert init.startswith(f"file://{tmp_path}/exp/conf/.dist_init_")  # a file on the shared exp dir
    monkeypatch.chdir(tmp_path)
    ranks = []
    for node in (0, 1):  # what srun gives the task on each node
        env = {"SLURM_PROCID": str(node), "SLURM_NODEID": str(node), "SLURM_LOCALID": "0", "SLURM_NTASKS": "2",
               "SLURM_STEP_NUM_NODES": "2", "SLURM_STEP_NODELIST": "gpu[01-02]"}
        workers = spawned_workers(monkeypatch, words[words.index("--config"):], env)
        assert sorted(w.local_rank for w in workers) == [0, 1, 2, 3]
        assert {w.dist_world_size for w in workers} == {8} and {w.dist_init_method for w in workers} == {init}
        ranks += [w.dist_rank for w in workers]
    assert sorted(ranks) == list(range(8))


def test_several_nodes_need_the_slurm_backend(tmp_path):
    r = stage6_dry_run(tmp_path, "scripts/utils/launch.sh --backend local --dry_run", "--num_nodes", "2")
    assert r.returncode != 0 and "--num_nodes 2 needs the Slurm backend: run with cmd_backend=slurm" in r.stderr
