#!/usr/bin/env python3
"""A larger mini_emo dev set, to choose between configurations that the 100-utterance dev sets
cannot tell apart (one dev utterance is 1 UA point; the seed spread of dev UA is 4-5 points).

    cd egs2/mini_emo/harmonifuse1
    PYTHONPATH=../../.. python3 -m benchmarks.sweeps.extra_dev --n 400 --suffix x   # data/asr_devx, data/ser_devx

The utterances come from the dev voices only (never seen in training, not the test voices), with
the corpus's own rules (espnet_harmonifuse.corpus.mini_emo), from a seed of their own; any
utterance whose sentence is already in one of the recipe's data dirs (train, dev, test, ASR or
SER) is left out, so the sentence-disjointness of the corpus holds. The sets are formatted into
``dump/raw`` here (not by run.sh's stage 2: it formats the training sets again too, under any
training that reads them). Decode them like any test set, e.g.

    ./run.sh --stage 7 --stop_stage 8 --expdir exp/dev_sweep --model_tag default_ser2 \
        --inference_tag devx --asr_test_sets asr_devx --ser_test_sets ser_devx
"""

import argparse
import os
from collections import Counter
from pathlib import Path
from typing import List, Optional, Set

from espnet_harmonifuse.corpus.mini_emo import CORPORA, plan_corpus, render_all, write_part_dir
from espnet_harmonifuse.data.format_data import main as format_data


def sentences_in(data_dir: Path) -> Set[str]:
    """Every sentence already used: the ``text`` of the ASR dirs, the ``transcript`` of the SER ones."""
    out: Set[str] = set()
    for d in data_dir.iterdir():
        for name in ("text", "transcript") if d.name.startswith("asr_") else ("transcript",):
            f = d / name
            if d.is_dir() and f.is_file():
                out.update(ln.split(" ", 1)[1] for ln in f.read_text().splitlines() if " " in ln)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=400, help="utterances per task before the overlap filter")
    p.add_argument("--suffix", default="x", help="the sets are asr_dev<suffix> and ser_dev<suffix>")
    p.add_argument("--seed", type=int, default=1000, help="corpus seed (the recipe's corpus uses 0)")
    p.add_argument("--data_dir", default="data")
    p.add_argument("--wav_dir", default="downloads/mini_emo_extra_dev")
    p.add_argument("--dump_dir", default="dump/raw", help="formatted sets go to <dump_dir>/<set>")
    p.add_argument("--labels", default="neutral,happy,angry,sad", help="the SER label set (run.sh's --ser_labels)")
    p.add_argument("--nj", type=int, default=2)
    args = p.parse_args(argv)
    data = Path(args.data_dir)
    used = sentences_in(data)
    sizes = {f"{c}_{s}": 0 for c in CORPORA for s in ("train", "test")}
    sizes.update({f"{c}_dev": args.n for c in CORPORA})
    plan = plan_corpus(args.wav_dir, args.seed, sizes)
    for corpus in CORPORA:
        specs = [s for s in plan[f"{corpus}_dev"] if s.words not in used]
        render_all(specs, args.nj)
        out = data / f"{corpus}_dev{args.suffix}"
        uid = {s.uttid: s.uttid.replace(f"-{corpus}_dev_", f"-{corpus}_dev{args.suffix}_") for s in specs}
        write_part_dir(str(out), specs, corpus == "ser", uid)
        labels = dict(Counter(s.label for s in specs)) if corpus == "ser" else {}
        print(f"{out}: {len(specs)} utterances ({args.n - len(specs)} left out: sentence already used) {labels}")
        fmt = ["--src", str(out), "--dst", str(Path(args.dump_dir) / out.name), "--nj", str(args.nj), "--no_progress"]
        if format_data(fmt + (["--labels", args.labels] if corpus == "ser" else [])) != 0:
            return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
