#!/usr/bin/env python3
"""GPU memory and step time of the paper's setting (egs2/iemocap_librispeech conf/train.yaml).

That config names microsoft/wavlm-large and Qwen/Qwen2.5-1.5B-Instruct. This script needs neither
download nor the corpora: it saves randomly initialised models of the same architectures
(``save_pretrained``) and a small stand-in tokenizer to a temporary directory, points the config's
``model_name_or_path`` at them, and builds the model through the same code a user's run takes
(``load_train_args`` + ``HarmoniFuseTask.build_model``). Speed and memory do not depend on the
weights' values; the LLM's vocabulary size is Qwen's (151936), so the output layer costs what it
will.

It then times training steps (forward, backward, AdamW step; median of ``--steps`` after two
warm-up steps) and records the peak GPU memory, for batches the config's ``batch_bins: 4000000``
(samples of padded audio) allows:

- ``asr_long``: 10 utterances of 24 s (LibriSpeech train-clean-100's longest), 100 text tokens each;
- ``asr_typical``: 16 utterances of 15.6 s, 60 tokens (about train-clean-100's mean length);
- ``ser``: 55 utterances of 4.5 s (IEMOCAP's mean length), one label token.

    python benchmarks/bench_paper_config_gpu.py [--steps 5] [--out result.json] [--tiny]

``--tiny`` shrinks both models (a CPU check of the script itself; its figures mean nothing).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "egs2" / "iemocap_librispeech" / "harmonifuse1" / "conf" / "train.yaml"

WAVLM_LARGE = dict(
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    num_conv_pos_embeddings=128, num_conv_pos_embedding_groups=16,
)
QWEN25_15B = dict(
    hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
    tie_word_embeddings=True,
)
TINY = {
    "wavlm": dict(WAVLM_LARGE, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                  num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, conv_dim=[32] * 7),
    "llm": dict(QWEN25_15B, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, vocab_size=2000),
}
BATCHES = {"asr_long": (0, 10, 24.0, 100), "asr_typical": (0, 16, 15.6, 60), "ser": (1, 55, 4.5, 1)}


def stand_in_tokenizer(texts):
    """A byte-level BPE tokenizer (Qwen's kind) trained on the prompts and labels."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<|pad|>")


def save_models(root: Path, tiny: bool, conf: dict):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    wcfg = AutoConfig.for_model("wavlm", **(TINY["wavlm"] if tiny else WAVLM_LARGE))
    AutoModel.from_config(wcfg).save_pretrained(root / "wavlm")
    texts = [p for t in conf["tasks"] for p in t["prompts"]] + [l for t in conf["tasks"] for l in t.get("labels", [])]
    tok = stand_in_tokenizer(texts + ["the quick brown fox jumps over the lazy dog"] * 4)
    lcfg = AutoConfig.for_model("qwen2", **(TINY["llm"] if tiny else QWEN25_15B),
                                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    llm = AutoModelForCausalLM.from_config(lcfg, dtype=torch.bfloat16)
    llm.save_pretrained(root / "llm")
    tok.save_pretrained(root / "llm")
    return str(root / "wavlm"), str(root / "llm")


def build(root: Path, tiny: bool):
    from espnet_harmonifuse.bin.common import load_train_args
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    conf = yaml.safe_load(CONFIG.read_text())
    wavlm, llm = save_models(root, tiny, conf)
    conf["backbone_conf"]["model_name_or_path"] = wavlm
    conf["decoder_conf"]["model_name_or_path"] = llm
    path = root / "train.yaml"
    path.write_text(yaml.safe_dump(conf))
    args = load_train_args(str(path))
    torch.manual_seed(0)
    return HarmoniFuseTask.build_model(args)


def make_batch(task_id, n, seconds, n_tokens, vocab, device):
    samples = int(16000 * seconds)
    g = torch.Generator().manual_seed(n)
    return dict(
        speech=(0.1 * torch.randn(n, samples, generator=g)).to(device),
        speech_lengths=torch.full((n,), samples, dtype=torch.long, device=device),
        text=torch.randint(10, vocab, (n, n_tokens), generator=g).to(device),
        text_lengths=torch.full((n,), n_tokens, dtype=torch.long, device=device),
        task_id=torch.full((n, 1), task_id, dtype=torch.long, device=device),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", default=None)
    ap.add_argument("--tiny", action="store_true")
    args = ap.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    scale = 0.05 if args.tiny else 1.0
    result = {"device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "tiny": args.tiny,
              "config": str(CONFIG.relative_to(REPO)), "torch": torch.__version__, "batches": {}}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        model = build(Path(tmp), args.tiny)
        result["build_seconds"] = round(time.time() - t0, 1)
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    result["params"] = sum(p.numel() for p in model.parameters())
    result["trainable_params"] = sum(p.numel() for p in trainable)
    optim = torch.optim.AdamW(trainable, lr=1e-4)
    vocab = 500  # random target ids stay inside the stand-in tokenizer (600) and the LLM vocabulary
    for name, (task_id, n, seconds, n_tokens) in BATCHES.items():
        batch = make_batch(task_id, n, seconds * scale, n_tokens, vocab, device)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for step in range(args.steps + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            loss, _, _ = model(**batch)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            if device == "cuda":
                torch.cuda.synchronize()
            if step >= 2:
                times.append(time.perf_counter() - t)
        entry = {"utterances": n, "seconds_each": seconds * scale, "tokens_each": n_tokens,
                 "step_seconds_median": round(statistics.median(times), 3), "steps_timed": len(times),
                 "loss": round(float(loss), 3)}
        if device == "cuda":
            entry["peak_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
        result["batches"][name] = entry
        print(name, json.dumps(entry), flush=True)
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
