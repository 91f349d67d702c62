"""Run a command, or an array of jobs, with a log file each (Kaldi run.pl / slurm.pl semantics).

    python -m espnet_harmonifuse.utils.launch [--backend local|slurm] [--gpu N] [--mem X]
        [--num_threads N] [--num_nodes M] [--max_jobs_run K] [--slurm_conf FILE] [--sbatch_opts "..."]...
        [--dry_run] [JOB=1:N] LOGFILE COMMAND...

``JOB`` (or any NAME given as NAME=a:b) in LOGFILE and COMMAND is replaced by the job index.
local: runs up to K jobs at once here. slurm: writes one sbatch array script next to the logs
(``<logdir>/q/<name>.sh``), submits it with ``sbatch --wait`` and waits. Each log starts with the
command and ends with its exit status and time. Exit status is non-zero when any job failed, and
the failed logs are named (with the tail of the first one).

Jobs that ask for GPUs (``--gpu N``) each get their own: slurm gives every job of the array its
``--gres=gpu:N``; the local backend sets ``CUDA_VISIBLE_DEVICES`` for each job to the N least busy of
the GPUs it sees (those in its own ``CUDA_VISIBLE_DEVICES`` when that is set, else those that
``nvidia-smi -L`` lists), so the jobs go round-robin over the GPUs and share one only when there are
more jobs at once than GPUs (``--max_jobs_run`` limits how many run at once).

``--num_nodes M`` (slurm only) allocates M nodes with one task each (``--gpu`` GPUs per node), as
Kaldi's slurm.pl does for ESPnet's distributed launcher (``python -m espnet2.bin.launch``, which
gives a COMMAND starting with ``srun``: one training process per node, spawning one per GPU).
``scripts/utils/slurm.pl`` is this launcher with ``--backend slurm``, under the name by which ESPnet's
launcher recognises a Slurm ``--cmd``.
"""
import datetime
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

USAGE = __doc__
VALUE_OPTS = {"backend": "local", "gpu": "0", "mem": "", "num_threads": "1", "num_nodes": "1", "max_jobs_run": "0",
              "slurm_conf": "", "sbatch_opts": "", "time": ""}
FLAG_OPTS = {"dry_run"}


def parse_args(argv: Sequence[str]) -> Tuple[Dict[str, str], Optional[Tuple[str, int, int]], str, List[str]]:
    """Returns (options, (jobname, start, end) or None, logfile, command words)."""
    opts = dict(VALUE_OPTS, dry_run="false")
    argv = list(argv)
    while argv and argv[0].startswith("--"):
        arg = argv.pop(0)
        if arg == "--":
            break
        if arg in ("--help", "-h"):
            print(USAGE)
            sys.exit(0)
        name, eq, value = arg[2:].partition("=")
        name = name.replace("-", "_")
        if name in FLAG_OPTS:
            opts[name] = value if eq else "true"
        elif name in VALUE_OPTS:
            if not eq:
                if not argv:
                    raise SystemExit(f"launch: option --{name} needs a value")
                value = argv.pop(0)
            if name == "sbatch_opts" and opts[name]:  # repeatable: options accumulate
                value = f"{opts[name]} {value}"
            opts[name] = value
        else:
            raise SystemExit(f"launch: unknown option --{name}\n{USAGE}")
    job = None
    if argv and re.fullmatch(r"[A-Za-z_]\w*=\d+:\d+", argv[0]):
        name, rng = argv.pop(0).split("=")
        start, end = (int(x) for x in rng.split(":"))
        if end < start:
            raise SystemExit(f"launch: empty job range {name}={rng}")
        job = (name, start, end)
        if len(argv) > 1 and end > start and not re.search(rf"(?<![A-Za-z0-9]){name}", argv[0]):
            raise SystemExit(f"launch: the log file '{argv[0]}' must contain {name} for a job array")
    if len(argv) < 2:
        raise SystemExit(f"launch: need LOGFILE and COMMAND\n{USAGE}")
    if opts["backend"] not in ("local", "slurm"):
        raise SystemExit(f"launch: unknown backend '{opts['backend']}' (local|slurm)")
    if not opts["num_nodes"].isdigit() or int(opts["num_nodes"]) < 1:
        raise SystemExit(f"launch: --num_nodes must be a positive integer, not '{opts['num_nodes']}'")
    if int(opts["num_nodes"]) > 1 and (opts["backend"] != "slurm" or job):
        raise SystemExit(f"launch: --num_nodes {opts['num_nodes']} needs --backend slurm (cmd_backend=slurm) "
                         "and a single job (the local backend runs on this machine only)")
    return opts, job, argv[0], argv[1:]


def join_command(words: Sequence[str]) -> str:
    """Like run.pl: words without whitespace go in as they are (so '|' still pipes), others quoted."""
    if len(words) == 1:
        return words[0]
    return " ".join(w if w and not re.search(r"\s", w) else shlex.quote(w) for w in words)


def substitute(s: str, name: str, value: str) -> str:
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9_])", value, s)


def _now() -> str:
    return datetime.datetime.now().strftime("%a %b %d %H:%M:%S %Y")


def visible_gpus() -> Tuple[List[str], str]:
    """The GPUs this launcher may hand out (its ``CUDA_VISIBLE_DEVICES`` when set, else those that
    ``nvidia-smi -L`` lists), and where they were found."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        found = os.environ["CUDA_VISIBLE_DEVICES"]
        return [d.strip() for d in found.split(",") if d.strip() not in ("", "-1")], f"CUDA_VISIBLE_DEVICES={found!r}"
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return [], f"nvidia-smi -L failed: {e}"
    return [str(i) for i in range(sum(line.startswith("GPU ") for line in listed.splitlines()))], "nvidia-smi -L"


class GpuPool:
    """Hands each job the ``n`` GPUs with the fewest running jobs (the lowest index first): round-robin."""

    def __init__(self, devices: Sequence[str]):
        self.devices = list(devices)
        self.busy = [0] * len(self.devices)
        self._lock = threading.Lock()

    def take(self, n: int) -> List[int]:
        with self._lock:
            picked = sorted(sorted(range(len(self.devices)), key=lambda i: (self.busy[i], i))[:n])
            for i in picked:
                self.busy[i] += 1
            return picked

    def names(self, picked: Sequence[int]) -> str:
        return ",".join(self.devices[i] for i in picked)

    @contextmanager
    def hold(self, n: int):
        """``CUDA_VISIBLE_DEVICES`` for one job of ``n`` GPUs, while the job runs."""
        picked = self.take(n)
        try:
            yield self.names(picked)
        finally:
            with self._lock:
                for i in picked:
                    self.busy[i] -= 1


def gpu_pool(gpu: int, dry_run: bool) -> Optional[GpuPool]:
    """The pool for jobs of ``gpu`` GPUs each (None: no GPU asked for); fewer visible GPUs stop the launch."""
    if gpu <= 0:
        return None
    devices, seen = visible_gpus()
    if len(devices) >= gpu:
        return GpuPool(devices)
    if dry_run:  # the commands are printed without devices
        return None
    raise SystemExit(f"launch: each job asks for {gpu} GPU(s), but {len(devices)} visible here ({seen}). "
                     "Fix: ask for fewer (harmonifuse.sh --ngpu / --inference_ngpu) or make more GPUs visible")


def run_local(cmd: str, logfile: str, gpu: str, devices: Optional[str] = None) -> int:
    """Run ``cmd`` here, logged to ``logfile``; ``devices``: its ``CUDA_VISIBLE_DEVICES`` (None: inherited)."""
    os.makedirs(os.path.dirname(os.path.abspath(logfile)), exist_ok=True)
    env = None if devices is None else {**os.environ, "CUDA_VISIBLE_DEVICES": devices}
    shown = "" if devices is None else f", CUDA_VISIBLE_DEVICES={devices}"
    t0 = time.time()
    with open(logfile, "w", encoding="utf-8") as log:
        log.write(f"# {cmd}\n# Started at {_now()} on {os.uname().nodename} (gpu={gpu}{shown})\n#\n")
        log.flush()
        proc = subprocess.Popen(["bash", "-c", cmd], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)  # rusage of this job alone (peak memory)
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        elapsed = int(round(time.time() - t0))
        log.write(f"# Accounting: time={elapsed} threads=1 max_rss_mb={usage.ru_maxrss / 1024:.0f}\n"
                  f"# Ended (code {rc}) at {_now()}, elapsed time {elapsed} seconds\n")
    return rc


def read_slurm_conf(path: str) -> List[str]:
    """sbatch options from a file: one per line, '#SBATCH ' prefix optional, '#' comments skipped."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#SBATCH"):
                line = line[len("#SBATCH"):].strip()
            elif line.startswith("#") or not line:
                continue
            out += shlex.split(line)
    return out


def slurm_script(opts: Dict[str, str], job: Optional[Tuple[str, int, int]], logfile: str,
                 cmd: str) -> Tuple[str, str]:
    """Returns (script path, script text) for an sbatch array job."""
    logdir = os.path.dirname(os.path.abspath(logfile))
    base = os.path.basename(logfile)
    if job:
        base = substitute(base, job[0], "%a")
        logfile = substitute(logfile, job[0], "${SLURM_ARRAY_TASK_ID}")
        cmd = substitute(cmd, job[0], "${SLURM_ARRAY_TASK_ID}")
    name = re.sub(r"\.log$", "", base).replace("%a", "").strip("._") or "job"
    qdir = os.path.join(logdir, "q")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}",
             f"#SBATCH --output={qdir}/{name}.%A_%a.out" if job else f"#SBATCH --output={qdir}/{name}.%j.out",
             f"#SBATCH --cpus-per-task={opts['num_threads']}"]
    if job:
        limit = f"%{opts['max_jobs_run']}" if int(opts["max_jobs_run"] or 0) > 0 else ""
        lines.append(f"#SBATCH --array={job[1]}-{job[2]}{limit}")
    if int(opts["num_nodes"]) > 1:  # one task per node (ESPnet: SLURM_NTASKS == SLURM_STEP_NUM_NODES)
        lines += [f"#SBATCH --nodes={opts['num_nodes']}", "#SBATCH --ntasks-per-node=1"]
    if int(opts["gpu"] or 0) > 0:
        lines.append(f"#SBATCH --gres=gpu:{opts['gpu']}")
    if opts["mem"]:
        lines.append(f"#SBATCH --mem={opts['mem']}")
    if opts["time"]:
        lines.append(f"#SBATCH --time={opts['time']}")
    extra = read_slurm_conf(opts["slurm_conf"]) if opts["slurm_conf"] else []
    extra += shlex.split(opts["sbatch_opts"])
    lines += [f"#SBATCH {x}" for x in extra]
    log_q = f'"{logfile}"' if "${SLURM_ARRAY_TASK_ID}" in logfile else shlex.quote(logfile)
    lines += [
        f"cd {shlex.quote(os.getcwd())}",
        f"log={log_q}",
        'mkdir -p "$(dirname "$log")"',
        f"cmd={shlex.quote(cmd)}",
        'echo "# $cmd" > "$log"',
        'echo "# Started at $(date) on $(hostname) (slurm job ${SLURM_JOB_ID:-})" >> "$log"',
        'echo "#" >> "$log"',
        "t0=$(date +%s)",
        f"( {cmd} ) >> \"$log\" 2>&1",
        "ret=$?",
        "t=$(( $(date +%s) - t0 ))",
        'echo "# Accounting: time=$t threads=1" >> "$log"',
        'echo "# Ended (code $ret) at $(date), elapsed time $t seconds" >> "$log"',
        "exit $ret",
    ]
    return os.path.join(qdir, f"{name}.sh"), "\n".join(lines) + "\n"


def _failed_report(failed: List[str], total: int) -> None:
    print(f"launch: {len(failed)} / {total} failed; log is in {failed[0]}"
          + (f" (also: {', '.join(failed[1:6])})" if len(failed) > 1 else ""), file=sys.stderr)
    try:
        with open(failed[0], encoding="utf-8", errors="replace") as f:
            tail = f.readlines()[-20:]
        sys.stderr.write(f"----- last lines of {failed[0]} -----\n" + "".join(tail))
    except OSError:
        pass


def _log_ok(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "# Ended (code 0)" in f.read()[-4000:]
    except OSError:
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    opts, job, logfile, words = parse_args(sys.argv[1:] if argv is None else argv)
    cmd = join_command(words)
    ids = [str(i) for i in range(job[1], job[2] + 1)] if job else [""]
    logs = [substitute(logfile, job[0], i) if job else logfile for i in ids]
    if opts["backend"] == "local":
        cmds = [substitute(cmd, job[0], i) if job else cmd for i in ids]
        k = int(opts["max_jobs_run"] or 0) or len(cmds)
        gpu = int(opts["gpu"] or 0)
        pool = gpu_pool(gpu, opts["dry_run"] == "true")
        if opts["dry_run"] == "true":  # the devices the jobs get when they all start at once
            for c, lg in zip(cmds, logs):
                devices = f"  (CUDA_VISIBLE_DEVICES={pool.names(pool.take(gpu))})" if pool else ""
                print(f"{c}  > {lg}{devices}")
            return 0

        def run(job: Tuple[str, str]) -> int:
            if pool is None:
                return run_local(*job, opts["gpu"])
            with pool.hold(gpu) as devices:
                return run_local(*job, opts["gpu"], devices)

        with ThreadPoolExecutor(max_workers=min(k, len(cmds))) as ex:
            rcs = list(ex.map(run, zip(cmds, logs)))
        failed = [lg for lg, rc in zip(logs, rcs) if rc != 0]
    else:
        path, text = slurm_script(opts, job, logfile, cmd)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        submit = ["sbatch", "--wait", path]
        if opts["dry_run"] == "true":
            print(text + f"# submit with: {' '.join(submit)}")
            return 0
        rc = subprocess.call(submit)
        failed = [lg for lg in logs if not _log_ok(lg)]
        if rc != 0 and not failed:
            print(f"launch: sbatch failed with code {rc} for {path}", file=sys.stderr)
            return 1
    if failed:
        _failed_report(failed, len(logs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
