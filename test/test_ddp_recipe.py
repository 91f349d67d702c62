"""Stage 6 of harmonifuse.sh with ``--train_launcher torchrun``: the command it starts (dry runs, on
GPUs and on CPUs), and the mini_emo recipe trained by 2 gloo processes, then decoded and scored."""

import json
import os
import shlex
import subprocess
import sys

import pytest
from conftest import EMOTIONS
from test_ddp_launch import TEMPLATE, stage6_dry_run
from test_recipe_e2e import kaldi_lines, md_tables, row_of, run_recipe

LOCAL = "scripts/utils/launch.sh --backend local --dry_run"


def launched(r) -> list:
    """The words of the training command that the dry run of stage 6 printed."""
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if "harmonifuse_train" in x)
    return shlex.split(line.split("  > ")[0])


def option(words, name: str) -> str:
    return words[words.index(name) + 1]


@pytest.mark.parametrize("opts, procs, per_process", [
    (["--ngpu", "4"], "4", ["--ngpu", "1"]),  # one process per GPU
    (["--ngpu", "0", "--nproc_per_node", "3"], "3", ["--ngpu", "0", "--dist_backend", "gloo"]),
])
def test_stage6_with_torchrun_starts_the_processes_on_this_node(tmp_path, opts, procs, per_process):
    words = launched(stage6_dry_run(tmp_path, LOCAL, "--train_launcher", "torchrun", *opts))
    assert words[:6] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", procs]
    assert words[6:8] == ["-m", "espnet2.bin.harmonifuse_train"] and option(words, "--resume") == "true"
    assert option(words, "--ngpu") == per_process[1] and "--multiprocessing_distributed" not in words
    assert [w for w in words if w in ("--dist_backend", "gloo")] == per_process[2:]


def test_help_lists_the_launcher_options():
    r = subprocess.run(["bash", str(TEMPLATE / "harmonifuse.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = {x.split()[0]: x for x in r.stdout.splitlines() if x.startswith("  --")}
    assert "[espnet]" in lines["--train_launcher"] and "torchrun" in lines["--train_launcher"]
    assert "[2]" in lines["--nproc_per_node"] and "its own" in lines["--inference_ngpu"]


@pytest.mark.parametrize("opts, error", [
    (["--train_launcher", "mpirun"], "--train_launcher must be espnet or torchrun, not 'mpirun'"),
    (["--train_launcher", "torchrun", "--num_nodes", "2"], "--num_nodes 2 needs --train_launcher espnet"),
])
def test_stage6_launcher_errors_name_the_fix(tmp_path, opts, error):
    r = stage6_dry_run(tmp_path, "scripts/utils/slurm.pl --dry_run", *opts)
    assert r.returncode != 0 and error in r.stderr


@pytest.mark.slow
def test_mini_emo_trained_by_two_torchrun_processes_on_cpu_decodes_and_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # one thread per process
    recipe, _, _ = run_recipe(tmp_path, "--stop_stage", "5")  # data, tokenizer and shapes as the e2e test
    batches = tmp_path / "batches"
    cmd = ["--stage", "6", "--stop_stage", "8", "--train_config", "conf/tuning/train_smoke.yaml",
           "--pretrain_config", "conf/tuning/pretrain_smoke.yaml", "--nbpe", "100", "--inference_nj", "2",
           "--inference_batch_size", "4", "--train_launcher", "torchrun", "--nproc_per_node", "2",
           "--train_args", f"--batch_log_dir {batches}"]
    proc = subprocess.run(["./run.sh", *cmd], cwd=recipe, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    host = os.uname()[1].split(".")[0]
    for model in ("pretrain_smoke", "train_smoke"):
        log = (recipe / "exp" / model / "train.log").read_text()
        assert "torch.distributed.run --standalone --nproc_per_node 2" in log.splitlines()[0]
        assert f"[{host}:0/2]" in log and "The training was finished at" in log, log[-2000:]
    # in both trainings the two ranks took the same steps, each with its own half of the batch
    ranks = [[json.loads(x) for x in (batches / f"train.rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and {b["task"] for b in ranks[0]} == {"asr", "ser"}
    for b0, b1 in zip(*ranks):
        assert (b0["epoch"], b0["task"]) == (b1["epoch"], b1["task"])
        assert b0["keys"] and b1["keys"] and not set(b0["keys"]) & set(b1["keys"])
    # decoded on 2 jobs and scored: every test utterance once, in RESULTS.md
    model_dir = recipe / "exp" / "train_smoke"
    tables = md_tables((model_dir / "RESULTS.md").read_text())
    for task in ("asr", "ser"):
        refs = [u for u, _ in kaldi_lines(recipe / f"dump/raw/{task}_test/text")]
        hyp = next(model_dir.glob(f"decode*/{task}_test/text"))
        assert [u for u, _ in kaldi_lines(hyp)] == refs
        assert len(list(hyp.parent.glob("logdir/decode.*.log"))) == 2
    assert int(row_of(tables["WER"], "asr_test")[1]) == len(kaldi_lines(recipe / "dump/raw/asr_test/text"))
    ser = json.loads(next(model_dir.glob("decode*/ser_test/score_ser/scores.json")).read_text())
    assert int(row_of(tables["SER"], "ser_test")[1]) == ser["num_utts"] == 12 and ser["labels"] == EMOTIONS
