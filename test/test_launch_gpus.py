"""Jobs that ask for GPUs get their own: the local backend sets CUDA_VISIBLE_DEVICES per job, round-robin
over the GPUs it sees (a fake nvidia-smi, or a preset CUDA_VISIBLE_DEVICES); slurm asks for them per
array job. The jobs run through cmd.sh's decode_cmd, as stage 7 of harmonifuse.sh runs them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from espnet_harmonifuse.utils import launch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs2" / "mini_emo" / "harmonifuse1"


@pytest.fixture
def fake_nvidia_smi(tmp_path):
    """``fake_nvidia_smi(n)`` -> PATH with an nvidia-smi whose ``-L`` lists ``n`` GPUs (one with MIG)."""

    def _make(n: int) -> str:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        lines = [f"GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i:04d})" for i in range(n)]
        if n:
            lines.append("  MIG 3g.40gb     Device  0: (UUID: MIG-0000)")
        script = bin_dir / "nvidia-smi"
        script.write_text("#!/bin/sh\n[ \"$1\" = -L ] || exit 9\n" + "".join(f"echo '{x}'\n" for x in lines))
        script.chmod(0o755)
        return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"

    return _make


def decode_cmd(tmp_path, path: str, cuda_visible_devices, *opts: str) -> subprocess.CompletedProcess:
    """``${decode_cmd} <opts> JOB=1:N log.JOB.txt`` with jobs that print their CUDA_VISIBLE_DEVICES."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "cmd_backend")}
    env.update(PATH=path, PYTHON=sys.executable)
    if cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    job = 'echo "devices=${CUDA_VISIBLE_DEVICES:-unset}"; sleep 0.3'
    script = f'. ./cmd.sh && ${{decode_cmd}} {" ".join(opts)} {tmp_path}/log.JOB.txt \'{job}\''
    return subprocess.run(["bash", "-c", script], cwd=RECIPE, env=env, capture_output=True, text=True, timeout=120)


def devices_of_jobs(tmp_path, n: int):
    out = []
    for i in range(1, n + 1):
        lines = (tmp_path / f"log.{i}.txt").read_text().splitlines()
        (printed,) = [x[len("devices="):] for x in lines if x.startswith("devices=")]
        assert f"CUDA_VISIBLE_DEVICES={printed})" in lines[1]  # the log's header names them too
        out.append(printed)
    return out


def test_four_decoding_jobs_on_four_gpus_get_one_each(tmp_path, fake_nvidia_smi):
    r = decode_cmd(tmp_path, fake_nvidia_smi(4), None, "--gpu 1", "JOB=1:4")
    assert r.returncode == 0, r.stderr
    assert devices_of_jobs(tmp_path, 4) == ["0", "1", "2", "3"]


def test_jobs_go_round_robin_over_a_preset_cuda_visible_devices(tmp_path, fake_nvidia_smi):
    r = decode_cmd(tmp_path, fake_nvidia_smi(8), "3,5,6", "--gpu 1", "JOB=1:5")
    assert r.returncode == 0, r.stderr
    assert devices_of_jobs(tmp_path, 5) == ["3", "5", "6", "3", "5"]  # 5 jobs at once on 3 GPUs


def test_jobs_of_two_gpus_and_jobs_limited_by_max_jobs_run(tmp_path, fake_nvidia_smi):
    r = decode_cmd(tmp_path, fake_nvidia_smi(4), None, "--gpu 2", "JOB=1:2")
    assert r.returncode == 0, r.stderr
    assert devices_of_jobs(tmp_path, 2) == ["0,1", "2,3"]
    # 2 at once on 4 GPUs: a job that starts when another ends takes a GPU no running job holds
    r = decode_cmd(tmp_path, fake_nvidia_smi(4), None, "--gpu 1", "--max_jobs_run 2", "JOB=1:6")
    assert r.returncode == 0, r.stderr
    jobs = devices_of_jobs(tmp_path, 6)
    assert jobs[:2] == ["0", "1"] and set(jobs) <= {"0", "1"}


def test_jobs_without_gpus_keep_the_environment(tmp_path, fake_nvidia_smi):
    r = decode_cmd(tmp_path, fake_nvidia_smi(4), None, "--gpu 0", "JOB=1:2")
    assert r.returncode == 0, r.stderr
    logs = [(tmp_path / f"log.{i}.txt").read_text() for i in (1, 2)]
    assert all("devices=unset" in x and "CUDA_VISIBLE_DEVICES" not in x.splitlines()[1] for x in logs)


@pytest.mark.parametrize("gpus, preset, seen", [(1, None, "(nvidia-smi -L)"), (0, "", "(CUDA_VISIBLE_DEVICES='')")])
def test_more_gpus_per_job_than_visible_stops_with_the_fix(tmp_path, fake_nvidia_smi, gpus, preset, seen):
    r = decode_cmd(tmp_path, fake_nvidia_smi(gpus), preset, "--gpu 2", "JOB=1:2")
    assert r.returncode != 0 and not list(tmp_path.glob("log.*.txt"))
    assert f"each job asks for 2 GPU(s), but {gpus} visible here {seen}" in r.stderr
    assert "Fix: ask for fewer (harmonifuse.sh --ngpu / --inference_ngpu)" in r.stderr


def test_without_nvidia_smi_no_gpu_is_visible(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi here
    devices, seen = launch.visible_gpus()
    assert devices == [] and seen.startswith("nvidia-smi -L failed")
    assert launch.gpu_pool(1, dry_run=True) is None  # a dry run prints the jobs without devices


def test_the_dry_run_shows_the_devices_each_job_gets(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    assert launch.main(["--gpu", "1", "--dry_run", "JOB=1:4", str(tmp_path / "d.JOB.log"), "decode", "JOB"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"decode {i}  > {tmp_path}/d.{i}.log  (CUDA_VISIBLE_DEVICES={d})"
                     for i, d in zip(range(1, 5), "0120")]


def test_slurm_asks_for_the_gpus_of_each_array_job(tmp_path, capsys):
    assert launch.main(["--backend", "slurm", "--gpu", "1", "--dry_run", "JOB=1:4", str(tmp_path / "d.JOB.log"),
                        "decode", "JOB"]) == 0
    script = capsys.readouterr().out.splitlines()
    assert "#SBATCH --array=1-4" in script and "#SBATCH --gres=gpu:1" in script  # per array task
    assert not any("CUDA_VISIBLE_DEVICES" in line for line in script)  # Slurm sets it in each job
