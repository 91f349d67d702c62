"""Static (prompt-independent) softmax layer weights: the SUPERB-style weighted sum."""

from typing import List, Tuple

import torch

from espnet_harmonifuse.fusion.abs_fusion import AbsFusion, weighted_sum


class StaticFusion(AbsFusion):
    """``H = sum_l softmax(w / temperature)_l H_l`` with one learnable ``w`` for all tasks.

    Args:
        num_layers: number of backbone states (layers + the input embedding).
        input_size: feature size of the states.
        prompt_size: size of the pooled prompt vector (ignored here).
        temperature: softmax temperature.
        layer_norm: normalise each layer's states before the weighted sum.
    """

    reads_prompt = False

    def __init__(
        self,
        num_layers: int,
        input_size: int,
        prompt_size: int,
        temperature: float = 1.0,
        layer_norm: bool = False,
    ):
        super().__init__()
        self.num_layers = num_layers
        self.temperature = temperature
        self.layer_logits = torch.nn.Parameter(torch.zeros(num_layers))
        self.norm = torch.nn.LayerNorm(input_size, elementwise_affine=False) if layer_norm else None

    def layer_weights(self, prompt_vec: torch.Tensor) -> torch.Tensor:
        """Layer weights ``(B, L+1)`` for pooled prompt vectors ``(B, P)``."""
        logits = self.layer_logits.unsqueeze(0).expand(prompt_vec.size(0), -1)
        return torch.softmax(logits / self.temperature, dim=-1)

    def forward(
        self, states: List[torch.Tensor], lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if len(states) != self.num_layers:
            raise ValueError(
                f"fusion expects {self.num_layers} layer states but the backbone gave "
                f"{len(states)}; the fusion was built for a different backbone depth"
            )
        if self.norm is not None:
            states = [self.norm(s) for s in states]
        weights = self.layer_weights(prompt_vec)
        return weighted_sum(states, weights), weights
