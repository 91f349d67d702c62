#!/usr/bin/env python3
"""Training step time of the mini_emo model with and without the frozen-backbone state cache.

``model_conf.cache_backbone_states`` keeps each utterance's backbone states after the first time
it is seen. This measures what a cache hit saves: the step time (forward + backward + AdamW step)
of the recipe's model (``conf/train.yaml``: frozen 6-block Conformer, fusion, gate, projector,
2-layer LM) without the cache, and with a warm cache (every utterance already seen, as from the
second epoch on). Batches alternate ASR (16 x 1.9 s, 8 target tokens) and SER (16 x 3.0 s, one
label), the corpus's mean durations. Weights are random: the cost does not depend on them. The two
settings alternate within each repeat, so drift of a shared machine hits both; the figure is the
median over repeats of the per-repeat median step time.

    python benchmarks/bench_state_cache.py [--repeats 5] [--steps 10] [--threads 2]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_emo" / "harmonifuse1"
sys.path.insert(0, str(REPO / "test"))


def build(config: Path, bpemodel: str, cache: bool):
    import yaml

    from espnet_harmonifuse.bin.common import load_train_args
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    conf = yaml.safe_load(config.read_text())
    conf["bpemodel"] = bpemodel
    conf.setdefault("model_conf", {})["cache_backbone_states"] = cache
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.yaml"
        path.write_text(yaml.safe_dump(conf))
        torch.manual_seed(0)
        return HarmoniFuseTask.build_model(load_train_args(str(path))).train()


def batches(batch_size: int):
    from conftest import toy_wave

    out = []
    for task, seconds, text_len in ((0, 1.9, 8), (1, 3.0, 1)):
        waves = [torch.from_numpy(toy_wave(100 * task + i, seconds * (0.9 + 0.2 * i / batch_size))) for i in range(batch_size)]
        out.append(dict(
            speech=torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
            speech_lengths=torch.tensor([len(w) for w in waves]),
            text=torch.randint(4, 100, (batch_size, text_len)),
            text_lengths=torch.full((batch_size,), text_len),
            task_id=torch.full((batch_size, 1), task),
        ))
    return out


def step_time(model, opt, data, steps: int) -> float:
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        loss, _, _ = model(**data[i % len(data)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=RECIPE / "conf" / "train.yaml")
    p.add_argument("--bpemodel", default=str(RECIPE / "data" / "token_list" / "bpe150" / "bpe.model"),
                   help="the recipe's tokenizer (stage 4); any sentencepiece model will do")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not Path(args.bpemodel).is_file():
        sys.exit(f"{args.bpemodel} not found: run the recipe's stage 4 (./run.sh --stage 1 --stop_stage 4) or pass --bpemodel")
    data = batches(args.batch_size)
    torch.set_num_threads(args.threads)  # after test/conftest.py (imported by batches), which sets 1
    plain, cached = build(args.config, args.bpemodel, False), build(args.config, args.bpemodel, True)
    opts = [torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-4) for m in (plain, cached)]
    for d in data:  # warm the cache: every utterance seen once, as after the first epoch
        cached(**d)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.config}; "
          f"cache: {len(cached.state_cache)} utterances, {cached.state_cache.nbytes / 1024**2:.1f} MB")
    t_plain, t_cached, ratios = [], [], []
    for r in range(args.repeats):
        a = step_time(plain, opts[0], data, args.steps)
        b = step_time(cached, opts[1], data, args.steps)
        t_plain.append(a), t_cached.append(b), ratios.append(a / b)
        print(f"  repeat {r + 1}: no cache {a * 1000:.0f} ms/step, warm cache {b * 1000:.0f} ms/step, speed-up {a / b:.2f}x")
    assert cached.state_cache.misses == 2 * args.batch_size  # every timed step was a hit
    print()
    print(f"| figure (median of {args.repeats} repeats, batch {args.batch_size}) | value |")
    print("|---|---|")
    print(f"| training step, no cache | {statistics.median(t_plain) * 1000:.0f} ms |")
    print(f"| training step, warm cache | {statistics.median(t_cached) * 1000:.0f} ms |")
    print(f"| speed-up | {statistics.median(ratios):.2f}x |")


if __name__ == "__main__":
    main()
