"""Packaging: the wheel holds the plugin alone, with the espnet2.bin alias and the console scripts."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    src = out / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "egs2", "test", "*.egg-info", "build",
                                                             "__pycache__", "exp", "dump", "data", "bench"))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (whl,) = out.glob("espnet_harmonifuse-*.whl")
    return zipfile.ZipFile(whl)


def test_wheel_ships_only_the_plugin(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {t for t in tops if t.endswith(".dist-info")}
    assert tops - dist_info == {"espnet_harmonifuse", "espnet_harmonifuse-espnet2-alias.pth"}
    assert not any("/benchmark" in name for name in wheel.namelist())
    pth = wheel.read("espnet_harmonifuse-espnet2-alias.pth").decode()
    assert pth.strip() == "import espnet_harmonifuse._espnet2_alias"


def test_wheel_declares_the_console_scripts(wheel):
    (entry,) = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
    text = wheel.read(entry).decode()
    assert "harmonifuse-train = espnet_harmonifuse.bin.harmonifuse_train:main" in text
    assert "harmonifuse-infer = espnet_harmonifuse.bin.harmonifuse_inference:main" in text


def test_console_scripts_run_the_entry_points():
    exe = shutil.which("harmonifuse-train")
    if exe is None:
        pytest.skip("console scripts not installed (run `pip install -e .`)")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([exe, "--print_config", "--fusion", "static"], capture_output=True, text=True,
                          cwd="/", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    conf = yaml.safe_load(proc.stdout)
    assert conf["fusion"] == "static" and conf["backbone"] == "hf_ssl"
    proc = subprocess.run([shutil.which("harmonifuse-infer"), "--help"], capture_output=True, text=True,
                          cwd="/", env=env, timeout=300)
    assert proc.returncode == 0 and "--model_dir" in proc.stdout
