#!/usr/bin/env python3
"""Training speed on CPUs: 2 DDP processes x 1 thread (gloo, torchrun) against 1 process x 2 threads.

Both settings train the mini_emo model (the sizes of egs2/mini_emo/harmonifuse1/conf/train.yaml)
through the real entry point, ``python -m espnet2.bin.harmonifuse_train``, with the same global batch
(``--batch_size``; ESPnet gives each DDP process half of every batch), on a synthetic corpus: tone plus
noise utterances of 1.5-3.0 s (``--utts`` per task), transcripts of 3-6 words drawn from a small word
list, the 4 emotion labels, and a character sentencepiece model. The step time is ESPnet's
``train_time`` (one training iteration, data loading included; on rank 0 for DDP), read from the
reporter in ``checkpoint.pth``. Epoch 1 runs the frozen encoder; epoch 2 reads its states from the
state cache, as the recipe's later epochs do. The settings run ``--repeats`` times each, alternating;
the table gives the medians.

    python benchmarks/bench_ddp_cpu.py [--repeats 3] [--utts 96] [--batch_size 16] [--out_dir DIR]
"""

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))
CONFIG = REPO / "egs2" / "mini_emo" / "harmonifuse1" / "conf" / "train.yaml"
WORDS = ("the red dog a blue cat sees two birds sing my green car runs fast over small hills under "
         "old trees near one quiet river and three happy kids play with bright kites every day").split()
SETTINGS = {  # name: (processes, threads per process)
    "1 process x 2 threads": (1, 2),
    "2 processes x 1 thread (gloo DDP)": (2, 1),
}


def make_corpus(root: Path, utts: int):
    """Train and valid dirs per task, and the options that name them."""
    from conftest import EMOTIONS, task_data_args, toy_wave, write_task_dir

    rng = random.Random(0)
    opts, texts, seed = [], [], 0
    for task in ("asr", "ser"):
        for mode, n in (("train", utts), ("valid", 8)):
            items = []
            for i in range(n):
                seed += 1
                text = " ".join(rng.choices(WORDS, k=rng.randint(3, 6))).upper() if task == "asr" \
                    else EMOTIONS[i % len(EMOTIONS)]
                items.append((f"{task}_{mode}{i:04d}", toy_wave(seed, rng.uniform(1.5, 3.0)), text))
                texts.append(text)
            opts += task_data_args(task, write_task_dir(root, f"{task}_{mode}", items), mode)
    return opts, texts


def make_tokenizer(root: Path, texts) -> str:
    from espnet_harmonifuse.bin import tokenizer_train

    (root / "text").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(texts)))
    tokenizer_train.main(["--config", str(CONFIG), "--text", str(root / "text"), "--out_dir", str(root / "token"),
                          "--vocab_size", "200", "--model_type", "char"])
    return str(root / "token" / "bpe.model")


def train_once(root: Path, name: str, data_opts, bpemodel: str, args) -> dict:
    """One training of ``name``; returns {epoch: its mean seconds per training step} from its reporter."""
    from espnet_harmonifuse.utils.checkpoint import safe_torch_load

    procs, threads = SETTINGS[name]
    out = Path(tempfile.mkdtemp(prefix="run_", dir=root))
    main = ["-m", "espnet2.bin.harmonifuse_train", "--config", str(CONFIG), "--bpemodel", bpemodel,
            "--output_dir", str(out), "--ngpu", "0", "--max_epoch", "2", "--batch_size", str(args.batch_size),
            "--num_iters_per_epoch", str(args.steps), "--use_tensorboard", "false", "--use_matplotlib", "false",
            "--keep_nbest_models", "1", *data_opts]
    if procs > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs), *main,
               "--dist_backend", "gloo"]
    else:
        cmd = main
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, *cmd], env=env, capture_output=True, text=True)
    (out / "stderr.txt").write_text(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"bench_ddp_cpu: the training '{name}' failed (log: {out}/stderr.txt):\n{proc.stderr[-3000:]}")
    stats = safe_torch_load(out / "checkpoint.pth")["reporter"]["stats"]
    return {e: float(stats[e]["train"]["train_time"]) for e in (1, 2)}


def machine() -> str:
    import espnet
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}, {os.cpu_count()} cores ({usable} usable); python {platform.python_version()}, "
            f"torch {torch.__version__}, espnet {espnet.__version__}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--utts", type=int, default=96, help="training utterances per task")
    p.add_argument("--batch_size", type=int, default=16, help="the global batch (conf/train.yaml: 16)")
    p.add_argument("--steps", type=int, default=12, help="training steps per epoch (num_iters_per_epoch)")
    p.add_argument("--out_dir", default=None, help="where the corpus and the runs go (default: a temp dir)")
    args = p.parse_args(argv)
    load = os.getloadavg()
    root = Path(args.out_dir or tempfile.mkdtemp(prefix="bench_ddp_cpu_"))
    root.mkdir(parents=True, exist_ok=True)
    data_opts, texts = make_corpus(root, args.utts)
    bpemodel = make_tokenizer(root, texts)
    times = {name: {1: [], 2: []} for name in SETTINGS}
    t0 = time.time()
    for r in range(args.repeats):
        for name in SETTINGS:  # alternating, so drift of the machine hits both settings
            per_epoch = train_once(root, name, data_opts, bpemodel, args)
            for e, t in per_epoch.items():
                times[name][e].append(t)
            print(f"repeat {r + 1}, {name}: " + ", ".join(f"epoch {e} {t:.3f} s/step" for e, t in per_epoch.items()),
                  flush=True)
    med = {name: {e: statistics.median(ts) for e, ts in per.items()} for name, per in times.items()}
    base, ddp = (med[name] for name in SETTINGS)
    print(f"\nmachine: {machine()}")
    print(f"load average at start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; "
          f"{time.time() - t0:.0f} s for {2 * args.repeats} trainings")
    print(f"data: synthetic ({args.utts} train utterances per task, 1.5-3.0 s); model: {CONFIG.relative_to(REPO)}; "
          f"global batch {args.batch_size}; {args.steps} steps per epoch; median of {args.repeats} repeats\n")
    print("| setting | epoch 1 steps/s | epoch 1 samples/s | epoch 2 steps/s | epoch 2 samples/s |")
    print("|---|---:|---:|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | " + " | ".join(f"{1 / m[e]:.2f} | {args.batch_size / m[e]:.1f}" for e in (1, 2)) + " |")
    print("| ratio (2 x 1 / 1 x 2) | " + " | ".join(f"{base[e] / ddp[e]:.2f} | {base[e] / ddp[e]:.2f}" for e in (1, 2))
          + " |")
    print("\nepoch 1 runs the frozen encoder; epoch 2 reads its states from the cache (the recipe's usual step)")


if __name__ == "__main__":
    main()
