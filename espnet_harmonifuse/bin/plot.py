#!/usr/bin/env python3
"""Plots of a trained experiment: per-task training curves, layer weights, gate values, confusion.

Writes into ``--out_dir``: ``loss_per_task.png``, ``acc_per_task.png``,
``layer_weights.png``, ``gate_values.png`` (models with a gate) and one
``confusion_<set>.png`` per scored SER test set.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--model_file", default=None, help="default: the exp dir's best model")
    p.add_argument("--out_dir", default=None, help="default: EXP_DIR/images")
    p.add_argument("--max_utts", type=int, default=32, help="validation utterances per task for gate statistics")
    return p


def valid_wav_scps(args) -> Dict[str, str]:
    """Each task's validation wav.scp, from the training config."""
    out = {}
    for value in getattr(args, "valid_task_data", []) or []:
        task, _, rest = value.partition(":")
        path, name, _ = rest.split(",")
        if name == "speech":
            out[task] = path
    return out


@torch.no_grad()
def gate_values(hf, wav_scp: str, task: str, max_utts: int) -> np.ndarray:
    """Per-channel mean gate values of up to ``max_utts`` utterances: ``(n, D)``."""
    from espnet_harmonifuse.api import load_wav
    from espnet_harmonifuse.data.kaldi_dir import read_pairs

    paths = [p for _, p in read_pairs(wav_scp)][:max_utts]
    rows = []
    index = hf.task_index(task)
    for path in paths:
        wav = torch.from_numpy(load_wav(path))
        _, extra = hf.model.select(wav[None], torch.tensor([wav.numel()]), torch.tensor([index]), 0)
        if "gate_channel_mean" in extra:
            rows.append(extra["gate_channel_mean"][0].cpu().numpy())
    return np.stack(rows) if rows else np.zeros((0, 0))


def main(cmd=None) -> List[str]:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    from espnet_harmonifuse.api import HarmoniFuse
    from espnet_harmonifuse.utils import plots

    exp = Path(args.exp_dir)
    out = Path(args.out_dir or exp / "images")
    out.mkdir(parents=True, exist_ok=True)
    hf = HarmoniFuse.from_pretrained(exp, args.model_file)
    tasks = hf.task_names
    written = list(plots.plot_training_curves(plots.load_reporter_stats(exp), out, tasks))

    weights = {k: v.numpy() for k, v in hf.model.layer_weights_per_task().items()}
    written.append(plots.plot_layer_weights(weights, out / "layer_weights.png", f"Layer weights per task ({hf.args.fusion})"))
    np.savez(out / "layer_weights.npz", **weights)

    scps = valid_wav_scps(hf.args)
    gates = {t: gate_values(hf, scps[t], t, args.max_utts) for t in tasks if t in scps}
    gates = {t: g.mean(0) for t, g in gates.items() if g.size}
    if gates:
        written.append(plots.plot_gate_stats(gates, out / "gate_values.png", "Mean gate value per channel (validation)"))
    for scores_file in sorted(exp.glob("decode*/*/score*/scores.json")):
        scores = json.loads(scores_file.read_text())
        if scores.get("kind") == "ser":
            name = scores_file.parent.parent.name
            written.append(
                plots.plot_confusion(
                    scores["confusion"], scores["labels"], scores["confusion_columns"], out / f"confusion_{name}.png", f"SER confusion: {name}"
                )
            )
    for w in written:
        logging.info(f"wrote {w}")
    return written


if __name__ == "__main__":
    main()
