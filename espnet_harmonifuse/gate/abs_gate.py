"""Interface of the gate that selects task-relevant components of the fused states."""

from abc import ABC, abstractmethod
from typing import Dict, Tuple

import torch


class AbsGate(torch.nn.Module, ABC):
    """``forward(fused (B,T,D), lengths (B,), prompt_vec (B,P))`` -> ``(selected (B,T,D), stats)``.

    ``stats`` maps names to per-sample tensors ``(B, ...)``: e.g. the mean gate
    value of each channel, for logging and plots. Empty for gates with no state.
    ``reads_prompt`` says whether the selection depends on the prompt.
    """

    reads_prompt = True

    @abstractmethod
    def forward(
        self, fused: torch.Tensor, lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        raise NotImplementedError
