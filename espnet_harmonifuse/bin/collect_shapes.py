#!/usr/bin/env python3
"""Write ESPnet shape files (speech samples, target tokens) for task data dirs.

``--data_dir``, ``--task`` and ``--out_dir`` may be repeated (paired by position): one process does
every set, so the recipe pays the start-up (imports, tokenizer) once.
"""

import argparse
import logging
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from espnet_harmonifuse.bin.common import config_tasks, config_tokenizer, read_config
from espnet_harmonifuse.data.kaldi_dir import read_pairs
from espnet_harmonifuse.preprocessor import TaskPreprocessor
from espnet_harmonifuse.task_spec import parse_tasks


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", required=True, help="training config")
    p.add_argument("--data_dir", required=True, action="append", help="Kaldi-style dir with wav.scp and text")
    p.add_argument("--task", required=True, action="append", help="task name as declared in the config's tasks")
    p.add_argument("--out_dir", required=True, action="append", help="writes speech_shape and text_shape here")
    p.add_argument("--bpemodel", default=None, help="override the config's bpemodel")
    return p


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    if not len(args.data_dir) == len(args.task) == len(args.out_dir):
        raise ValueError("give --data_dir, --task and --out_dir the same number of times (they pair by position)")
    cfg = read_config(args.config)  # the YAML alone: no ESPnet task, no torch (10 s of imports)
    tasks = parse_tasks(config_tasks(cfg))
    tokenizer = config_tokenizer(cfg, args.bpemodel)
    for data_dir, task, out_dir in zip(args.data_dir, args.task, args.out_dir):
        write_shapes(args.config, tasks, tokenizer, Path(data_dir), task, Path(out_dir))


def write_shapes(config: str, tasks, tokenizer, data: Path, task: str, out: Path) -> None:
    names = [t.name for t in tasks]
    if task not in names:
        raise ValueError(f"--task {task} is not declared in {config} (tasks: {names})")
    index = names.index(task)
    text_file = data / "text"
    pre = TaskPreprocessor(index, tasks[index], tokenizer, str(text_file))
    texts = dict(read_pairs(str(text_file)))
    wavs = dict(read_pairs(str(data / "wav.scp")))
    if set(texts) != set(wavs):
        only = sorted(set(texts) ^ set(wavs))[:3]
        raise ValueError(
            f"{data}: wav.scp and text have different utterance ids (e.g. {only}); "
            "run the format stage (espnet_harmonifuse.data.format_data) which reconciles them"
        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "speech_shape", "w") as fs, open(out / "text_shape", "w") as ft:
        for uid in tqdm(sorted(wavs), desc=f"shapes {data.name}", mininterval=2):
            frames = sf.info(wavs[uid]).frames
            tokens = pre(uid, {"text": texts[uid]})["text"]
            fs.write(f"{uid} {frames}\n")
            ft.write(f"{uid} {len(tokens) + 1}\n")
    logging.info(f"wrote {out}/speech_shape and text_shape for {len(wavs)} utterances")


if __name__ == "__main__":
    main()
