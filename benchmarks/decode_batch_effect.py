#!/usr/bin/env python3
"""Does a model's test score depend on how the test utterances are batched?

Decodes a trained model's ASR and SER test sets at several batch sizes, with the utterances in
file order (as the recipe's stage 7 feeds them) or sorted by length (least padding), and prints
WER / CER and UA / macro-F1 for each. With the Conformer backbone's ``mask_padding`` (the default)
every row must be the same; ``--espnet_encoder`` rebuilds the model with ESPnet's own encoder
behaviour (``mask_padding: false``, legacy relative positions), for a model trained before that
option existed.

    python benchmarks/decode_batch_effect.py --model_dir egs2/mini_emo/harmonifuse1/exp/train \\
        --dump egs2/mini_emo/harmonifuse1/dump/raw [--batch_sizes 16 1] [--espnet_encoder]
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

SETS = {"asr": "asr_test", "ser": "ser_test"}


def load(model_dir: Path, model_file: str, espnet_encoder: bool):
    from espnet_harmonifuse.api import HarmoniFuse
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    hf = HarmoniFuse.from_pretrained(model_dir / "config.yaml", model_dir / model_file)
    if espnet_encoder:  # same weights, ESPnet's encoder behaviour (legacy and latest share parameter names)
        args = hf.args
        enc = {**(args.backbone_conf.get("encoder_conf") or {}), "rel_pos_type": "legacy"}
        args.backbone_conf = {**args.backbone_conf, "mask_padding": False, "encoder_conf": enc}
        model = HarmoniFuseTask.build_model(args)
        model.load_state_dict(hf.model.state_dict())
        hf = HarmoniFuse(model, args)
    return hf


def decode_set(hf, task: str, scp: Path, batch_size: int, order: str):
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    items = read_pairs(scp)
    if order == "length":
        items.sort(key=lambda kv: sf.info(kv[1]).frames)
    hyp = {}
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        for (key, _), r in zip(chunk, hf.decode([p for _, p in chunk], task)):
            hyp[key] = r["text"]
    return hyp


def score(task: str, ref: Path, hyp: dict, labels):
    from espnet_harmonifuse.data.kaldi_dir import write_kv
    from espnet_harmonifuse.scoring.score_files import score_asr_files, score_ser_files

    with tempfile.TemporaryDirectory() as tmp:
        text = Path(tmp) / "text"
        write_kv(text, hyp)
        if task == "asr":
            s = score_asr_files(ref, text, Path(tmp) / "score")
            return {"wer": round(s["wer"], 2), "cer": round(s["cer"], 2)}
        s = score_ser_files(ref, text, labels, Path(tmp) / "score", plot=False)
        return {"ua": round(s["ua"], 2), "macro_f1": round(s["macro_f1"], 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model_dir", required=True, type=Path)
    ap.add_argument("--model_file", default="valid.acc.ave.pth")
    ap.add_argument("--dump", required=True, type=Path, help="dir holding asr_test/ and ser_test/ (Kaldi dirs)")
    ap.add_argument("--batch_sizes", type=int, nargs="+", default=[16, 1])
    ap.add_argument("--orders", nargs="+", default=["file", "length"], choices=["file", "length"])
    ap.add_argument("--espnet_encoder", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    hf = load(args.model_dir, args.model_file, args.espnet_encoder)
    labels = next((t.labels for t in hf.model.tasks if t.is_label), None)
    rows = []
    for bs in args.batch_sizes:
        for order in args.orders if bs > 1 else ["file"]:
            row = {"batch_size": bs, "order": order}
            t0 = time.time()
            for task, dset in SETS.items():
                hyp = decode_set(hf, task, args.dump / dset / "wav.scp", bs, order)
                row.update(score(task, args.dump / dset / "text", hyp, labels))
            row["seconds"] = round(time.time() - t0, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| batch | order | WER | CER | UA | macro-F1 |\n|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['order']} | {r['wer']} | {r['cer']} | {r['ua']} | {r['macro_f1']} |")


if __name__ == "__main__":
    sys.exit(main())
