"""The LLM's input batch from each sample's embedding parts (prompt, speech, target)."""

from typing import Sequence, Tuple

import torch


def pack(
    parts: Sequence[Sequence[torch.Tensor]], left_pad: bool
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate each sample's parts ``(n_k, H)`` and pad the batch.

    Returns ``(embeds (B, N, H), mask (B, N) bool, position_ids (B, N))``; the
    position ids count real tokens only, so left-padded rows match unpadded ones.
    """
    seqs = [torch.cat(list(p), dim=0) for p in parts]
    n = max(s.size(0) for s in seqs)
    h = seqs[0].size(1)
    embeds = seqs[0].new_zeros(len(seqs), n, h)
    mask = torch.zeros(len(seqs), n, dtype=torch.bool, device=seqs[0].device)
    for i, s in enumerate(seqs):
        sl = slice(n - s.size(0), n) if left_pad else slice(0, s.size(0))
        embeds[i, sl] = s
        mask[i, sl] = True
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    return embeds, mask, positions
