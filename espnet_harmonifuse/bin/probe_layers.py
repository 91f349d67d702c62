#!/usr/bin/env python3
"""What does each backbone layer know about a label task? A linear probe per layer.

Each utterance's states of layer l are pooled over time (mean and standard deviation), a
softmax classifier is fitted on the train set's pooled states, and its unweighted accuracy
(mean per-class recall) is measured on the eval sets. High UA in a layer means the label is
linearly readable there; the prompt-adaptive fusion of a label task should lean on such layers.

    python -m espnet_harmonifuse.bin.probe_layers --model_dir exp/train --train_dir dump/raw/ser_train \
        --eval_dir dump/raw/ser_dev --eval_dir dump/raw/ser_test [--model_file valid.acc.ave.pth]
"""

import argparse
import json
from typing import Dict, List, Sequence, Tuple

import torch


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="exp dir or packed .zip")
    p.add_argument("--model_file", default=None)
    p.add_argument("--train_dir", required=True, help="Kaldi dir (wav.scp, text = one label per utterance)")
    p.add_argument("--eval_dir", action="append", required=True, help="Kaldi dir(s) to measure UA on")
    p.add_argument("--weight_decay", type=float, default=1e-2, help="L2 strength of the probe")
    return p


@torch.no_grad()
def pooled_states(backbone, data_dir: str) -> Tuple[torch.Tensor, List[str]]:
    """``(N, layers, 2 * D)`` mean and std over time of every layer, and the N labels."""
    from espnet_harmonifuse.api import load_wav
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    labels = dict(read_pairs(f"{data_dir}/text"))
    feats, ys = [], []
    for uid, path in read_pairs(f"{data_dir}/wav.scp"):
        x = torch.from_numpy(load_wav(path)).unsqueeze(0)
        states, _ = backbone(x, torch.tensor([x.size(1)]))
        feats.append(torch.stack([torch.cat([s[0].mean(0), s[0].std(0)]) for s in states]))
        ys.append(labels[uid])
    return torch.stack(feats).float(), ys


def unweighted_accuracy(pred: Sequence[int], ref: Sequence[int]) -> float:
    classes = sorted(set(ref))
    recalls = [sum(p == r for p, r in zip(pred, ref) if r == c) / sum(r == c for r in ref) for c in classes]
    return sum(recalls) / len(recalls)


def fit_probe(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, steps: int = 300):
    """A standardised softmax regression fitted with L-BFGS; returns a predict function."""
    mean, std = x.mean(0), x.std(0) + 1e-5
    lin = torch.nn.Linear(x.size(1), n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    z = (x - mean) / std

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(z), y) + weight_decay * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return lambda q: lin((q - mean) / std).argmax(-1)


def probe(backbone, train_dir: str, eval_dirs: Sequence[str], weight_decay: float = 1e-2) -> Dict[str, List[float]]:
    """``{eval_dir: [UA of layer 1, ..., UA of layer L]}``."""
    backbone.eval()
    x_tr, y_tr = pooled_states(backbone, train_dir)
    classes = sorted(set(y_tr))
    y_idx = torch.tensor([classes.index(y) for y in y_tr])
    evals = {d: pooled_states(backbone, d) for d in eval_dirs}
    out: Dict[str, List[float]] = {d: [] for d in eval_dirs}
    for layer in range(x_tr.size(1)):
        predict = fit_probe(x_tr[:, layer], y_idx, len(classes), weight_decay)
        for d, (x, ys) in evals.items():
            unknown = sorted(set(ys) - set(classes))
            if unknown:
                raise ValueError(f"{d}/text has labels {unknown} that {train_dir}/text never has")
            out[d].append(unweighted_accuracy(predict(x[:, layer]).tolist(), [classes.index(y) for y in ys]))
    return out


def main(cmd=None) -> Dict[str, List[float]]:
    args = get_parser().parse_args(cmd)
    from espnet_harmonifuse.api import HarmoniFuse

    torch.manual_seed(0)
    hf = HarmoniFuse.from_pretrained(args.model_dir, args.model_file)
    result = probe(hf.model.backbone, args.train_dir, args.eval_dir, args.weight_decay)
    print("| layer | " + " | ".join(f"UA {d}" for d in result) + " |")
    print("|---:|" + "---:|" * len(result))
    for layer in range(len(next(iter(result.values())))):
        print(f"| {layer + 1} | " + " | ".join(f"{100 * r[layer]:.1f}" for r in result.values()) + " |")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
