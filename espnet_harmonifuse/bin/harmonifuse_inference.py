#!/usr/bin/env python3
"""Decode with a trained HarmoniFuse model (``python -m espnet2.bin.harmonifuse_inference``).

Writes ESPnet-style ``text`` and ``score`` files and ``results.jsonl`` (one JSON
object per utterance) into ``--output_dir``. ``--config decode.yaml`` gives any of the
options below as YAML keys (``beam_size: 4``), as ESPnet's ``asr_inference --config``:
options on the command line win over the file, and an unknown key is an error.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from espnet2.utils import config_argparse
from tqdm import tqdm

DECODING_OPTIONS = ("batch_size", "beam_size", "max_new_tokens", "length_penalty", "prompt_index", "label_decoding")


def get_parser() -> argparse.ArgumentParser:
    p = config_argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--train_config", help="config.yaml written by training")
    p.add_argument("--model_file", help="a *.pth written by training")
    p.add_argument("--model_dir", help="instead of the two above: an exp dir, a packed .zip or a Hub model org/name")
    p.add_argument("--revision", help="with a Hub model: its branch, tag or commit (default: main)")
    p.add_argument(
        "--data_path_and_name_and_type",
        action="append",
        required=True,
        help="e.g. dump/raw/asr_test/wav.scp,speech,sound",
    )
    p.add_argument("--key_file", help="decode only these utterance ids (first column)")
    p.add_argument("--task", required=True, help="task name, e.g. asr or ser")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--beam_size", type=int, default=1, help="1: greedy")
    p.add_argument("--max_new_tokens", type=int, default=128)
    p.add_argument("--length_penalty", type=float, default=0.0)
    p.add_argument("--prompt_index", type=int, default=0, help="which prompt paraphrase to use")
    p.add_argument(
        "--label_decoding",
        default="score",
        choices=["score", "generate"],
        help="label tasks: score every label (never out of set) or generate freely",
    )
    p.add_argument("--ngpu", type=int, default=0, help="> 0: decode on the GPU (as --device cuda)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if --ngpu > 0, else cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="cast the weights and decode under autocast to this dtype (default: the model's own)")
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--log_level", default="INFO")
    return p


def streaming_loader(args: argparse.Namespace, preprocess, collate):
    """The utterances of ``--data_path_and_name_and_type`` (those of ``--key_file``) in batches, read as
    ESPnet's ``build_streaming_iterator`` reads them, without importing ESPnet's task machinery (5 s
    of every decoding job's start)."""
    from espnet2.train.iterable_dataset import IterableESPnetDataset
    from torch.utils.data import DataLoader

    dataset = IterableESPnetDataset(
        [tuple(x.split(",")) for x in args.data_path_and_name_and_type],
        float_dtype="float32",
        preprocess=preprocess,
        key_file=args.key_file,
    )
    if not dataset.has_name("speech"):
        sys.exit(f"--data_path_and_name_and_type must give the audio as 'speech' (PATH,speech,sound); got {dataset.names()}")
    return DataLoader(dataset, batch_size=args.batch_size, num_workers=args.num_workers, collate_fn=collate)


def main(cmd=None):
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    from espnet_harmonifuse.api import HarmoniFuse
    from espnet_harmonifuse.collate import PadCollate
    from espnet_harmonifuse.preprocessor import TaskPreprocessor

    logging.info("decoding options: " + " ".join(f"{k}={getattr(args, k)}" for k in DECODING_OPTIONS)
                 + (f" (config: {args.config})" if args.config else ""))
    device = args.device or ("cuda" if args.ngpu > 0 else "cpu")
    if not (args.model_dir or (args.train_config and args.model_file)):
        sys.exit("give --model_dir, or --train_config and --model_file")
    try:
        hf = HarmoniFuse.from_pretrained(args.model_dir or args.train_config, args.model_file, device, args.dtype,
                                         args.revision)
    except (FileNotFoundError, ValueError) as e:  # a path, a Hub model, a device or a dtype that is not there
        sys.exit(f"Error: {e}")
    index = hf.task_index(args.task)
    for path, _, _ in (x.split(",") for x in args.data_path_and_name_and_type):
        if not Path(path).is_file():
            sys.exit(f"data file '{path}' does not exist")
    loader = streaming_loader(args, TaskPreprocessor(index, hf.model.tasks[index], hf.tokenizer), PadCollate(not_sequence=["task_id"]))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for keys, batch in tqdm(loader, desc=f"decode {args.task}", mininterval=5):
        results = hf.decode_tensors(
            batch["speech"],
            batch["speech_lengths"],
            args.task,
            beam_size=args.beam_size,
            max_new_tokens=args.max_new_tokens,
            prompt_index=args.prompt_index,
            label_decoding=args.label_decoding,
            length_penalty=args.length_penalty,
        )
        for key, r in zip(keys, results):
            rows[key] = r
    with open(out / "text", "w", encoding="utf-8") as ft, open(out / "score", "w") as fs, open(
        out / "results.jsonl", "w", encoding="utf-8"
    ) as fj:
        for key in sorted(rows):
            r = rows[key]
            ft.write(f"{key} {r['text']}\n")
            fs.write(f"{key} {r['score']:.4f}\n")
            fj.write(json.dumps(dict(key=key, **r), ensure_ascii=False) + "\n")
    logging.info(f"decoded {len(rows)} utterances of task {args.task} into {out}")


if __name__ == "__main__":
    main()
