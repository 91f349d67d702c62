"""Tests of the recipe shell utilities: parse_options.sh, launch.py, harmonifuse.sh."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from espnet_harmonifuse.utils import launch

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "egs2" / "TEMPLATE" / "harmonifuse1"
PARSE = TEMPLATE / "scripts" / "utils" / "parse_options.sh"


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHON"] = sys.executable
    return env


def _bash(args, cwd=None, **kw):
    return subprocess.run(["bash", *args], cwd=cwd, env=_env(), capture_output=True, text=True, **kw)


def _opt_script(tmp_path):
    s = tmp_path / "opts.sh"
    s.write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        "stage=1        # First stage.\nmodel_tag=\nuse_lm=false  # A flag.\n"
        f". {PARSE}\n"
        'echo "stage=${stage} model_tag=${model_tag} use_lm=${use_lm} rest=$*"\n'
    )
    return s


def test_parse_options_known(tmp_path):
    r = _bash([str(_opt_script(tmp_path)), "--stage", "3", "--model-tag=a b", "--use_lm", "true", "x"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "stage=3 model_tag=a b use_lm=true rest=x"


def test_parse_options_errors_and_help(tmp_path):
    s = str(_opt_script(tmp_path))
    r = _bash([s, "--nope", "1"])
    assert r.returncode != 0 and "--nope" in r.stderr
    r = _bash([s, "--use_lm", "maybe"])
    assert r.returncode != 0 and "true or false" in r.stderr
    r = _bash([s, "--stage"])
    assert r.returncode != 0 and "needs a value" in r.stderr
    r = _bash([s, "--help"])
    assert r.returncode == 0
    assert "--stage" in r.stdout and "[1]" in r.stdout and "First stage." in r.stdout
    assert "--model_tag" in r.stdout and "--use_lm" in r.stdout


def test_launch_local_job_array(tmp_path):
    log = tmp_path / "log" / "job.JOB.log"
    rc = launch.main(["--max_jobs_run", "2", "JOB=1:3", str(log),
                      "echo", "index JOB", ">", str(tmp_path / "out.JOB.txt")])
    assert rc == 0
    for i in (1, 2, 3):
        text = (tmp_path / "log" / f"job.{i}.log").read_text()
        assert text.startswith(f"# echo 'index {i}'")
        assert "# Ended (code 0)" in text
        assert (tmp_path / f"out.{i}.txt").read_text().strip() == f"index {i}"


def test_launch_local_failure(tmp_path, capsys):
    log = tmp_path / "f.JOB.log"
    rc = launch.main(["JOB=1:3", str(log), "echo hi JOB; test JOB -ne 2"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "1 / 3 failed" in err and str(tmp_path / "f.2.log") in err
    assert "# Ended (code 1)" in (tmp_path / "f.2.log").read_text()
    # the shell wrapper, single job
    r = _bash([str(TEMPLATE / "scripts" / "utils" / "launch.sh"), str(tmp_path / "one.log"), "exit", "3"])
    assert r.returncode != 0 and "one.log" in r.stderr


def test_launch_substitution_keeps_other_words():
    assert launch.substitute("a.JOB.log ${SLURM_JOB_ID} JOBS JOB", "JOB", "7") == \
        "a.7.log ${SLURM_JOB_ID} JOBS 7"


def test_launch_slurm_dry_run(tmp_path, capsys):
    conf = tmp_path / "slurm.conf"
    conf.write_text("# site options\n--partition=gpu\n#SBATCH --account=proj\n")
    log = tmp_path / "exp" / "decode.JOB.log"
    rc = launch.main(["--backend", "slurm", "--gpu", "2", "--mem", "8G", "--max_jobs_run", "2",
                      "--slurm_conf", str(conf), "--sbatch_opts=--qos=high", "--dry_run",
                      "JOB=1:4", str(log), "python", "-m", "x", "--key_file", "keys.JOB.scp"])
    assert rc == 0
    script = (tmp_path / "exp" / "q" / "decode.sh").read_text()
    assert script == capsys.readouterr().out.split("# submit with:")[0]
    for line in ("#SBATCH --array=1-4%2", "#SBATCH --gres=gpu:2", "#SBATCH --mem=8G",
                 "#SBATCH --partition=gpu", "#SBATCH --account=proj", "#SBATCH --qos=high",
                 "#SBATCH --job-name=decode", f"cd {os.getcwd()}"):
        assert line in script.splitlines()
    assert f'log="{tmp_path}/exp/decode.${{SLURM_ARRAY_TASK_ID}}.log"' in script
    assert "( python -m x --key_file keys.${SLURM_ARRAY_TASK_ID}.scp )" in script
    assert "exit $ret" in script
    # no GPU, single job: no --gres, no --array
    launch.main(["--backend", "slurm", "--dry_run", str(tmp_path / "train.log"), "true"])
    script = (tmp_path / "q" / "train.sh").read_text()
    assert "--gres" not in script and "--array" not in script


def test_harmonifuse_help_and_errors():
    r = _bash(["harmonifuse.sh", "--help"], cwd=TEMPLATE)
    assert r.returncode == 0, r.stderr
    for opt in ("--stage", "--stop_stage", "--asr_train_set", "--ser_test_sets", "--token_type",
                "--inference_model", "--ser_labels", "--local_data_opts"):
        assert opt in r.stdout
    assert "[valid.loss.best.pth]" in r.stdout
    r = _bash(["harmonifuse.sh", "--not_an_option", "1"], cwd=TEMPLATE)
    assert r.returncode != 0 and "--not_an_option" in r.stderr


DATA_SH = """#!/usr/bin/env bash
set -euo pipefail
"$PYTHON" - <<'EOF'
import os, numpy as np, soundfile as sf
os.makedirs("wavs", exist_ok=True)
for dset, lab in (("a_tr", "WORDS"), ("a_dv", "WORDS"), ("a_te", "WORDS"),
                  ("s_tr", "happy"), ("s_dv", "sad"), ("s_te", "sad")):
    os.makedirs(f"data/{dset}", exist_ok=True)
    utts = [f"{dset}_{i}" for i in range(3)]
    for i, u in enumerate(utts):
        sf.write(f"wavs/{u}.wav", np.zeros(int(8000 * (0.05 + i)), np.float32) + 0.01, 8000)
    for name, fn in (("wav.scp", lambda u: f"wavs/{u}.wav"), ("text", lambda u: lab),
                     ("utt2spk", lambda u: "spk"), ("spk2utt", None)):
        with open(f"data/{dset}/{name}", "w") as f:
            f.write(f"spk {' '.join(utts)}\\n" if fn is None else "".join(f"{u} {fn(u)}\\n" for u in utts))
EOF
"""

FAKE_INFER = """import argparse, json, os
p = argparse.ArgumentParser()
for a in ("--key_file", "--output_dir", "--task", "--model_file"):
    p.add_argument(a)
args, _ = p.parse_known_args()
os.makedirs(args.output_dir, exist_ok=True)
keys = [ln.split()[0] for ln in open(args.key_file)]
with open(f"{args.output_dir}/text", "w") as t, open(f"{args.output_dir}/score", "w") as s, \\
        open(f"{args.output_dir}/results.jsonl", "w") as r:
    for k in reversed(keys):
        t.write(f"{k} {args.task}\\n"); s.write(f"{k} -1.0\\n"); r.write(json.dumps({"key": k}) + "\\n")
"""


def test_harmonifuse_stages_in_a_recipe(tmp_path):
    rec = tmp_path / "egs2" / "toy" / "harmonifuse1"
    (rec / "local").mkdir(parents=True)
    (rec / "scripts").symlink_to(TEMPLATE / "scripts")
    (rec / "harmonifuse.sh").symlink_to(TEMPLATE / "harmonifuse.sh")
    for f in ("cmd.sh", "path.sh"):
        shutil.copy(TEMPLATE / f, rec / f)
    (rec / "local" / "data.sh").write_text(DATA_SH)
    (rec / "local" / "data.sh").chmod(0o755)
    (tmp_path / "fake_infer.py").write_text(FAKE_INFER)
    fake_py = tmp_path / "fakepy"
    fake_py.write_text(f"#!/usr/bin/env bash\nif [ \"$1 $2\" = '-m espnet2.bin.harmonifuse_inference' ]; "
                       f"then shift 2; exec {sys.executable} {tmp_path}/fake_infer.py \"$@\"; fi\n"
                       f"exec {sys.executable} \"$@\"\n")
    fake_py.chmod(0o755)
    sets = ["--asr_train_set", "a_tr", "--asr_valid_set", "a_dv", "--asr_test_sets", "a_te",
            "--ser_train_set", "s_tr", "--ser_valid_set", "s_dv", "--ser_test_sets", "s_te",
            "--nj", "1", "--inference_nj", "2", "--python", str(fake_py), "--model_tag", "m"]
    r = _bash(["./harmonifuse.sh", "--stage", "1", "--stop_stage", "3", "--min_sec", "0.5", *sets],
              cwd=rec, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    raw = rec / "dump" / "raw"
    assert sf.info(str(rec / (raw / "a_te" / "wav.scp").read_text().split()[1])).samplerate == 16000
    assert len((raw / "a_te" / "wav.scp").read_text().splitlines()) == 3  # test sets not filtered
    assert len((raw / "s_tr" / "wav.scp").read_text().splitlines()) == 2  # 0.05 s dropped
    assert (rec / "exp" / "logs" / "format_s_te.log").exists()
    times = (rec / "exp" / "stage_times.tsv").read_text().splitlines()
    assert times[0] == "stage\tname\tseconds\tmodel_tag" and [t.split("\t")[0] for t in times[1:]] == ["1", "2", "3"]

    (rec / "exp" / "m").mkdir(parents=True)
    (rec / "exp" / "m" / "valid.loss.best.pth").write_bytes(b"")
    r = _bash(["./harmonifuse.sh", "--stage", "7", "--stop_stage", "7", *sets], cwd=rec, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    dec = rec / "exp" / "m" / "decode_default_valid_loss_best"
    assert (dec / "s_te" / "text").read_text() == "".join(f"s_te_{i} ser\n" for i in range(3))
    assert len((dec / "a_te" / "results.jsonl").read_text().splitlines()) == 3
    assert (dec / "a_te" / "logdir" / "decode.2.log").exists()
    # an unknown SER label stops stage 2 with the label named
    (rec / "data" / "s_dv" / "text").write_text("s_dv_0 joyful\ns_dv_1 sad\ns_dv_2 sad\n")
    r = _bash(["./harmonifuse.sh", "--stage", "2", "--stop_stage", "2", *sets], cwd=rec, timeout=120)
    assert r.returncode != 0 and "joyful" in r.stdout + r.stderr
