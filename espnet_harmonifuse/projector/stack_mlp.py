"""Stack ``k`` consecutive frames, then a two-layer MLP into the LLM space."""

from typing import Tuple

import torch

from espnet_harmonifuse.projector.abs_projector import AbsProjector


class StackMLPProjector(AbsProjector):
    """Frame stacking (``T -> ceil(T/k)``, zero-padded tail) + Linear-GELU-Linear.

    Args:
        input_size: feature size of the speech states.
        output_size: LLM hidden size (filled in by the task from the decoder).
        downsample_rate: number of frames stacked into one LLM position.
        hidden_size: MLP hidden size.
    """

    def __init__(self, input_size: int, output_size: int, downsample_rate: int = 5, hidden_size: int = 2048):
        super().__init__()
        self.k = downsample_rate
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(input_size * downsample_rate, hidden_size),
            torch.nn.GELU(),
            torch.nn.Linear(hidden_size, output_size),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        pad = (-t) % self.k
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        x = x.reshape(b, (t + pad) // self.k, d * self.k)
        return self.mlp(x), torch.div(lengths + self.k - 1, self.k, rounding_mode="floor")
