"""Strided 1-D convolution, then a linear layer into the LLM space."""

from typing import Tuple

import torch

from espnet_harmonifuse.projector.abs_projector import AbsProjector


class Conv1dProjector(AbsProjector):
    """Conv1d(kernel=k, stride=k) + GELU + Linear; ``T -> ceil(T/k)``.

    Args:
        input_size: feature size of the speech states.
        output_size: LLM hidden size (filled in by the task from the decoder).
        downsample_rate: stride (and kernel size) of the convolution.
        hidden_size: channels of the convolution.
    """

    def __init__(self, input_size: int, output_size: int, downsample_rate: int = 5, hidden_size: int = 1024):
        super().__init__()
        self.k = downsample_rate
        self.conv = torch.nn.Conv1d(input_size, hidden_size, kernel_size=downsample_rate, stride=downsample_rate)
        self.out = torch.nn.Linear(hidden_size, output_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        pad = (-x.size(1)) % self.k
        if pad:
            x = torch.nn.functional.pad(x, (0, 0, 0, pad))
        y = torch.nn.functional.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        return self.out(y), torch.div(lengths + self.k - 1, self.k, rounding_mode="floor")
