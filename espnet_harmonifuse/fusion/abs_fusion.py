"""Interface of the layer-fusion component."""

from abc import ABC, abstractmethod
from typing import List, Tuple

import torch


class AbsFusion(torch.nn.Module, ABC):
    """Aggregates the hidden states of all backbone layers into one sequence.

    ``forward(states, lengths, prompt_vec)`` takes ``L+1`` tensors of shape
    ``(B, T, D)``, their lengths ``(B,)`` and a pooled prompt vector ``(B, P)``;
    it returns the fused states ``(B, T, D)`` and the layer weights ``(B, L+1)``
    (each row sums to one). ``reads_prompt`` says whether the weights depend on the prompt.
    """

    reads_prompt = True

    @abstractmethod
    def layer_weights(self, prompt_vec: torch.Tensor) -> torch.Tensor:
        """Layer weights ``(B, L+1)`` for pooled prompt vectors ``(B, P)``."""
        raise NotImplementedError

    @abstractmethod
    def forward(
        self, states: List[torch.Tensor], lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


def weighted_sum(states: List[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``sum_l weights[:, l] * states[l]`` for per-sample weights ``(B, L+1)``."""
    stacked = torch.stack(states, dim=1)  # (B, L+1, T, D)
    return torch.einsum("bl,bltd->btd", weights.to(stacked.dtype), stacked)
