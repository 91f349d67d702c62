"""Strict checkpoint loading with a message a person can act on."""

from pathlib import Path
from typing import Union

import torch


def load_state_dict_strict(model: torch.nn.Module, model_file: Union[str, Path], config_file: Union[str, Path]) -> None:
    """Load ``model_file`` into ``model``; every key and shape must match the config's model."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(
            f"model file '{model_file}' does not exist; pick one of the *.pth files written by "
            "training (e.g. valid.loss.best.pth) or a packed model"
        )
    state = torch.load(model_file, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and "optimizers" in state:
        state = state["model"]  # a training checkpoint.pth
    elif isinstance(state, dict) and "module" in state:
        state = state["module"]  # a deepspeed checkpoint
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"checkpoint '{model_file}' does not fit the model built from '{config_file}':"]
        for name, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                shown = "; ".join(items[:5]) + (f"; ... ({len(items)} in all)" if len(items) > 5 else "")
                lines.append(f"  {name}: {shown}")
        lines.append(
            "Fix: load the checkpoint with the config.yaml written next to it by the same training run "
            "(a changed backbone/fusion/gate/projector/decoder option changes the parameters)."
        )
        raise RuntimeError("\n".join(lines))
    model.load_state_dict(state, strict=True)
