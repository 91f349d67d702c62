#!/usr/bin/env python3
"""Score ASR hypotheses: WER/CER, sclite-style result.txt and scores.json.

Usage:
    python -m espnet_harmonifuse.bin.score_asr --ref REF_TEXT --hyp HYP_TEXT \
        --out_dir DIR [--keep_case] [--keep_punct] [--utt2spk UTT2SPK] [--train_text TEXT ...]
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

from espnet_harmonifuse.bin.common import parse_with_logging, scoring_parser
from espnet_harmonifuse.scoring.score_files import score_asr_files


def get_parser() -> argparse.ArgumentParser:
    p = scoring_parser(__doc__)
    p.add_argument("--keep_case", action="store_true",
                   help="Do not upper-case before scoring")
    p.add_argument("--keep_punct", action="store_true",
                   help="Do not remove punctuation before scoring")
    p.add_argument("--utt2spk", default=None,
                   help="Optional utt2spk for per-speaker summary rows")
    p.add_argument("--train_text", action="append", default=[],
                   help="training transcripts (Kaldi text, repeatable): also score the words in and out of "
                        "their vocabulary (scores.json: by_vocabulary)")
    return p


def main(cmd: Optional[List[str]] = None) -> Dict[str, object]:
    args = parse_with_logging(get_parser(), cmd)
    return score_asr_files(
        args.ref, args.hyp, args.out_dir, keep_case=args.keep_case,
        remove_punct=not args.keep_punct, utt2spk=args.utt2spk, train_text=args.train_text,
    )


if __name__ == "__main__":
    main()
