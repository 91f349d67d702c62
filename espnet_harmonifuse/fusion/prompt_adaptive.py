"""Prompt-adaptive dynamic fusion: layer weights that depend on the task prompt."""

import torch

from espnet_harmonifuse.fusion.static import StaticFusion


class PromptAdaptiveFusion(StaticFusion):
    """``alpha = softmax((w + s * f(p)) / temperature)``, ``H = sum_l alpha_l H_l``.

    ``w`` is the static vector shared by all prompts, ``f`` a two-layer MLP of
    the layer-normalised pooled prompt vector ``p``.  The last layer of ``f`` starts at zero, so
    training starts from the static model and moves away from it only as far as
    the tasks ask for.

    Args:
        num_layers, input_size, prompt_size, temperature, layer_norm: see StaticFusion.
        hidden_size: hidden size of ``f``.
        prompt_scale: ``s``. Under Adam every weight of ``f``'s output layer moves by about the
            learning rate per step, in step with the others, so ``f(p)`` can move ``hidden_size``
            times faster than one static logit ``w_l`` and saturate the softmax on one layer
            early. ``1 / hidden_size`` lets ``f(p)`` move about as fast as ``w``.
    """

    reads_prompt = True

    def __init__(
        self,
        num_layers: int,
        input_size: int,
        prompt_size: int,
        hidden_size: int = 256,
        temperature: float = 1.0,
        layer_norm: bool = False,
        prompt_scale: float = 1.0,
    ):
        super().__init__(num_layers, input_size, prompt_size, temperature, layer_norm)
        if prompt_scale <= 0:
            raise ValueError(f"fusion_conf.prompt_scale must be positive, got {prompt_scale}")
        self.prompt_scale = prompt_scale
        self.prompt_mlp = torch.nn.Sequential(
            torch.nn.LayerNorm(prompt_size),  # LLM embeddings are small; make f scale-free
            torch.nn.Linear(prompt_size, hidden_size),
            torch.nn.Tanh(),
            torch.nn.Linear(hidden_size, num_layers),
        )
        torch.nn.init.zeros_(self.prompt_mlp[-1].weight)
        torch.nn.init.zeros_(self.prompt_mlp[-1].bias)

    def layer_weights(self, prompt_vec: torch.Tensor) -> torch.Tensor:
        logits = self.layer_logits + self.prompt_scale * self.prompt_mlp(prompt_vec.to(self.layer_logits.dtype))
        return torch.softmax(logits / self.temperature, dim=-1)
