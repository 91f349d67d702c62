"""Use only one backbone layer: the last by default (the usual speech-LM baseline)."""

from typing import List, Tuple

import torch

from espnet_harmonifuse.fusion.abs_fusion import AbsFusion


class LastLayerFusion(AbsFusion):
    """All weight on one layer, for every prompt.

    Args:
        layer: the layer's index among the backbone's states (negative counts from the end;
            -1, the default, is the last layer).
    """

    reads_prompt = False

    def __init__(self, num_layers: int, input_size: int, prompt_size: int, layer: int = -1):
        super().__init__()
        if not -num_layers <= layer < num_layers:
            raise ValueError(f"fusion_conf.layer {layer} is out of range for a backbone with {num_layers} layers")
        self.num_layers = num_layers
        self.layer = layer % num_layers

    def layer_weights(self, prompt_vec: torch.Tensor) -> torch.Tensor:
        weights = prompt_vec.new_zeros(prompt_vec.size(0), self.num_layers)
        weights[:, self.layer] = 1.0
        return weights

    def forward(
        self, states: List[torch.Tensor], lengths: torch.Tensor, prompt_vec: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        return states[self.layer], self.layer_weights(prompt_vec)
