"""Self-supervised speech models from Hugging Face (WavLM, HuBERT, wav2vec2)."""

from typing import List, Optional, Tuple

import torch

from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
from espnet_harmonifuse.utils.hf import load_hf_model
from espnet_harmonifuse.utils.masking import lengths_to_mask


class HFSSLBackbone(AbsBackbone):
    """A Hugging Face speech encoder giving all its hidden states.

    Args:
        model_name_or_path: hub name (e.g. ``microsoft/wavlm-large``) or a local
            directory written by ``save_pretrained``.
        config: alternatively, an inline config dict with ``model_type`` (random init).
        freeze: keep the backbone's weights fixed (and in eval mode).
        normalize_waveform: zero-mean unit-variance per utterance, as the
            WavLM-Large / wav2vec2-large feature extractors do.
        use_attention_mask: pass the padding mask to the model (right for
            models with ``feat_extract_norm=layer``, e.g. WavLM-Large).
    """

    def __init__(
        self,
        model_name_or_path: Optional[str] = "microsoft/wavlm-large",
        config: Optional[dict] = None,
        freeze: bool = True,
        normalize_waveform: bool = True,
        use_attention_mask: bool = True,
    ):
        super().__init__()
        from transformers import AutoModel

        if config is not None:
            model_name_or_path = None
        self.model = load_hf_model(AutoModel, model_name_or_path, config, "backbone_conf")
        if hasattr(self.model, "masked_spec_embed") and freeze:
            self.model.config.apply_spec_augment = False
        # LayerDrop skips whole layers in training, and with them their hidden states: the fusion
        # reads every layer, so a layer must never be dropped
        if getattr(self.model.config, "layerdrop", 0.0):
            self.model.config.layerdrop = 0.0
        self.freeze = freeze
        self.normalize_waveform = normalize_waveform
        self.use_attention_mask = use_attention_mask
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers + 1

    def output_size(self) -> int:
        return self.model.config.hidden_size

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        mask = lengths_to_mask(speech_lengths, speech.size(1))
        if self.normalize_waveform:
            m = mask.to(speech.dtype)
            n = m.sum(1, keepdim=True).clamp(min=1.0)
            mean = (speech * m).sum(1, keepdim=True) / n
            var = (((speech - mean) * m) ** 2).sum(1, keepdim=True) / n
            speech = (speech - mean) / torch.sqrt(var + 1e-7) * m
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            out = self.model(
                speech,
                attention_mask=mask.long() if self.use_attention_mask else None,
                output_hidden_states=True,
            )
        lengths = self.model._get_feat_extract_output_lengths(speech_lengths)
        states = list(out.hidden_states)
        lengths = lengths.clamp(max=states[0].size(1))
        return states, lengths
