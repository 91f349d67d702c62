#!/usr/bin/env python3
"""Greedy CTC CER/WER of an encoder pre-training (``model: encoder_pretrain`` or a HarmoniFuse model
with ``ctc_weight`` > 0) on Kaldi data dirs, split into in- and out-of-vocabulary words when
``--train_text`` is given: how well the encoder alone spells, before any LM. Run from the recipe dir:

    python ../../../benchmarks/pretrain_ctc_cer.py --model_dir exp/pretrain \
        --bpemodel data/token_list/bpe150/bpe.model --eval_dir dump/raw/asr_test --train_text dump/raw/asr_train/text
"""

import argparse
import json

import torch


@torch.no_grad()
def ctc_hyps(model, data_dir, sp, limit=None):
    from espnet_harmonifuse.api import load_wav
    from espnet_harmonifuse.bin.probe_layers import utterances
    from espnet_harmonifuse.data.kaldi_dir import read_pairs
    from espnet_harmonifuse.utils.ctc import ctc_greedy

    refs = dict(read_pairs(f"{data_dir}/text"))
    task = torch.tensor([model.ctc_task_ids[0]])
    blank = model.ctc_head.out_features - 1
    rows = []
    for uid, path in utterances(data_dir, limit):
        x = torch.from_numpy(load_wav(path)).unsqueeze(0)
        _, extra = model.select(x, torch.tensor([x.size(1)]), task, prompt_index=0)
        logits = model.ctc_head(extra["selected"][0, : int(extra["selected_lengths"][0])])
        rows.append((uid, refs[uid], sp.decode(ctc_greedy(logits, blank))))
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True)
    p.add_argument("--model_file", default=None)
    p.add_argument("--bpemodel", required=True)
    p.add_argument("--eval_dir", action="append", required=True)
    p.add_argument("--train_text", action="append", default=[])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--show", type=int, default=3, help="print this many hypotheses per eval dir")
    args = p.parse_args()
    import sentencepiece as spm

    from espnet_harmonifuse.bin.probe_layers import load_trained
    from espnet_harmonifuse.data.kaldi_dir import read_pairs
    from espnet_harmonifuse.scoring.asr_metrics import score_pairs, summarize
    from espnet_harmonifuse.scoring.vocab_split import split_rates, vocabulary

    torch.set_num_threads(2)
    model = load_trained(args.model_dir, args.model_file)
    if getattr(model, "ctc_head", None) is None:
        p.error(f"{args.model_dir} has no CTC head (its model_conf.ctc_weight is 0): nothing to decode greedily")
    sp = spm.SentencePieceProcessor(model_file=args.bpemodel)
    vocab = vocabulary(t for f in args.train_text for _, t in read_pairs(f)) if args.train_text else None
    out = {}
    for d in args.eval_dir:
        rows = ctc_hyps(model, d, sp, args.limit)
        for r in rows[: args.show]:
            print(f"  REF {r[1]}\n  HYP {r[2]}")
        res = {"cer": summarize(score_pairs(rows, "char"))["err"], "wer": summarize(score_pairs(rows, "word"))["err"]}
        if vocab is not None:
            res["by_vocabulary"] = split_rates(score_pairs(rows, "word"), vocab)
        out[d] = res
        print(d, json.dumps(res), flush=True)
    return out


if __name__ == "__main__":
    main()
