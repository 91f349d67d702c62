"""Interface of the LLM decoder: embeddings in, next-token logits out."""

from abc import ABC, abstractmethod
from typing import Any, Optional, Tuple

import torch


class AbsDecoder(torch.nn.Module, ABC):
    """A causal LM that reads input embeddings.

    ``embed(ids)`` gives the LM's own input embeddings; ``forward`` runs the LM on
    ``inputs_embeds (B, N, H)`` with an attention mask and explicit position ids
    (so left-padded batches decode like single utterances) and returns logits
    ``(B, N, V)`` and the KV cache when ``use_cache``.
    """

    @property
    @abstractmethod
    def hidden_size(self) -> int: ...

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def embed(self, ids: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Optional[Any] = None,
        use_cache: bool = False,
    ) -> Tuple[torch.Tensor, Optional[Any]]:
        """Logits ``(B, N, V)`` in float32, and the KV cache (``None`` unless ``use_cache``).

        Args:
            inputs_embeds: ``(B, N, H)`` LLM input embeddings.
            attention_mask: ``(B, N)``, true at real positions (left padding is false).
            position_ids: ``(B, N)``, counted from each sample's first real position.
            past_key_values: the cache of an earlier call, to continue a generation.
            use_cache: return the cache.
        """
        raise NotImplementedError
