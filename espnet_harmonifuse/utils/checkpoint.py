"""Checkpoint loading that runs no pickled code, with errors a person can act on.

Every checkpoint the plugin reads goes through :func:`safe_torch_load`, i.e. ``torch.load`` with
``weights_only=True``: tensors, containers and plain numbers load; a file that refers to any other
Python object (which only pickle could rebuild, and unpickling can run code) is refused.
"""

import datetime
import pickle
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

PathLike = Union[str, Path]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded safely or does not fit the model; the message says what to do."""


def _numpy_scalar_globals() -> list:
    core = getattr(np, "_core", None) or np.core
    dtypes = [getattr(np.dtypes, n) for n in getattr(np.dtypes, "__all__", ()) if n.endswith("DType")]
    return [np.dtype, core.multiarray.scalar, *dtypes]


# ESPnet's training checkpoint.pth holds its reporter's statistics as numpy scalars and timedeltas:
# plain data types, allowed next to tensors (functions and every other class stay refused).
SAFE_GLOBALS = (*_numpy_scalar_globals(), datetime.timedelta)


def safe_torch_load(path: PathLike, map_location: str = "cpu", mmap: bool = False):
    """``torch.load(path, weights_only=True)``; a file that needs pickle raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' does not exist")
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(e))
        if found is None:
            reason = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
            raise CheckpointError(
                f"cannot read '{path}' as a PyTorch checkpoint ({reason.group(1) if reason else 'unpickling failed'}): "
                "it is truncated or was not written by torch.save; write it again (training writes the *.pth "
                "files, python -m espnet_harmonifuse.bin.pack writes packed models)"
            ) from None
        raise CheckpointError(
            f"'{path}' is not a plain checkpoint: it refers to the Python object '{found.group(1) or found.group(2)}', "
            "which only pickle can rebuild, and unpickling can run any code, so it was refused and nothing in it "
            "was run. If you trust its source, re-save it as a plain state dict (parameter name -> tensor), e.g. "
            "torch.save(model.state_dict(), 'model.pth')"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(
            f"cannot read '{path}' as a PyTorch checkpoint ({e}); it is truncated or was not written by torch.save"
        ) from None


def raise_unless_fits(
    header: str, own: Dict[str, torch.Tensor], state: dict, fix: str, require_all: bool = True, prefix: str = ""
) -> None:
    """Raise one :class:`CheckpointError` (``header``, the missing / unexpected / mismatched keys in the
    model's order, ``fix``) unless every key of ``state`` is in ``own`` with the same shape (and, with
    ``require_all``, every key of ``own`` is in ``state``). ``prefix`` is put before the key names."""
    missing = [prefix + k for k in own if k not in state] if require_all else []
    unexpected = [prefix + k for k in state if k not in own]
    mismatched = [
        f"{prefix}{k}: checkpoint {tuple(state[k].shape)} vs config {tuple(own[k].shape)}"
        for k in own
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    lines = [header]
    for name, items in (("shape mismatch", mismatched), ("missing", missing), ("unexpected", unexpected)):
        if items:
            shown = "; ".join(items[:5]) + (f"; ... ({len(items)} in all)" if len(items) > 5 else "")
            lines.append(f"  {name}: {shown}")
    lines.append(f"Fix: {fix}")
    raise CheckpointError("\n".join(lines))


def load_state_dict_strict(model: torch.nn.Module, model_file: PathLike, config_file: PathLike) -> None:
    """Load ``model_file`` into ``model``; every key and shape must match the config's model."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise FileNotFoundError(
            f"model file '{model_file}' does not exist; pick one of the *.pth files written by "
            "training (e.g. valid.loss.best.pth) or a packed model"
        )
    state = safe_torch_load(model_file)
    if isinstance(state, dict) and "model" in state and "optimizers" in state:
        state = state["model"]  # a training checkpoint.pth
    elif isinstance(state, dict) and "module" in state:
        state = state["module"]  # a deepspeed checkpoint
    if not isinstance(state, dict):
        raise CheckpointError(f"'{model_file}' holds a {type(state).__name__}, not a state dict (name -> tensor)")
    raise_unless_fits(
        f"checkpoint '{model_file}' does not fit the model built from '{config_file}':",
        model.state_dict(),
        state,
        "load the checkpoint with the config.yaml written next to it by the same training run (a changed "
        "backbone/fusion/gate/projector/decoder option changes the parameters); to reuse only the modules "
        "that match in a new training, copy them with --init_param PATH:SRC:DST (e.g. PATH:backbone:backbone)",
    )
    model.load_state_dict(state, strict=True)


def _init_param_target(model: torch.nn.Module, dst_key: Optional[str], where: str) -> torch.nn.Module:
    """The module ``dst_key`` names, found as ESPnet's load_pretrained_model finds it."""
    obj = model
    for part in dst_key.split(".") if dst_key and dst_key.strip() else []:
        obj = getattr(obj, part, None)
        if not isinstance(obj, torch.nn.Module):
            names = sorted(n for n, _ in model.named_children())
            raise CheckpointError(f"{where}: the model has no module '{dst_key}'; its top-level modules are {names}")
    return obj


def check_init_param(model: torch.nn.Module, init_param: str, ignore_mismatch: bool = False) -> None:
    """Check ``--init_param PATH[:SRC_KEY[:DST_KEY[:EXCLUDES]]]`` as ESPnet's load_pretrained_model will
    apply it: the file must load without pickle and, unless ``ignore_mismatch``, every parameter it
    copies must exist in the destination module with the same shape."""
    where = f"--init_param '{init_param}'"
    parts = init_param.split(":")
    if len(parts) > 4:
        raise CheckpointError(f"{where}: expected PATH[:SRC_KEY[:DST_KEY[:EXCLUDES]]] (at most 3 colons)")
    path, src_key, dst_key, excludes = parts + [None] * (4 - len(parts))
    src_key, dst_key = src_key or None, dst_key or None
    if not Path(path).is_file():
        raise CheckpointError(f"{where}: '{path}' does not exist; give a *.pth written by training (e.g. valid.loss.best.pth)")
    state = safe_torch_load(path, mmap=zipfile.is_zipfile(path))
    if isinstance(state, dict) and "module" in state:
        state = state["module"]
    if not isinstance(state, dict) or ("model" in state and "optimizers" in state):
        raise CheckpointError(
            f"{where}: '{path}' is not a model state dict (it is a training checkpoint or another object); "
            "give a model file written by training, e.g. valid.loss.best.pth or NNepoch.pth"
        )
    modules = sorted({k.split(".")[0] for k in state})
    if excludes is not None:
        for e in excludes.split(","):
            state = {k: v for k, v in state.items() if not k.startswith(e)}
    if src_key is not None:
        state = {k[len(src_key) + 1 :]: v for k, v in state.items() if k.startswith(src_key)}
    target = _init_param_target(model, dst_key, where)
    if not state:
        raise CheckpointError(
            f"{where}: copies no parameter from '{path}' (SRC_KEY '{src_key or ''}' and EXCLUDES "
            f"'{excludes or ''}' leave none); the checkpoint's top-level modules are {modules}"
        )
    if ignore_mismatch:
        return  # ESPnet then copies only the keys that exist with the same shape
    raise_unless_fits(
        f"{where}: checkpoint '{path}' does not fit the model built from the training config:",
        target.state_dict(),
        state,
        "train with the config the checkpoint was trained with, or copy only the modules that match with "
        f"--init_param {path}:SRC:DST (e.g. {path}:backbone:backbone), or skip the mismatching parameters "
        "with --ignore_init_mismatch true",
        require_all=False,
        prefix=f"{dst_key}." if dst_key else "",
    )


def check_init_params(model: torch.nn.Module, init_params: List[str], ignore_mismatch: bool = False) -> None:
    """:func:`check_init_param` for each ``--init_param`` value."""
    for init_param in init_params or []:
        check_init_param(model, init_param, ignore_mismatch)
