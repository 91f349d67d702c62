#!/usr/bin/env python3
"""ESPnet's own peer baselines on a HarmoniFuse recipe's formatted data, through ESPnet's entry points.

* ``asr``: ``python -m espnet2.bin.asr_train`` (e.g. Conformer encoder + Transformer decoder,
  hybrid CTC/attention) with sentencepiece tokens of the recipe's tokenizer, decoded by
  ``python -m espnet2.bin.asr_inference``, scored by ``espnet_harmonifuse.bin.score_asr``.
* ``cls``: ``python -m espnet2.bin.cls_train`` (ESPnet's classification task) on the SER data
  (the emotion word is the label), decoded by ``python -m espnet2.bin.cls_inference``, scored by
  ``espnet_harmonifuse.bin.score_ser``.

The steps mirror ESPnet's ``asr.sh`` / ``cls.sh`` (stages "token list", "collect stats", "train",
"decode", "score"), with the same command-line options, so the models are exactly what ESPnet
would train; only the orchestration is ours. Every command goes through a Kaldi-style launcher
(``--train_cmd`` / ``--decode_cmd``, the recipe's ``cmd.sh`` values; default: run here) with its
own log file. Run from the recipe dir (paths are relative to it, as in ESPnet; espnet_baselines.sh,
next to this file, fills in the defaults)::

    PYTHONPATH=../../.. python -m benchmarks.mini_emo.espnet_baselines --task asr \\
        --config ../../../benchmarks/mini_emo/conf/espnet_asr_conformer.yaml \\
        --bpemodel data/token_list/bpe150/bpe.model \\
        --train_set asr_train --valid_set asr_dev --test_sets asr_test \\
        --stats_dir exp/espnet_stats/asr --exp_dir exp/espnet_asr --seed 0

Layout: ``STATS_DIR/{tokens.txt,train/,valid/}`` (shared by seeds), ``EXP_DIR/`` (ESPnet's
training dir: config.yaml, checkpoints, train.log), ``EXP_DIR/decode_<tag>/<test_set>/{text,
score_wer|score_ser}/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

TASKS = {
    # ESPnet task: train module, inference module, data name of the target, default decode model
    "asr": dict(
        train="espnet2.bin.asr_train",
        infer="espnet2.bin.asr_inference",
        target="text",
        model_file="valid.acc.ave.pth",  # asr.sh's default inference_asr_model
        score_dir="score_wer",
    ),
    "cls": dict(
        train="espnet2.bin.cls_train",
        infer="espnet2.bin.cls_inference",
        target="label",
        model_file="valid.acc.best.pth",
        score_dir="score_ser",
    ),
}
STAGES = ("prep", "train", "decode", "score")


class CommandFailed(RuntimeError):
    """A launched command exited non-zero; the message names its log."""


@dataclass
class Launcher:
    """Runs commands with Kaldi run.pl semantics (``CMD [JOB=1:N] LOG COMMAND...``)."""

    train_cmd: Optional[str] = None
    decode_cmd: Optional[str] = None
    python: str = sys.executable
    env: Dict[str, str] = field(default_factory=dict)

    def _prefix(self, cmd: Optional[str]) -> List[str]:
        if cmd:
            return shlex.split(cmd)
        return [sys.executable, "-m", "espnet_harmonifuse.utils.launch", "--backend", "local"]

    def run(self, words: Sequence[str], log: str, decode: bool = False, jobs: int = 0,
            env: Optional[Dict[str, str]] = None) -> None:
        """Run ``words`` (``JOB`` replaced by 1..jobs when ``jobs > 0``), output to ``log``."""
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        argv = self._prefix(self.decode_cmd if decode else self.train_cmd)
        if jobs:
            argv.append(f"JOB=1:{jobs}")
        # one shell-quoted word: the launcher hands it to bash as it is (as run.pl does)
        argv += [log, shlex.join(words)]
        logging.info("%s", " ".join(argv))
        rc = subprocess.call(argv, env={**os.environ, **self.env, **(env or {})})
        if rc != 0:
            raise CommandFailed(f"exit code {rc}: {' '.join(words[:3])} ... (log: {log})")


@dataclass
class Data:
    """The formatted data dirs (``DUMPDIR/raw/<set>``) of one ESPnet task."""

    dumpdir: str
    train_set: str
    valid_set: str
    test_sets: List[str]

    def dir(self, name: str) -> str:
        return f"{self.dumpdir}/raw/{name}"


def _digest(paths: Sequence[str]) -> str:
    h = hashlib.sha1()
    for p in paths:
        h.update(p.encode())
        h.update(Path(p).read_bytes() if Path(p).is_file() else b"<missing>")
    return h.hexdigest()[:16]


def write_token_list(task: str, train_text: str, out: str, launcher: Launcher,
                     bpemodel: Optional[str] = None) -> None:
    """ESPnet's token list via ``espnet2.bin.tokenize_text``, as asr.sh / cls.sh write it."""
    words = [launcher.python, "-m", "espnet2.bin.tokenize_text", "--input", train_text, "--output", out,
             "--field", "2-", "--write_vocabulary", "true"]
    if task == "asr":  # asr.sh: <blank> first, <unk> second, <sos/eos> last
        if not bpemodel:
            raise ValueError("the asr baseline needs --bpemodel (the recipe's stage-4 sentencepiece model)")
        words += ["--token_type", "bpe", "--bpemodel", bpemodel, "--cleaner", "none", "--g2p", "none",
                  "--add_symbol", "<blank>:0", "--add_symbol", "<unk>:1", "--add_symbol", "<sos/eos>:-1"]
    else:  # cls.sh: the classes, then placeholders (<unk> last, not a class: n_classes = len - 1)
        words += ["--token_type", "word", "--add_symbol", "<unk>:-1", "--add_symbol", "<blank>:-2"]
    launcher.run(words, str(Path(out).parent / "logs" / "token_list.log"))


def _token_opts(task: str, token_list: str, bpemodel: Optional[str]) -> List[str]:
    if task == "asr":
        return ["--token_type", "bpe", "--bpemodel", str(bpemodel), "--token_list", token_list,
                "--non_linguistic_symbols", "none", "--cleaner", "none", "--g2p", "none"]
    return ["--token_type", "word", "--token_list", token_list]


def _data_opts(task: str, data: Data) -> List[str]:
    target = TASKS[task]["target"]
    out = []
    for kind, name in (("train", data.train_set), ("valid", data.valid_set)):
        d = data.dir(name)
        out += [f"--{kind}_data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
                f"--{kind}_data_path_and_name_and_type", f"{d}/text,{target},text"]
    return out


def prepare(task: str, data: Data, stats_dir: str, config: str, launcher: Launcher,
            bpemodel: Optional[str] = None) -> str:
    """Token list + ESPnet's collect-stats (global MVN stats, shape files); skipped when up to date.

    Returns the token list path.
    """
    sd = Path(stats_dir)
    tokens = str(sd / "tokens.txt")
    inputs = [config, f"{data.dir(data.train_set)}/wav.scp", f"{data.dir(data.train_set)}/text",
              f"{data.dir(data.valid_set)}/wav.scp"] + ([bpemodel] if bpemodel else [])
    stamp, digest = sd / ".done", _digest(inputs)
    if stamp.is_file() and json.loads(stamp.read_text()).get("digest") == digest:
        logging.info("%s baseline: stats in %s are up to date", task, sd)
        return tokens
    sd.mkdir(parents=True, exist_ok=True)
    write_token_list(task, f"{data.dir(data.train_set)}/text", tokens, launcher, bpemodel)
    # asr.sh / cls.sh stage "collect stats": --*_shape_file only gives the ids (unsorted batches)
    words = [launcher.python, "-m", TASKS[task]["train"], "--collect_stats", "true", "--use_preprocessor", "true",
             *_token_opts(task, tokens, bpemodel), *_data_opts(task, data),
             "--train_shape_file", f"{data.dir(data.train_set)}/wav.scp",
             "--valid_shape_file", f"{data.dir(data.valid_set)}/wav.scp",
             "--output_dir", str(sd), "--config", config, "--ngpu", "0"]
    launcher.run(words, str(sd / "logs" / "collect_stats.log"))
    if task == "asr":  # asr.sh appends the vocabulary size to the token shape: text_shape.bpe
        n = len(Path(tokens).read_text(encoding="utf-8").splitlines())
        for kind in ("train", "valid"):
            lines = (sd / kind / "text_shape").read_text().splitlines()
            (sd / kind / "text_shape.bpe").write_text("".join(f"{ln},{n}\n" for ln in lines if ln.strip()))
    stamp.write_text(json.dumps({"digest": digest, "inputs": inputs}) + "\n")
    return tokens


def train(task: str, data: Data, stats_dir: str, exp_dir: str, config: str, launcher: Launcher,
          bpemodel: Optional[str] = None, seed: int = 0, ngpu: int = 0, extra_args: Sequence[str] = ()) -> None:
    """ESPnet training (resumes from EXP_DIR/checkpoint.pth, as asr.sh does with --resume true)."""
    sd = Path(stats_dir)
    tokens = str(sd / "tokens.txt")
    shape = {"asr": ["speech_shape", "text_shape.bpe"], "cls": ["speech_shape", "label_shape"]}[task]
    words = [launcher.python, "-m", TASKS[task]["train"], "--use_preprocessor", "true",
             *_token_opts(task, tokens, bpemodel),
             "--normalize", "global_mvn", "--normalize_conf", f"stats_file={sd}/train/feats_stats.npz",
             *_data_opts(task, data)]
    for kind in ("train", "valid"):
        for s in shape:
            words += [f"--{kind}_shape_file", f"{sd}/{kind}/{s}"]
    words += ["--resume", "true", "--output_dir", exp_dir, "--config", config, "--seed", str(seed),
              "--ngpu", str(ngpu), *extra_args]
    Path(exp_dir).mkdir(parents=True, exist_ok=True)
    launcher.run(words, f"{exp_dir}/train.log")


def _merge(inputs: Sequence[Path], out: Path) -> None:
    lines = []
    for p in inputs:
        if p.is_file():
            lines += [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{ln}\n" for ln in sorted(lines, key=lambda s: s.split(" ", 1)[0])), encoding="utf-8")


def decode(task: str, data: Data, exp_dir: str, test_set: str, out_dir: str, launcher: Launcher,
           model_file: Optional[str] = None, nj: int = 2, decode_config: Optional[str] = None) -> str:
    """Decode one test set in ``nj`` jobs; returns the merged hypothesis ``text``."""
    from espnet_harmonifuse.data.kaldi_dir import split_keys

    model = f"{exp_dir}/{model_file or TASKS[task]['model_file']}"
    if not Path(model).exists():
        raise FileNotFoundError(f"{model} not found (train first)")
    out, logdir = Path(out_dir), Path(out_dir) / "logdir"
    logdir.mkdir(parents=True, exist_ok=True)
    wav = f"{data.dir(test_set)}/wav.scp"
    n = split_keys(wav, nj, str(logdir / "keys.JOB.scp"))
    words = [launcher.python, "-m", TASKS[task]["infer"], "--ngpu", "0", "--batch_size", "1",
             "--data_path_and_name_and_type", f"{wav},speech,sound", "--key_file", f"{logdir}/keys.JOB.scp",
             "--output_dir", f"{logdir}/output.JOB"]
    if task == "asr":
        words += ["--asr_train_config", f"{exp_dir}/config.yaml", "--asr_model_file", model]
        words += ["--config", decode_config] if decode_config else []
        sub = "1best_recog/text"
    else:
        words += ["--classification_train_config", f"{exp_dir}/config.yaml", "--classification_model_file", model]
        sub = "prediction/text"
    # one thread per job: the jobs share the machine's cores
    launcher.run(words, f"{logdir}/decode.JOB.log", decode=True, jobs=n, env={"OMP_NUM_THREADS": "1"})
    _merge([logdir / f"output.{i}" / sub for i in range(1, n + 1)], out / "text")
    return str(out / "text")


def score(task: str, ref: str, hyp: str, out_dir: str, labels: Optional[Sequence[str]] = None) -> Dict:
    """Our scorers (the same as for HarmoniFuse): writes OUT_DIR/scores.json."""
    from espnet_harmonifuse.scoring.score_files import score_asr_files, score_ser_files

    if task == "asr":
        return score_asr_files(ref, hyp, out_dir)
    return score_ser_files(ref, hyp, list(labels or []), out_dir)


def run(task: str, data: Data, stats_dir: str, exp_dir: str, config: str, launcher: Launcher,
        bpemodel: Optional[str] = None, seed: int = 0, extra_args: Sequence[str] = (), nj: int = 2,
        decode_config: Optional[str] = None, labels: Optional[Sequence[str]] = None,
        stages: Sequence[str] = STAGES, decode_tag: str = "bench", model_file: Optional[str] = None) -> Dict:
    """All steps; returns ``{"seconds": {stage: s}, "scores": {test_set: scores.json path}}``."""
    if task not in TASKS:
        raise ValueError(f"--task must be one of {sorted(TASKS)}, not '{task}'")
    seconds, scores = {}, {}
    for stage in STAGES:
        if stage not in stages:
            continue
        t0 = time.time()
        if stage == "prep":
            prepare(task, data, stats_dir, config, launcher, bpemodel)
        elif stage == "train":
            train(task, data, stats_dir, exp_dir, config, launcher, bpemodel, seed, extra_args=extra_args)
        for test_set in data.test_sets:
            out = f"{exp_dir}/decode_{decode_tag}/{test_set}"
            if stage == "decode":
                decode(task, data, exp_dir, test_set, out, launcher, model_file, nj, decode_config)
            elif stage == "score":
                sdir = f"{out}/{TASKS[task]['score_dir']}"
                score(task, f"{data.dir(test_set)}/text", f"{out}/text", sdir, labels)
                scores[test_set] = f"{sdir}/scores.json"
        seconds[stage] = round(time.time() - t0, 1)
    return {"seconds": seconds, "scores": scores}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", required=True, choices=sorted(TASKS), help="asr: ESPnet ASR; cls: ESPnet classification (SER)")
    p.add_argument("--config", required=True, help="ESPnet training config (e.g. benchmarks/mini_emo/conf/espnet_asr_conformer.yaml)")
    p.add_argument("--dumpdir", default="dump")
    p.add_argument("--train_set", required=True)
    p.add_argument("--valid_set", required=True)
    p.add_argument("--test_sets", default="", help="space-separated")
    p.add_argument("--stats_dir", required=True, help="token list and collect-stats output (shared by seeds)")
    p.add_argument("--exp_dir", required=True, help="ESPnet training dir")
    p.add_argument("--bpemodel", default=None, help="sentencepiece model (asr)")
    p.add_argument("--labels", default="neutral,happy,angry,sad", help="SER label set for scoring (cls)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train_args", default="", help="extra options for ESPnet's *_train, e.g. '--max_epoch 1'")
    p.add_argument("--decode_config", default=None, help="asr_inference config (asr)")
    p.add_argument("--inference_model", default=None, help="model file in EXP_DIR (default: asr valid.acc.ave.pth, cls valid.acc.best.pth)")
    p.add_argument("--inference_nj", type=int, default=2)
    p.add_argument("--decode_tag", default="bench")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {STAGES}")
    p.add_argument("--train_cmd", default=os.environ.get("train_cmd"), help="launcher (cmd.sh's train_cmd)")
    p.add_argument("--decode_cmd", default=os.environ.get("decode_cmd"), help="launcher (cmd.sh's decode_cmd)")
    return p


def main(argv=None) -> Dict:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s (espnet_baselines) %(levelname)s: %(message)s")
    data = Data(args.dumpdir, args.train_set, args.valid_set, args.test_sets.split())
    launcher = Launcher(args.train_cmd, args.decode_cmd)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise SystemExit(f"unknown stages {bad}; choose from {STAGES}")
    result = run(args.task, data, args.stats_dir, args.exp_dir, args.config, launcher, args.bpemodel, args.seed,
                 shlex.split(args.train_args), args.inference_nj, args.decode_config,
                 [x for x in args.labels.split(",") if x], stages, args.decode_tag, args.inference_model)
    logging.info("done: %s", json.dumps(result))
    return result


if __name__ == "__main__":
    main()
