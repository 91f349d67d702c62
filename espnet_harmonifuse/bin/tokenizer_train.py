#!/usr/bin/env python3
"""Train the sentencepiece model of a from-scratch LLM on the targets, prompts and labels."""

import argparse
import logging
from pathlib import Path

from espnet_harmonifuse.bin.common import load_train_args
from espnet_harmonifuse.data.kaldi_dir import read_pairs
from espnet_harmonifuse.task_spec import parse_tasks


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", help="training config (its tasks' prompts and labels are included)")
    p.add_argument("--text", action="append", required=True, help="Kaldi text file (repeatable)")
    p.add_argument("--out_dir", required=True, help="writes bpe.model, bpe.vocab and tokens.txt here")
    p.add_argument("--vocab_size", type=int, default=200)
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--character_coverage", type=float, default=1.0)
    return p


def main(cmd=None):
    import sentencepiece as spm

    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    tasks = parse_tasks(load_train_args(args.config).tasks)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in args.text:
        if not Path(path).is_file():
            raise FileNotFoundError(f"text file '{path}' does not exist (run the data stages first)")
        lines += [text for _, text in read_pairs(path) if text]
    for spec in tasks:
        lines += spec.prompts + spec.labels
    corpus = out / "train_text.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(out / "bpe"),
        vocab_size=args.vocab_size,
        model_type=args.model_type,
        character_coverage=args.character_coverage,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_file=str(out / "bpe.model"))
    (out / "tokens.txt").write_text(
        "\n".join(sp.id_to_piece(i) for i in range(sp.get_piece_size())) + "\n", encoding="utf-8"
    )
    logging.info(f"wrote {out / 'bpe.model'} ({sp.get_piece_size()} pieces from {len(lines)} lines)")


if __name__ == "__main__":
    main()
