#!/usr/bin/env python3
"""Can the mini_emo Conformer learn at all? Character CTC on the ASR corpus, SpecAugment placed
before or after the per-frame normalisation, or none.

This is the check behind the mini_emo README's diagnosis: with SpecAugment on raw log-mels
(masked with 0, then normalised) the model stays near 60 % dev CER; without it, it reaches about
10 % in 6 epochs. Run from egs2/mini_emo/harmonifuse1 after stage 3:

    python ../../../benchmarks/ctc_specaug_check.py --specaug none --epochs 6
    python ../../../benchmarks/ctc_specaug_check.py --specaug before --epochs 6
    python ../../../benchmarks/ctc_specaug_check.py --specaug after --epochs 6

Each epoch prints the train CTC loss and the greedy dev CER (about 35 s per epoch on 1 thread).
"""

import argparse
import random
import time

import soundfile as sf
import torch

from espnet_harmonifuse.backbone.conformer import ConformerBackbone
from espnet_harmonifuse.scoring.asr_metrics import align
from espnet_harmonifuse.utils.ctc import ctc_greedy

SPECAUG = dict(apply_time_warp=False, apply_freq_mask=True, freq_mask_width_range=[0, 20], num_freq_mask=2,
               apply_time_mask=True, time_mask_width_range=[0, 20], num_time_mask=2)


def load(data_dir):
    wav = dict(line.split() for line in open(f"{data_dir}/wav.scp"))
    txt = dict(line.strip().split(" ", 1) for line in open(f"{data_dir}/text"))
    return [(torch.tensor(sf.read(wav[u], dtype="float32")[0]), txt[u]) for u in sorted(wav)]


def batches(data, size, shuffle):
    order = sorted(range(len(data)), key=lambda i: len(data[i][0]))
    groups = [order[i: i + size] for i in range(0, len(order), size)]
    if shuffle:
        random.shuffle(groups)
    for g in groups:
        waves = [data[i][0] for i in g]
        yield (torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), torch.tensor([len(w) for w in waves]),
               [data[i][1] for i in g])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", default="dump/raw")
    p.add_argument("--specaug", choices=["none", "before", "after"], default="none")
    p.add_argument("--input_layer", default="conv2d", help="conv2d (4x) suits character CTC; conv2d6 is 6x")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    train, dev = load(f"{args.data_root}/asr_train"), load(f"{args.data_root}/asr_dev")
    chars = sorted(set("".join(t for _, t in train)))
    blank = len(chars)
    bb = ConformerBackbone(n_mels=40, normalize="none", output_size=128, linear_units=512, num_blocks=6,
                           input_layer=args.input_layer, encoder_conf={"cnn_module_kernel": 15})
    specaug = None
    if args.specaug != "none":
        from espnet2.asr.specaug.specaug import SpecAug

        specaug = SpecAug(**SPECAUG)
    head = torch.nn.Linear(128, blank + 1)
    params = list(bb.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    step, warmup = 0, 300

    def log_probs(x, n, training):
        feats, lens = bb.frontend(x[:, : int(n.max())], n)
        if training and args.specaug == "before":
            feats, lens = specaug(feats, lens)
        feats = torch.nn.functional.layer_norm(feats, feats.shape[-1:])
        if training and args.specaug == "after":
            feats, lens = specaug(feats, lens)
        out, olens, _ = bb.encoder(feats, lens)
        return torch.log_softmax(head(out), -1), olens

    for epoch in range(args.epochs):
        bb.train()
        t0, total, nb = time.time(), 0.0, 0
        for x, n, ys in batches(train, 16, True):
            for g in opt.param_groups:
                g["lr"] = args.lr * min((step + 1) / warmup, (warmup / (step + 1)) ** 0.5)
            lp, olens = log_probs(x, n, True)
            tgt = [torch.tensor([chars.index(c) for c in y]) for y in ys]
            loss = torch.nn.functional.ctc_loss(lp.transpose(0, 1), torch.cat(tgt), olens,
                                                torch.tensor([len(t) for t in tgt]), blank=blank,
                                                reduction="sum", zero_infinity=True) / len(ys)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            step += 1
            total, nb = total + loss.item(), nb + 1
        bb.eval()
        errors = length = 0
        with torch.no_grad():
            for x, n, ys in batches(dev, 16, False):
                lp, olens = log_probs(x, n, False)
                for i, y in enumerate(ys):
                    hyp = [chars[k] for k in ctc_greedy(lp[i, : olens[i]], blank)]
                    errors += sum(op != "C" for op, _, _ in align(list(y), hyp))
                    length += len(y)
        print(f"epoch {epoch + 1}: train CTC {total / nb:.2f}  dev CER {100 * errors / length:.1f} %  "
              f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
