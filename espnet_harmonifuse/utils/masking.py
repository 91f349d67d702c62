"""Small tensor helpers shared by the components."""

import torch


def lengths_to_mask(lengths: torch.Tensor, max_len: int = None) -> torch.Tensor:
    """Boolean mask ``(B, T)``: True on valid frames."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
