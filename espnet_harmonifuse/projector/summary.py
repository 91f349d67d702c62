"""An utterance summary position for ``stack_mlp`` (``projector_conf.summary_token``; beyond the paper).

The LM reads frame-level speech positions. Utterance-level cues (the pitch level, the speaking
rate, the spread of the energy) are averages over the whole utterance, which a small LM trained
from scratch has to learn to compute. ``SummaryToken`` hands it the average directly: the mean and
standard deviation over time of the gated states, through a small MLP, as one extra position
before the speech positions. On mini_emo it helped little (SER UA 44.5 against 43.5, single
runs): the LM still memorises the SER training utterances (egs2/mini_emo/harmonifuse1/README.md).
"""

from typing import Tuple

import torch

from espnet_harmonifuse.utils.masking import lengths_to_mask


def masked_mean_std(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` -> ``(B, 2D)``: mean and standard deviation over the first ``lengths`` frames."""
    mask = lengths_to_mask(lengths, x.size(1)).unsqueeze(-1).to(x.dtype)
    n = mask.sum(1).clamp(min=1.0)
    mean = (x * mask).sum(1) / n
    var = (((x - mean[:, None]) ** 2) * mask).sum(1) / n
    return torch.cat([mean, var.clamp(min=1e-6).sqrt()], dim=-1)


class SummaryToken(torch.nn.Module):
    """Linear-GELU-Linear on the pooled mean and std of the states, prepended as one position."""

    def __init__(self, input_size: int, output_size: int, hidden_size: int):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(2 * input_size, hidden_size),
            torch.nn.GELU(),
            torch.nn.Linear(hidden_size, output_size),
        )

    def prepend(
        self, y: torch.Tensor, y_lengths: torch.Tensor, x: torch.Tensor, x_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``y (B, T', d)`` projected from ``x (B, T, D)`` -> ``([summary ; y], y_lengths + 1)``."""
        token = self.mlp(masked_mean_std(x, x_lengths)).to(y.dtype)
        return torch.cat([token[:, None], y], dim=1), y_lengths + 1
