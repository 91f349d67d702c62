#!/usr/bin/env python3
"""Speed of a finished mini_emo run against ESPnet's own and against the machine's limit.

Run from a recipe dir whose ``./run.sh`` has finished (``exp/pretrain``, ``exp/train``, ``dump/``)
and whose ESPnet ASR baseline is trained (same data, same-size Conformer encoder, a Transformer
decoder)::

    cd egs2/mini_emo/harmonifuse1
    ../../../benchmarks/mini_emo/espnet_baselines.sh --task asr --seed 0 --stages prep,train
    python ../../../benchmarks/speed.py --espnet_exp exp/espnet_asr_seed0 --out exp/speed.json

Sections (``--sections``, default all):

* ``profile``: one training step of each stage-6 model split into phases (benchmarks/speed_profile.py),
  its FLOPs (forward + backward) and the achieved FLOP/s against a large fp32 matrix multiply on the
  same threads (the limit). Median over ``--repeats`` repeats.
* ``train``: steps/s and samples/s of the three trainers run by their own entry points on the same
  data, each for two short epochs (the second is timed: ESPnet's ``train_time`` per step):
  ESPnet's ``asr_train`` (Conformer + Transformer, CTC/attention), the encoder pre-training and
  HarmoniFuse (its second epoch covers every batch once more, with the encoder states cached).
* ``decode``: real-time factor and utterances/s on the ASR test set of ESPnet's ``Speech2Text``
  (batch 1, the baseline's beam search and, as a second row, greedy) against HarmoniFuse's decoding
  as ``harmonifuse_inference`` runs it (greedy with the KV cache) at batch 1 and batched, with each
  one's WER. Audio is read before the clock starts; the models are loaded once.

Prints one markdown table per section, with ratios, and writes everything to ``--out`` (JSON).
"""

import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_profile import PHASES, matmul_peak_gflops, profile_steps  # noqa: E402

ESPNET_DECODE = Path(__file__).resolve().parent / "mini_emo" / "conf" / "espnet_decode_asr.yaml"


# ---------------------------------------------------------------------------------------- profile
def section_profile(exps: Dict[str, Path], threads: int, repeats: int, steps: int) -> Dict:
    out = {"threads": threads, "models": {}}
    for name, exp in exps.items():
        runs = [profile_steps(exp, steps, warmup=10, threads=threads) for _ in range(repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        out["models"][name] = med
    out["peak_gflops"] = {
        name: statistics.median(matmul_peak_gflops(threads, dtype=getattr(torch, name)) for _ in range(repeats))
        for name in sorted({m["autocast_dtype"] for m in out["models"].values()} | {"float32"})
    }
    return out


def table_profile(res: Dict) -> str:
    names = list(res["models"])
    rows = ["| phase | " + " | ".join(f"{n} (ms)" for n in names) + " | " + " | ".join(f"{n} (%)" for n in names) + " |"]
    rows.append("|---" * (1 + 2 * len(names)) + "|")
    for phase in PHASES + ["step"]:
        ms = [1000 * res["models"][n].get(phase, 0.0) for n in names]
        pct = [100 * res["models"][n].get(phase, 0.0) / res["models"][n]["step"] for n in names]
        rows.append(f"| {phase} | " + " | ".join(f"{v:.1f}" for v in ms) + " | " + " | ".join(f"{v:.0f}" for v in pct) + " |")
    peak = res["peak_gflops"]
    for label, fn in (
        ("compute dtype", lambda m: m["autocast_dtype"]),
        ("GFLOP per step (fwd + bwd)", lambda m: f"{m['flops'] / 1e9:.2f}"),
        ("achieved GFLOP/s", lambda m: f"{m['flops'] / m['step'] / 1e9:.1f}"),
        ("matmul peak in that dtype, GFLOP/s", lambda m: f"{peak[m['autocast_dtype']]:.0f}"),
        ("achieved / peak", lambda m: f"{100 * m['flops'] / m['step'] / 1e9 / peak[m['autocast_dtype']]:.0f} %"),
    ):
        rows.append(f"| {label} | " + " | ".join(fn(res["models"][n]) for n in names) + " |" + " |" * len(names))
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------ train
def logged_command(log: Path) -> List[str]:
    """The ``python -m espnet2.bin.*_train ...`` words a training log starts with (launcher header)."""
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines()[:5]:
        if line.startswith("# ") and re.search(r"-m espnet2\.bin\.\w+_train", line):
            return shlex.split(line[2:])
    raise ValueError(f"{log}: no '# python -m espnet2.bin.<task>_train ...' header line")


def batches_per_epoch(cmd: List[str], batch_size: int) -> int:
    """Batches of one pass over every task's training data (sorted batches of ``batch_size``)."""
    files = [cmd[i + 1].split(":", 1)[-1] for i, w in enumerate(cmd) if w == "--train_task_shape_file"]
    return sum(math.ceil(sum(1 for _ in open(f)) / batch_size) for f in files)


def epoch_train_time(log: Path, epoch: int) -> float:
    pat = re.compile(rf"\b{epoch}epoch results: \[train\].*?\btrain_time=([0-9.e+-]+)")
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = pat.search(line)
        if m:
            return float(m.group(1))
    raise ValueError(f"{log}: no train_time for epoch {epoch}")


def timed_training(cmd: List[str], iters: int, threads: int, workdir: Path) -> float:
    """Seconds per step of the second of two ``iters``-step epochs of ``cmd``'s training."""
    out = workdir / Path(cmd[cmd.index("--output_dir") + 1]).name
    words = [sys.executable] + cmd[1:] + [
        "--output_dir", str(out), "--resume", "false", "--max_epoch", "2", "--num_iters_per_epoch", str(iters),
        "--use_matplotlib", "false", "--use_tensorboard", "false", "--keep_nbest_models", "1",
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    log_file = workdir / f"{out.name}.log"  # the trainers log to stderr (a recipe's launcher writes train.log)
    with open(log_file, "w") as log:
        subprocess.run(words, check=True, stdout=log, stderr=subprocess.STDOUT, env=env)
    return epoch_train_time(log_file, 2)


def section_train(exps: Dict[str, Path], espnet_exp: Path, threads: int, iters: int) -> Dict:
    rows = {}
    with tempfile.TemporaryDirectory(prefix="speed_train_") as tmp:
        for name, log in [("ESPnet asr_train", espnet_exp / "train.log")] + [
            (n, e / "train.log") for n, e in exps.items()
        ]:
            cmd = logged_command(log)
            bs = int(_config(log.parent)["batch_size"])
            n = iters
            if name == "HarmoniFuse":  # epoch 1 fills the state cache; epoch 2 is all cache hits
                n = batches_per_epoch(cmd, bs)
            sec = timed_training(cmd, n, threads, Path(tmp))
            rows[name] = {"sec_per_step": sec, "steps_per_s": 1 / sec, "samples_per_s": bs / sec, "iters": n}
    return rows


def _config(exp: Path) -> Dict:
    import yaml

    with open(exp / "config.yaml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def table_train(rows: Dict) -> str:
    ref = rows["ESPnet asr_train"]["steps_per_s"]
    out = ["| trainer | steps/s | samples/s | steps/s vs ESPnet |", "|---|---:|---:|---:|"]
    for name, r in rows.items():
        out.append(f"| {name} | {r['steps_per_s']:.2f} | {r['samples_per_s']:.1f} | {r['steps_per_s'] / ref:.2f}x |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- decode
def _test_audio(data_dir: Path):
    import soundfile as sf

    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    items = []
    for uid, path in read_pairs(str(data_dir / "wav.scp")):
        wav, rate = sf.read(path, dtype="float32")
        items.append((uid, torch.from_numpy(wav), rate))
    return items


def _ours(model_dir: Path, model_file: str, items, batch_size: int):
    from espnet_harmonifuse.api import HarmoniFuse

    hf = HarmoniFuse.from_pretrained(model_dir, model_file=model_file)
    order = sorted(items, key=lambda x: len(x[1]))
    hyps = {}
    start = time.perf_counter()
    for i in range(0, len(order), batch_size):
        chunk = order[i : i + batch_size]
        waves = [w for _, w, _ in chunk]
        lengths = torch.tensor([len(w) for w in waves])
        out = hf.decode_tensors(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths, "asr")
        hyps.update({uid: r["text"] for (uid, _, _), r in zip(chunk, out)})
    return time.perf_counter() - start, hyps


def _espnet(exp: Path, model_file: str, items, beam_size: int):
    import yaml
    from espnet2.bin.asr_inference import Speech2Text

    conf = yaml.safe_load(ESPNET_DECODE.read_text())
    conf["beam_size"] = beam_size
    s2t = Speech2Text(asr_train_config=str(exp / "config.yaml"), asr_model_file=str(exp / model_file), device="cpu", **conf)
    hyps = {}
    start = time.perf_counter()
    with torch.no_grad():
        for uid, w, _ in items:
            hyps[uid] = s2t(w)[0][0]  # the best hypothesis' text
    return time.perf_counter() - start, hyps


def _wer(hyps: Dict[str, str], refs: Dict[str, str]) -> float:
    from espnet_harmonifuse.scoring.asr_metrics import score_pairs, summarize

    return summarize(score_pairs([(u, refs[u], hyps.get(u)) for u in refs]))["err"]


def section_decode(train_exp: Path, model_file: str, espnet_exp: Path, espnet_model: str, test_dir: Path,
                   threads: int, batch_size: int) -> Dict:
    torch.set_num_threads(threads)
    items = _test_audio(test_dir)
    audio = sum(len(w) / r for _, w, r in items)
    esp_beam = int(__import__("yaml").safe_load(ESPNET_DECODE.read_text())["beam_size"])
    runs = {
        f"ESPnet Speech2Text, beam {esp_beam}, batch 1": lambda: _espnet(espnet_exp, espnet_model, items, esp_beam),
        "ESPnet Speech2Text, greedy, batch 1": lambda: _espnet(espnet_exp, espnet_model, items, 1),
        "HarmoniFuse, greedy + KV cache, batch 1": lambda: _ours(train_exp, model_file, items, 1),
        f"HarmoniFuse, greedy + KV cache, batch {batch_size}": lambda: _ours(train_exp, model_file, items, batch_size),
    }
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    refs = dict(read_pairs(str(test_dir / "text")))
    rows = {}
    for name, fn in runs.items():
        sec, hyps = fn()
        rows[name] = {"seconds": sec, "rtf": sec / audio, "utt_per_s": len(items) / sec, "wer": _wer(hyps, refs)}
    return {"utterances": len(items), "audio_seconds": audio, "rows": rows}


def table_decode(res: Dict) -> str:
    rows = res["rows"]
    ref = next(iter(rows.values()))["utt_per_s"]
    out = [f"| decoder ({res['utterances']} utterances, {res['audio_seconds']:.0f} s of audio) | WER % | RTF | "
           f"utterances/s | vs the first row |", "|---|---:|---:|---:|---:|"]
    for name, r in rows.items():
        out.append(f"| {name} | {r['wer']:.1f} | {r['rtf']:.4f} | {r['utt_per_s']:.1f} | {r['utt_per_s'] / ref:.1f}x |")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- main
def environment() -> str:
    import platform

    import espnet

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__}, "
            f"espnet {espnet.__version__}")


def main(cmd=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sections", default="profile,train,decode")
    p.add_argument("--pretrain_exp", type=Path, default=Path("exp/pretrain"))
    p.add_argument("--train_exp", type=Path, default=Path("exp/train"))
    p.add_argument("--model_file", default="valid.acc_tasks.ave.pth", help="the HarmoniFuse model decoded")
    p.add_argument("--espnet_exp", type=Path, default=Path("exp/espnet_asr_seed0"))
    p.add_argument("--espnet_model", default="valid.acc.ave.pth")
    p.add_argument("--test_dir", type=Path, default=Path("dump/raw/asr_test"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="profile repeats (the median is shown)")
    p.add_argument("--profile_steps", type=int, default=30)
    p.add_argument("--train_iters", type=int, default=60, help="steps per epoch of the short training runs")
    p.add_argument("--batch_size", type=int, default=16, help="batched decoding's batch size")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args(cmd)
    sections = a.sections.split(",")
    exps = {"pre-training": a.pretrain_exp, "HarmoniFuse": a.train_exp}
    res: Dict = {"environment": environment()}
    print(f"Environment: {res['environment']}; {a.threads} threads\n")
    if "profile" in sections:
        res["profile"] = section_profile(exps, a.threads, a.repeats, a.profile_steps)
        print(f"Training step, median of {a.repeats}\n\n{table_profile(res['profile'])}\n", flush=True)
    if "train" in sections:
        res["train"] = section_train(exps, a.espnet_exp, a.threads, a.train_iters)
        print(f"Training through each entry point (second epoch)\n\n{table_train(res['train'])}\n", flush=True)
    if "decode" in sections:
        res["decode"] = section_decode(a.train_exp, a.model_file, a.espnet_exp, a.espnet_model, a.test_dir,
                                       a.threads, a.batch_size)
        print(f"Decoding the ASR test set\n\n{table_decode(res['decode'])}\n", flush=True)
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
