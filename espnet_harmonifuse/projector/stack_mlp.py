"""Stack ``k`` consecutive frames, then a two-layer MLP into the LLM space."""

from typing import Tuple

import torch

from espnet_harmonifuse.projector.abs_projector import AbsProjector
from espnet_harmonifuse.projector.summary import SummaryToken


class StackMLPProjector(AbsProjector):
    """Frame stacking (``T -> ceil(T/k)``, zero-padded tail) + Linear-GELU-Linear.

    Args:
        input_size: feature size of the speech states.
        output_size: LLM hidden size (filled in by the task from the decoder).
        downsample_rate: number of frames stacked into one LLM position.
        hidden_size: MLP hidden size.
        summary_token: put an utterance summary (pooled mean and std of the states through its
            own MLP, see ``summary.py``) before the speech positions. Beyond the paper.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        downsample_rate: int = 5,
        hidden_size: int = 2048,
        summary_token: bool = False,
    ):
        super().__init__()
        self.summary = SummaryToken(input_size, output_size, hidden_size) if summary_token else None
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
        y = self.mlp(x.reshape(b, (t + pad) // self.k, d * self.k))
        y_lengths = torch.div(lengths + self.k - 1, self.k, rounding_mode="floor")
        if self.summary is not None:
            return self.summary.prepend(y, y_lengths, x[:, :t], lengths)
        return y, y_lengths
