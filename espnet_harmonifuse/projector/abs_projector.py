"""Interface of the projector from speech features into the LLM embedding space."""

from abc import ABC, abstractmethod
from typing import Tuple

import torch


class AbsProjector(torch.nn.Module, ABC):
    """``forward(x (B,T,D), lengths (B,))`` -> ``(y (B,T',d_llm), lengths' (B,))``.

    The model zeroes the frames of ``x`` past ``lengths`` before calling it, so a projector may
    merge neighbouring frames without masking.
    """

    @abstractmethod
    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
