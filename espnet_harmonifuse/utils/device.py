"""Where and in which precision a model runs: ``device`` (cpu, cuda, cuda:N) and ``dtype``
(float32, bfloat16, float16), checked with one message naming the fix."""

import functools
import logging
from typing import Union

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: Union[None, str, torch.device] = None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch.device; a GPU that is not there is an error, not a fallback."""
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be cpu, cuda or cuda:N, not '{device}'") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N, not '{device}'")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' was asked for, but CUDA is not available here "
                             "(torch.cuda.is_available() is False): use device cpu, or a CUDA build of torch on a "
                             "GPU machine")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device '{device}' was asked for, but this machine has {count} GPU(s): use cuda:0"
                             f"{f' to cuda:{count - 1}' if count > 1 else ''}")
    return dev


def resolve_dtype(dtype: Union[None, str, torch.dtype] = None) -> torch.dtype:
    """float32 (default), bfloat16 or float16, by name or as a torch.dtype."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not '{dtype}'")
    return DTYPES[name]


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device`` (off for float32): matrix products and convolutions run in
    ``dtype``, whatever the dtype of their inputs; the ops autocast keeps in float32 (norms, softmax, log)
    stay in float32."""
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=dtype != torch.float32)



def autocast_method(method):
    """Run a method of an object with ``device`` and ``dtype`` attributes under ``autocast`` to them."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with autocast(self.device, self.dtype or torch.float32):
            return method(self, *args, **kwargs)

    return wrapper


@functools.lru_cache(maxsize=None)
def warn_if_bf16_emulated(device_type: str, dtype: torch.dtype) -> None:
    """Warn once where bf16 autocast on a CPU would be emulated (slower than float32)."""
    if device_type == "cpu" and dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        logging.warning(
            "model_conf.autocast_dtype: bfloat16 on a CPU without native bf16 (AVX512-BF16 or AMX) is emulated "
            "and slower than float32: set model_conf.autocast_dtype: null"
        )
