"""Loading Hugging Face models by hub name, local directory or inline config, with clear errors."""

import os
from typing import Any, Callable, Optional


def load_hf_model(
    auto_cls: Any,
    model_name_or_path: Optional[str],
    config: Optional[dict],
    what: str,
    **kwargs,
):
    """Build ``auto_cls`` from ``model_name_or_path`` (pretrained) or from ``config`` (random init).

    ``config`` is a dict with a ``model_type`` key and the config fields, e.g.
    ``{model_type: qwen2, hidden_size: 64, num_hidden_layers: 2, ...}``.
    ``what`` names the option in the error message (e.g. ``decoder_conf``).
    """
    from transformers import AutoConfig

    if (model_name_or_path is None) == (config is None):
        raise ValueError(
            f"{what}: give exactly one of model_name_or_path (a hub name or a local "
            f"directory saved with save_pretrained) and config (a dict with model_type)"
        )
    if config is not None:
        config = dict(config)
        model_type = config.pop("model_type", None)
        if model_type is None:
            raise ValueError(f"{what}.config needs a model_type key, e.g. model_type: qwen2")
        hf_config = AutoConfig.for_model(model_type, **config)
        return auto_cls.from_config(hf_config, **kwargs)
    return _from_pretrained(auto_cls.from_pretrained, model_name_or_path, what, **kwargs)


def _from_pretrained(fn: Callable, name: str, what: str, **kwargs):
    try:
        return fn(name, **kwargs)
    except (OSError, ValueError) as e:
        where = "local directory" if os.path.isdir(name) else "hub name or local directory"
        raise RuntimeError(
            f"{what}: could not load '{name}' ({where}): {e}\n"
            f"Fix: give a directory written by save_pretrained, or a hub name reachable from "
            f"this machine (pre-download it with `hf download {name}` where "
            f"there is no internet, then set HF_HUB_OFFLINE=1)."
        ) from e


def load_hf_tokenizer(name: str, what: str = "tokenizer"):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer.from_pretrained, name, what)
