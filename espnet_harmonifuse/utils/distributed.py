"""How HarmoniFuse rides on ESPnet's distributed training (torch DDP, one process per device).

- ``check_not_data_parallel``: ESPnet wraps the model in ``torch.nn.DataParallel`` when it is given
  several GPUs in one process (``--ngpu N`` without ``--multiprocessing_distributed true`` or an
  external launcher). HarmoniFuse does not run there: its backbone keeps per-forward state (padding
  masks set by hooks) that DataParallel's threads would share, and DataParallel is the slow path.
- ``set_unused_parameters``: DDP stops at the first step where a trainable parameter got no gradient
  unless it was built with ``find_unused_parameters`` (ESPnet's ``--unused_parameters true``); the
  model says when that can happen (``HarmoniFuseModel.unused_parameter_reasons``).
"""

import argparse
import logging
from typing import List, Optional

import torch


def check_not_data_parallel(args: argparse.Namespace) -> None:
    """Stop (SystemExit with the fix) where ESPnet's trainer would use DataParallel."""
    if getattr(args, "ngpu", 0) > 1 and not getattr(args, "distributed", False):
        raise SystemExit(
            f"harmonifuse_train: --ngpu {args.ngpu} in one process would train with torch.nn.DataParallel, "
            "which HarmoniFuse does not support (its backbone's per-batch state is not thread-safe; DDP is "
            "faster). Fix: add --multiprocessing_distributed true (one DDP process per GPU; harmonifuse.sh "
            "adds it for --ngpu > 1), or start one process per GPU with torchrun and --ngpu 1."
        )


def set_unused_parameters(args: argparse.Namespace, model) -> None:
    """Turn on ``args.unused_parameters`` (DDP's find_unused_parameters) where ``model`` needs it."""
    reasons = model.unused_parameter_reasons()
    if reasons and not getattr(args, "unused_parameters", False):
        logging.info(f"--unused_parameters true (DDP find_unused_parameters): {'; '.join(reasons)}")
        args.unused_parameters = True


def trainable(module: Optional[torch.nn.Module]) -> bool:
    """Whether a module has a parameter that trains (for the models' ``unused_parameter_reasons``)."""
    return module is not None and any(p.requires_grad for p in module.parameters())


def hf_backbone_reasons(backbone: torch.nn.Module) -> List[str]:
    """A trainable Hugging Face speech model uses its SpecAugment mask embedding only when masking is on."""
    model = getattr(backbone, "model", None)
    config = getattr(model, "config", None)
    spec = getattr(model, "masked_spec_embed", None)
    if config is None or spec is None or not spec.requires_grad:
        return []
    if getattr(config, "apply_spec_augment", False) and getattr(config, "mask_time_prob", 0.0) > 0:
        return []
    return ["the trainable backbone's masked_spec_embed is unused (its SpecAugment masking is off)"]
