#!/usr/bin/env python3
"""What does each backbone layer know about each task? A linear probe per layer.

- **SER** (label tasks): each utterance's states of layer l are pooled over time (mean and standard
  deviation), a softmax classifier is fitted on the train set's pooled states, and its unweighted
  accuracy (mean per-class recall) is measured on the eval sets.
- **ASR** (``--asr_train_dir``): a linear CTC head per layer over the frame states (the model's own
  sentencepiece units, ``--bpemodel``), trained on the train set, greedy-decoded on the eval sets:
  the character error rate of its transcripts.

High UA / low CER in a layer means the task is linearly readable there; the prompt-adaptive fusion of
each task should lean on such layers. Works on a HarmoniFuse model and on an encoder pre-training
(``model: encoder_pretrain``) alike: only the backbone is probed.

    python -m espnet_harmonifuse.bin.probe_layers --model_dir exp/pretrain --model_file valid.loss.best.pth \
        --train_dir dump/raw/ser_train --eval_dir dump/raw/ser_test \
        --asr_train_dir dump/raw/asr_train --asr_eval_dir dump/raw/asr_test \
        --bpemodel data/token_list/bpe150/bpe.model --out_dir exp/pretrain/probe
"""

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_dir", required=True, help="exp dir or packed .zip")
    p.add_argument("--model_file", default=None)
    p.add_argument("--train_dir", help="SER: Kaldi dir (wav.scp, text = one label per utterance)")
    p.add_argument("--eval_dir", action="append", default=[], help="SER: Kaldi dir(s) to measure UA on")
    p.add_argument("--weight_decay", type=float, default=1e-2, help="L2 strength of the SER probe")
    p.add_argument("--asr_train_dir", help="ASR: Kaldi dir (wav.scp, text = transcript)")
    p.add_argument("--asr_eval_dir", action="append", default=[], help="ASR: Kaldi dir(s) to measure CER on")
    p.add_argument("--bpemodel", help="ASR: the sentencepiece model of the CTC units (the recipe's)")
    p.add_argument("--asr_epochs", type=int, default=20, help="ASR: epochs of the linear CTC heads")
    p.add_argument("--max_train", type=int, default=None,
                   help="fit each probe on this many training utterances, drawn at random (default: all)")
    p.add_argument("--out_dir", help="write probe.json and probe.png here")
    return p


def utterances(data_dir: str, limit: Optional[int] = None) -> List[Tuple[str, str]]:
    """``(uttid, wav path)`` of a Kaldi dir: all, or ``limit`` of them drawn at random (seed 0)."""
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    rows = list(read_pairs(f"{data_dir}/wav.scp"))
    if limit is not None and limit < len(rows):
        keep = sorted(torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:limit].tolist())
        rows = [rows[i] for i in keep]
    return rows


@torch.no_grad()
def pooled_states(backbone, data_dir: str, limit: Optional[int] = None) -> Tuple[torch.Tensor, List[str]]:
    """``(N, layers, 2 * D)`` mean and std over time of every layer, and the N labels."""
    from espnet_harmonifuse.api import load_wav
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    labels = dict(read_pairs(f"{data_dir}/text"))
    feats, ys = [], []
    for uid, path in utterances(data_dir, limit):
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


def probe(backbone, train_dir: str, eval_dirs: Sequence[str], weight_decay: float = 1e-2,
          max_train: Optional[int] = None) -> Dict[str, List[float]]:
    """``{eval_dir: [UA of layer 1, ..., UA of layer L]}``."""
    backbone.eval()
    x_tr, y_tr = pooled_states(backbone, train_dir, max_train)
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


@torch.no_grad()
def frame_states(backbone, data_dir: str, limit: Optional[int] = None) -> Tuple[List[torch.Tensor], List[str]]:
    """Per utterance ``(layers, T, D)`` states, and the transcripts."""
    from espnet_harmonifuse.api import load_wav
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    texts = dict(read_pairs(f"{data_dir}/text"))
    states, refs = [], []
    for uid, path in utterances(data_dir, limit):
        x = torch.from_numpy(load_wav(path)).unsqueeze(0)
        layers, lengths = backbone(x, torch.tensor([x.size(1)]))
        states.append(torch.stack([s[0, : int(lengths[0])] for s in layers]).float())
        refs.append(texts[uid])
    return states, refs


def _padded(states: Sequence[torch.Tensor], layer: int) -> Tuple[torch.Tensor, torch.Tensor]:
    seqs = [s[layer] for s in states]
    return torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True), torch.tensor([q.size(0) for q in seqs])


class _Standardize(torch.nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x):
        return (x - self.mean) / self.std


def asr_probe(backbone, train_dir: str, eval_dirs: Sequence[str], bpemodel: str, epochs: int = 20,
              batch_size: int = 32, max_train: Optional[int] = None) -> Dict[str, List[float]]:
    """``{eval_dir: [CER % of layer 1, ..., layer L]}``: a linear CTC head per layer."""
    import sentencepiece as spm

    from espnet_harmonifuse.scoring.asr_metrics import score_pairs, summarize
    from espnet_harmonifuse.utils.ctc import ctc_greedy

    backbone.eval()
    sp = spm.SentencePieceProcessor(model_file=bpemodel)
    blank = sp.get_piece_size()
    train, train_text = frame_states(backbone, train_dir, max_train)
    targets = [torch.tensor(sp.encode(t) or [0]) for t in train_text]
    evals = {d: frame_states(backbone, d) for d in eval_dirs}
    out: Dict[str, List[float]] = {d: [] for d in eval_dirs}
    gen = torch.Generator().manual_seed(0)
    for layer in range(train[0].size(0)):
        frames = torch.cat([s[layer] for s in train])
        mean, std = frames.mean(0), frames.std(0) + 1e-5  # standardised inputs, as the SER probe's
        head = torch.nn.Sequential(_Standardize(mean, std), torch.nn.Linear(frames.size(-1), blank + 1))
        opt = torch.optim.Adam(head.parameters(), lr=1e-2)
        with torch.enable_grad():
            for _ in range(epochs):
                for idx in torch.randperm(len(train), generator=gen).split(batch_size):
                    x, xl = _padded([train[i] for i in idx], layer)
                    y = [targets[i] for i in idx]
                    logp = torch.log_softmax(head(x), -1).transpose(0, 1)
                    loss = torch.nn.functional.ctc_loss(
                        logp, torch.nn.utils.rnn.pad_sequence(y, batch_first=True), xl,
                        torch.tensor([t.numel() for t in y]), blank=blank, zero_infinity=True)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        for d, (states, refs) in evals.items():
            hyps = []
            for st in states:
                hyps.append(sp.decode(ctc_greedy(head(st[layer]), blank)))
            pairs = [(str(i), r, h) for i, (r, h) in enumerate(zip(refs, hyps))]
            out[d].append(summarize(score_pairs(pairs, "char"))["err"])
    return out


def load_trained(model_dir: str, model_file: Optional[str] = None):
    """Any trained model (HarmoniFuse or an encoder pre-training, exp dir or zip), on the CPU, in eval
    mode; a pre-training's default model file is its selected epoch (it keeps no average)."""
    import yaml

    from espnet_harmonifuse.api import load_model

    if model_file is None and (Path(model_dir) / "valid.loss.best.pth").is_file():
        with open(Path(model_dir) / "config.yaml", encoding="utf-8") as f:
            if yaml.safe_load(f).get("model") == "encoder_pretrain":
                model_file = "valid.loss.best.pth"  # what a pre-training's exp dir has (not an average)
    return load_model(model_dir, model_file)[0].eval()


def load_backbone(model_dir: str, model_file: Optional[str] = None):
    """The backbone of any trained model (see :func:`load_trained`)."""
    return load_trained(model_dir, model_file).backbone


def table(ser: Dict[str, List[float]], asr: Dict[str, List[float]]) -> List[str]:
    """Markdown: one row per layer, a UA column per SER eval set and a CER column per ASR one, and
    the best layer of each."""
    cols = [(f"SER UA % ({Path(d).name})", [100 * v for v in r], max) for d, r in ser.items()]
    cols += [(f"ASR CER % ({Path(d).name})", r, min) for d, r in asr.items()]
    n = len(cols[0][1])
    lines = ["| layer | " + " | ".join(c[0] for c in cols) + " |", "|---:|" + "---:|" * len(cols)]
    lines += [f"| {i + 1} | " + " | ".join(f"{c[1][i]:.1f}" for c in cols) + " |" for i in range(n)]
    best = [str(1 + c[1].index(c[2](c[1]))) for c in cols]
    lines.append("| best layer | " + " | ".join(best) + " |")
    return lines


def plot(ser: Dict[str, List[float]], asr: Dict[str, List[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for d, r in ser.items():
        ax.plot(range(1, len(r) + 1), [100 * v for v in r], "o-", label=f"SER UA ({Path(d).name})")
    for d, r in asr.items():
        ax.plot(range(1, len(r) + 1), [100 - v for v in r], "s--", label=f"ASR 100 - CER ({Path(d).name})")
    ax.set_xlabel("layer")
    ax.set_ylabel("%")
    ax.set_title("linear probe per layer (higher is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(cmd=None) -> Dict[str, Dict[str, List[float]]]:
    args = get_parser().parse_args(cmd)
    if not (args.train_dir and args.eval_dir) and not (args.asr_train_dir and args.asr_eval_dir and args.bpemodel):
        raise SystemExit("probe_layers: give --train_dir and --eval_dir (SER), or --asr_train_dir, --asr_eval_dir "
                         "and --bpemodel (ASR), or both")
    torch.manual_seed(0)
    backbone = load_backbone(args.model_dir, args.model_file)
    ser = probe(backbone, args.train_dir, args.eval_dir, args.weight_decay, args.max_train) if args.train_dir else {}
    asr = asr_probe(backbone, args.asr_train_dir, args.asr_eval_dir, args.bpemodel, args.asr_epochs,
                    max_train=args.max_train) if args.asr_train_dir else {}
    print("\n".join(table(ser, asr)))
    result = {"ser_ua": ser, "asr_cer": asr}
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "probe.md").write_text("\n".join(table(ser, asr)) + "\n")
        plot(ser, asr, out / "probe.png")
    return result


if __name__ == "__main__":
    main()
