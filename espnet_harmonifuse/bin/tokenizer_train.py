#!/usr/bin/env python3
"""Train the sentencepiece model of a from-scratch LLM on the targets, prompts and labels.

The model has exactly ``--vocab_size`` pieces (sentencepiece's hard limit, as ESPnet's asr.sh
trains it): a size the text does not allow stops with the sizes it does allow.
"""

import argparse
import logging
import re
from pathlib import Path
from typing import Sequence

from espnet_harmonifuse.bin.common import config_tasks, read_config
from espnet_harmonifuse.data.kaldi_dir import read_pairs
from espnet_harmonifuse.task_spec import parse_tasks
from espnet_harmonifuse.utils.config import ConfigError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--config", help="training config (its tasks' prompts and labels are included)")
    p.add_argument("--text", action="append", required=True, help="Kaldi text file (repeatable)")
    p.add_argument("--out_dir", required=True, help="writes bpe.model, bpe.vocab and tokens.txt here")
    p.add_argument("--vocab_size", type=int, default=200)
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char", "word"])
    p.add_argument("--character_coverage", type=float, default=1.0)
    return p


def vocab_size_error(message: str, asked: int, texts: Sequence[str]) -> str:
    """sentencepiece's refusal of ``asked`` pieces as one message with the sizes allowed and the fix."""
    where = (f"tokenizer_train: --vocab_size {asked} does not fit the text of {', '.join(texts)} "
             "(+ the config's prompts and labels)")
    small = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    large = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message)
    if small:
        what, n, bound = "too small, it needs at least", small.group(1), "more"
    elif large:
        what, n, bound = "too large, this text allows at most", large.group(1), "less"
    else:
        return f"{where}: sentencepiece: {message.strip()}"
    detail = " (its characters + 4 special pieces)" if small else ""
    return f"{where}: {what} {n} pieces{detail}. Fix: --nbpe {n} or {bound} (harmonifuse.sh; --vocab_size here)"


def main(cmd=None):
    import sentencepiece as spm

    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    try:  # the YAML alone: no ESPnet task, no torch
        tasks = parse_tasks(config_tasks(read_config(args.config)))
    except (FileNotFoundError, ConfigError) as e:
        raise SystemExit(f"tokenizer_train: {e}") from None
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for path in args.text:
        if not Path(path).is_file():
            raise SystemExit(f"tokenizer_train: text file '{path}' does not exist (run the data stages first)")
        lines += [text for _, text in read_pairs(path) if text]
    for spec in tasks:
        lines += spec.prompts + spec.labels
    corpus = out / "train_text.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
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
            minloglevel=2,
        )
    except RuntimeError as e:
        raise SystemExit(vocab_size_error(str(e), args.vocab_size, args.text)) from None
    sp = spm.SentencePieceProcessor(model_file=str(out / "bpe.model"))
    (out / "tokens.txt").write_text(
        "\n".join(sp.id_to_piece(i) for i in range(sp.get_piece_size())) + "\n", encoding="utf-8"
    )
    logging.info(f"wrote {out / 'bpe.model'} ({sp.get_piece_size()} pieces from {len(lines)} lines)")


if __name__ == "__main__":
    main()
