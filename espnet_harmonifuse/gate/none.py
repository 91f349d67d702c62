"""No gate: the fused states pass unchanged (ablation)."""

from typing import Dict, Tuple

import torch

from espnet_harmonifuse.gate.abs_gate import AbsGate


class NoGate(AbsGate):
    reads_prompt = False

    def __init__(self, input_size: int, prompt_size: int):
        super().__init__()

    def forward(
        self, fused: torch.Tensor, lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        return fused, {}
