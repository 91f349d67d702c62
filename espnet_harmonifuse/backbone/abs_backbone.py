"""Interface of the speech backbone: waveform in, the hidden states of every layer out."""

from abc import ABC, abstractmethod
from typing import List, Tuple

import torch


class AbsBackbone(torch.nn.Module, ABC):
    """``forward(speech (B,S), speech_lengths (B,))`` -> ``(states, lengths)``.

    ``states`` is a list of ``num_layers`` tensors ``(B, T, D)`` (one per layer,
    the input embedding first where the model has one) and ``lengths`` ``(B,)``
    the valid frames.
    """

    @property
    @abstractmethod
    def num_layers(self) -> int:
        """Number of states ``forward`` returns."""

    @abstractmethod
    def output_size(self) -> int:
        """Feature size ``D`` of every state."""

    @abstractmethod
    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        raise NotImplementedError
