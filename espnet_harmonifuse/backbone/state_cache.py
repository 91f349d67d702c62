"""Memoise the layer states of a frozen backbone, per utterance, across epochs.

A frozen backbone (``freeze: true``: fixed weights, eval mode) maps an utterance to the same
states every time it sees it, yet training runs it again in every epoch and every validation.
On the CPU recipe that forward is most of a training step (a step takes 206 ms without the cache
and 95 ms with it, measured by ``benchmarks/bench_state_cache.py``). The cache keys each utterance by a digest of its valid
samples, so it needs no utterance ids and stays correct when the data pipeline changes the
audio (speed perturbation, noise: a changed waveform is a new key, a miss).

A batch that holds an utterance the cache lacks runs through the backbone whole, as without the
cache, and its missing utterances are stored from that forward. ESPnet's batches are fixed lists
(an epoch reorders the batches, not their members), so an utterance's states always come from the
same batch computation: bit for bit the same in every epoch and in a run resumed after a kill,
which starts with an empty cache (or, with a full cache, stores other utterances). A step of new
utterances costs what it costs without the cache, and a full cache (``max_gb``) costs nothing
extra: its misses run in their batch every time.
"""

import hashlib
import logging
from typing import Dict, List, Optional, Tuple

import torch

from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone


def is_frozen(backbone: torch.nn.Module) -> bool:
    """No trainable weight and no dropout (eval mode, or a backbone that keeps its model in eval mode
    when ``freeze`` is set): its states are then a function of the audio."""
    fixed = not backbone.training or bool(getattr(backbone, "freeze", False))
    return fixed and not any(p.requires_grad for p in backbone.parameters())


class BackboneStateCache:
    """``cache(backbone, speech, speech_lengths)`` -> ``(states, lengths)``, like ``backbone(...)``."""

    def __init__(self, max_gb: float = 4.0):
        if max_gb <= 0:
            raise ValueError(f"model_conf.backbone_cache_gb must be > 0, got {max_gb}")
        self.max_bytes = int(max_gb * 1024**3)
        self.entries: Dict[bytes, torch.Tensor] = {}  # digest -> (num_layers, T, D)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._warned_full = False

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def key(samples: torch.Tensor) -> bytes:
        t = samples.detach().to("cpu").contiguous()
        h = hashlib.blake2b(str(t.dtype).encode(), digest_size=16)
        h.update(t.numpy().tobytes())
        return h.digest()

    def __call__(
        self, backbone: AbsBackbone, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        if not is_frozen(backbone):
            raise RuntimeError(
                "model_conf.cache_backbone_states needs a frozen backbone (backbone_conf.freeze: true): "
                "a backbone that trains or runs dropout gives other states every time"
            )
        keys = [self.key(speech[i, : int(n)]) for i, n in enumerate(speech_lengths)]
        found: List[Optional[torch.Tensor]] = [self.entries.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:  # the whole batch, as without the cache (see the module docstring)
            with torch.no_grad():
                states, lengths = backbone(speech, speech_lengths)
            for i in missing:
                found[i] = torch.stack([s[i, : int(lengths[i])].detach() for s in states])
                self._store(keys[i], found[i])
        return self._batch(found)

    def _store(self, key: bytes, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if self.nbytes + size > self.max_bytes:
            if not self._warned_full:
                logging.warning(
                    "backbone state cache full (%.2f GB, %d utterances): further utterances are computed "
                    "every time; raise model_conf.backbone_cache_gb if memory allows",
                    self.nbytes / 1024**3, len(self.entries),
                )
                self._warned_full = True
            return
        self.entries[key] = value
        self.nbytes += size

    @staticmethod
    def _batch(per_utt: List[torch.Tensor]) -> Tuple[List[torch.Tensor], torch.Tensor]:
        lengths = torch.tensor([u.size(1) for u in per_utt], dtype=torch.long, device=per_utt[0].device)
        num_layers, _, dim = per_utt[0].shape
        out = per_utt[0].new_zeros(num_layers, len(per_utt), int(lengths.max()), dim)
        for i, u in enumerate(per_utt):
            out[:, i, : u.size(1)] = u
        return list(out.unbind(0)), lengths
