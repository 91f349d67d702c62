"""Use only the backbone's last layer (the usual speech-LM baseline)."""

from typing import List, Tuple

import torch

from espnet_harmonifuse.fusion.abs_fusion import AbsFusion


class LastLayerFusion(AbsFusion):
    def __init__(self, num_layers: int, input_size: int, prompt_size: int):
        super().__init__()
        self.num_layers = num_layers

    def layer_weights(self, prompt_vec: torch.Tensor) -> torch.Tensor:
        weights = prompt_vec.new_zeros(prompt_vec.size(0), self.num_layers)
        weights[:, -1] = 1.0
        return weights

    def forward(
        self, states: List[torch.Tensor], lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return states[-1], self.layer_weights(prompt_vec)
