"""Task-conditioned gate: ``G = sigmoid(W_g [H ; g(p)] + b)``, ``H_sel = G * H``."""

from typing import Dict, Tuple

import torch

from espnet_harmonifuse.gate.abs_gate import AbsGate
from espnet_harmonifuse.utils.masking import lengths_to_mask


class TaskGate(AbsGate):
    """A sigmoid gate per frame and channel, conditioned on the frame and the task prompt.

    Args:
        input_size: feature size ``D`` of the fused states.
        prompt_size: size of the pooled prompt vector.
        prompt_proj_size: size of ``g(p)``, the projected prompt.
        init_bias: initial gate bias; positive values start the gate near open
            (``sigmoid(2) = 0.88``) so the pretrained features pass at first.
    """

    def __init__(
        self,
        input_size: int,
        prompt_size: int,
        prompt_proj_size: int = 64,
        init_bias: float = 2.0,
    ):
        super().__init__()
        self.prompt_proj = torch.nn.Sequential(
            torch.nn.LayerNorm(prompt_size), torch.nn.Linear(prompt_size, prompt_proj_size)
        )
        self.gate = torch.nn.Linear(input_size + prompt_proj_size, input_size)
        torch.nn.init.xavier_uniform_(self.gate.weight, gain=0.1)
        torch.nn.init.constant_(self.gate.bias, init_bias)

    def forward(
        self, fused: torch.Tensor, lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        cond = self.prompt_proj(prompt_vec.to(fused.dtype))  # (B, P')
        cond = cond.unsqueeze(1).expand(-1, fused.size(1), -1)
        gate = torch.sigmoid(self.gate(torch.cat([fused, cond], dim=-1)))  # (B, T, D)
        mask = lengths_to_mask(lengths, fused.size(1)).unsqueeze(-1).to(gate.dtype)
        channel_mean = (gate * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, D)
        return gate * fused, {"gate_channel_mean": channel_mean.detach()}
