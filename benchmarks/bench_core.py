#!/usr/bin/env python3
"""Core cost figures of HarmoniFuse on this machine (fusion/gate overhead, KV-cache decoding).

1. Training step time (forward + backward + Adam step) of the full model
   (``prompt_adaptive`` fusion + ``task_gate``) against the plain speech-LM
   baseline (``last_layer`` + no gate), same backbone, LLM and batch. A and B
   alternate within each repeat so machine drift hits both; the figure is the
   median over repeats of the per-repeat median step time.
2. Decoding throughput: batched greedy decoding with the KV cache against
   batch size 1 without a cache, same utterances and the same number of tokens
   (EOS disabled; the token agreement of the two is printed).

    python benchmarks/bench_core.py [--repeats 5] [--steps 10] [--config CONF]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))


def build(config: Path, bpemodel: str, **over):
    from conftest import write_config

    from espnet_harmonifuse.bin.common import load_train_args
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    torch.manual_seed(0)
    path = config.parent / f"bench_{over.get('fusion', 'x')}_{over.get('gate', 'x')}.yaml"
    return HarmoniFuseTask.build_model(load_train_args(str(write_config(path, bpemodel, **over))))


def toy_batch(n: int, seconds: float, text_len: int, task: int, vocab: int = 40):
    from conftest import toy_wave

    waves = [torch.from_numpy(toy_wave(i, seconds * (0.7 + 0.3 * (i % 4) / 3))) for i in range(n)]
    return dict(
        speech=torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
        speech_lengths=torch.tensor([len(w) for w in waves]),
        text=torch.randint(4, vocab, (n, text_len)),
        text_lengths=torch.full((n,), text_len),
        task_id=torch.full((n, 1), task),
    )


def step_times(model, batches, steps: int):
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        loss, _, _ = model(**batches[i % len(batches)])
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        if i >= 2:  # warm-up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_training(config, bpemodel, repeats, steps, batch_size):
    full = build(config, bpemodel, fusion="prompt_adaptive", gate="task_gate")
    base = build(config, bpemodel, fusion="last_layer", gate="none")
    batches = [toy_batch(batch_size, 2.5, 8, 0), toy_batch(batch_size, 2.5, 1, 1)]
    ratios, t_full, t_base = [], [], []
    for r in range(repeats):
        a = step_times(full, batches, steps)
        b = step_times(base, batches, steps)
        t_full.append(a)
        t_base.append(b)
        ratios.append(a / b)
        print(f"  repeat {r + 1}: full {a * 1000:.1f} ms/step, baseline {b * 1000:.1f} ms/step, ratio {a / b:.3f}")
    n_full = sum(p.numel() for p in full.parameters())
    n_base = sum(p.numel() for p in base.parameters())
    return statistics.median(t_full), statistics.median(t_base), statistics.median(ratios), n_full, n_base


def bench_decoding(config, bpemodel, repeats, n_utts, max_new_tokens):
    from conftest import write_config

    from espnet_harmonifuse.api import HarmoniFuse
    from espnet_harmonifuse.bin.common import load_train_args

    model = build(config, bpemodel).eval()
    hf = HarmoniFuse(model, load_train_args(str(write_config(config.parent / "bench_dec.yaml", bpemodel))))
    hf.model.eos_id = -1  # never stop early: every utterance decodes max_new_tokens tokens
    batch = toy_batch(n_utts, 2.0, 1, 0)
    speech, lengths = batch["speech"], batch["speech_lengths"]

    def batched():
        return [r["tokens"] for r in hf.decode_tensors(speech, lengths, "asr", max_new_tokens=max_new_tokens)]

    def one_by_one():
        out = []
        for i in range(n_utts):
            n = int(lengths[i])
            r = hf.decode_tensors(speech[i : i + 1, :n], lengths[i : i + 1], "asr", max_new_tokens=max_new_tokens, use_cache=False)
            out.append(r[0]["tokens"])
        return out

    a, b = batched(), one_by_one()
    same = sum(x == y for ra, rb in zip(a, b) for x, y in zip(ra, rb)) / sum(len(r) for r in a)
    # an untrained model has near-ties that float rounding may flip; tests check equality on a trained one
    print(f"  token agreement batched+cache vs single no-cache: {100 * same:.1f}% (random-init model)")
    speedups, t_b, t_s = [], [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        batched()
        t1 = time.perf_counter()
        one_by_one()
        t2 = time.perf_counter()
        t_b.append(t1 - t0)
        t_s.append(t2 - t1)
        speedups.append((t2 - t1) / (t1 - t0))
        print(f"  repeat {r + 1}: batched+cache {t1 - t0:.2f} s, single no-cache {t2 - t1:.2f} s, speed-up {speedups[-1]:.2f}x")
    return statistics.median(t_b), statistics.median(t_s), statistics.median(speedups)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--n_utts", type=int, default=16)
    p.add_argument("--max_new_tokens", type=int, default=24)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import tempfile

    import yaml

    from conftest import TINY_TASKS

    from espnet_harmonifuse.bin import tokenizer_train

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "text").write_text("u1 THE RED DOG SEES A SMALL BIRD\nu2 TWO GREEN CARS\n")
        (tmp / "conf.yaml").write_text(yaml.safe_dump({"tasks": TINY_TASKS}))
        tokenizer_train.main(["--config", str(tmp / "conf.yaml"), "--text", str(tmp / "text"), "--out_dir", str(tmp), "--vocab_size", "55"])
        bpemodel, config = str(tmp / "bpe.model"), tmp / "conf.yaml"
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tiny config of test/conftest.py")
        print("Training step, full (prompt_adaptive + task_gate) vs baseline (last_layer + none):")
        tf, tb, ratio, nf, nb = bench_training(config, bpemodel, args.repeats, args.steps, args.batch_size)
        print("Decoding, batched with KV cache vs batch size 1 without cache:")
        db, ds, speedup = bench_decoding(config, bpemodel, args.repeats, args.n_utts, args.max_new_tokens)
    print()
    print(f"| figure (median of {args.repeats} repeats) | value | target |")
    print("|---|---|---|")
    print(f"| step time full / baseline (batch {args.batch_size}, {nf} vs {nb} params) | {tf * 1000:.1f} / {tb * 1000:.1f} ms = {ratio:.3f}x | <= 1.15x |")
    print(f"| decoding {args.n_utts} utts x {args.max_new_tokens} tokens: single no-cache / batched cache | {ds:.2f} / {db:.2f} s = {speedup:.1f}x | >= 5x |")


if __name__ == "__main__":
    main()
