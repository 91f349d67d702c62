"""Any Hugging Face causal LM as the HarmoniFuse decoder, optionally with LoRA."""

import inspect
from typing import Any, Optional, Tuple

import torch

from espnet_harmonifuse.decoder.abs_decoder import AbsDecoder
from espnet_harmonifuse.utils.hf import load_hf_model


class HFCausalLMDecoder(AbsDecoder):
    """A causal LM by hub name / local dir (pretrained) or built from an inline config.

    Args:
        model_name_or_path: e.g. ``Qwen/Qwen2.5-1.5B-Instruct`` or a local
            ``save_pretrained`` directory.
        config: alternatively a config dict with ``model_type`` (random init),
            e.g. ``{model_type: qwen2, hidden_size: 128, num_hidden_layers: 2, ...}``.
            ``vocab_size`` and the special token ids are filled in from the
            tokenizer by the task when absent.
        freeze: freeze the LM's own weights (LoRA weights stay trainable).
        lora_conf: peft ``LoraConfig`` arguments (``r``, ``lora_alpha``,
            ``lora_dropout``, ``target_modules``), or None for no LoRA.
        dtype: weight dtype of the LM (``float32``, ``bfloat16``, ``float16``).
        gradient_checkpointing: trade compute for memory in the LM.
    """

    def __init__(
        self,
        model_name_or_path: Optional[str] = "Qwen/Qwen2.5-1.5B-Instruct",
        config: Optional[dict] = None,
        freeze: bool = True,
        lora_conf: Optional[dict] = None,
        dtype: str = "float32",
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        from transformers import AutoModelForCausalLM

        if config is not None:
            model_name_or_path = None
        model = load_hf_model(
            AutoModelForCausalLM,
            model_name_or_path,
            config,
            "decoder_conf",
            dtype=getattr(torch, dtype),
        )
        if gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if freeze:
            model.requires_grad_(False)
        if lora_conf:
            from peft import LoraConfig, get_peft_model

            conf = dict(lora_conf)
            conf.setdefault("task_type", "CAUSAL_LM")
            model = get_peft_model(model, LoraConfig(**conf))
            if not freeze:  # peft freezes the base model; honour freeze: false
                for p in model.parameters():
                    p.requires_grad_(True)
        self.lm = model
        self.freeze = freeze
        self.keep_dtype = dtype != "float32"
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        # transformers >= 5.2x calls the KV cache "cache", older versions "past_key_values"
        self._cache_kw = "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def _apply(self, fn, recurse=True):
        """``Module.to`` / ``.float()`` move the LM between devices but keep each of its tensors'
        dtype when ``dtype`` is not float32: ESPnet casts the whole model to ``--train_dtype``
        (float32) after building it, which would undo a bf16 LLM (and double its memory). Set
        ``keep_dtype = False`` to cast the LLM too (``HarmoniFuse(..., dtype=...)`` does)."""
        if not self.keep_dtype:
            return super()._apply(fn, recurse)

        def same_dtype(t: torch.Tensor) -> torch.Tensor:
            out = fn(t)
            return out.to(t.dtype) if t.is_floating_point() and out.dtype != t.dtype else out

        return super()._apply(same_dtype, recurse)

    @property
    def hidden_size(self) -> int:
        return self.lm.config.hidden_size

    @property
    def vocab_size(self) -> int:
        return self.lm.get_input_embeddings().num_embeddings

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Optional[Any] = None,
        use_cache: bool = False,
    ) -> Tuple[torch.Tensor, Optional[Any]]:
        out = self.lm(
            inputs_embeds=inputs_embeds.to(self.lm.dtype),
            attention_mask=attention_mask.long(),
            position_ids=position_ids,
            use_cache=use_cache,
            **{self._cache_kw: past_key_values},
        )
        return out.logits.float(), (getattr(out, self._cache_kw) if use_cache else None)
