#!/usr/bin/env python3
"""Does the model use the audio? Teacher-forced loss with real, shuffled and all-zero speech.

If the loss with zero (or another utterance's) speech equals the real-speech loss, the LLM
has learned the targets' language model and ignores the speech encoder.

    python -m espnet_harmonifuse.bin.probe_speech --model_dir exp/train --task asr \
        --data_dir dump/raw/asr_dev [--model_file 7epoch.pth] [--num_utts 32]
"""

import argparse
import json
from typing import Dict

import torch


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="exp dir or packed .zip")
    p.add_argument("--model_file", default=None)
    p.add_argument("--task", required=True)
    p.add_argument("--data_dir", required=True, help="Kaldi-style dir with wav.scp and text")
    p.add_argument("--num_utts", type=int, default=32)
    return p


@torch.no_grad()
def probe(hf, task: str, data_dir: str, num_utts: int) -> Dict[str, Dict[str, float]]:
    """``{condition: {loss, acc}}`` for conditions real, shuffled and zero speech."""
    from espnet_harmonifuse.api import load_wav
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    index = hf.task_index(task)
    wavs = list(read_pairs(f"{data_dir}/wav.scp"))[:num_utts]
    texts = dict(read_pairs(f"{data_dir}/text"))
    waves = [torch.from_numpy(load_wav(path)) for _, path in wavs]
    ids = [torch.tensor(hf.tokenizer.encode(texts[uid])) for uid, _ in wavs]
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    text = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1)
    text_lengths = torch.tensor([len(i) for i in ids])
    task_id = torch.full((len(wavs),), index)
    perm = torch.roll(torch.arange(len(wavs)), 1)
    conditions = {
        "real": (speech, lengths),
        "shuffled": (speech[perm], lengths[perm]),
        "zero": (torch.zeros_like(speech), lengths),
    }
    hf.model.eval()
    out = {}
    for name, (x, n) in conditions.items():
        _, stats, _ = hf.model(x, n, text, text_lengths, task_id)
        out[name] = {k: float(stats[f"{k}_{task}"]) for k in ("loss", "acc")}
    return out


def main(cmd=None) -> Dict[str, Dict[str, float]]:
    args = get_parser().parse_args(cmd)
    from espnet_harmonifuse.api import HarmoniFuse

    hf = HarmoniFuse.from_pretrained(args.model_dir, args.model_file)
    result = probe(hf, args.task, args.data_dir, args.num_utts)
    for name, r in result.items():
        print(f"{name:9s} speech: loss_{args.task}={r['loss']:.4f} acc_{args.task}={r['acc']:.3f}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
