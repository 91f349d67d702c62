"""A Conformer over log-mel filterbanks, trainable from scratch (the CPU recipes' backbone)."""

import contextlib
import logging
from typing import List, Optional, Tuple

import torch
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.frontend.default import DefaultFrontend
from espnet2.asr.specaug.specaug import SpecAug
from espnet2.layers.utterance_mvn import UtteranceMVN

from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
from espnet_harmonifuse.backbone.pitch import PitchFeatures
from espnet_harmonifuse.utils.masking import lengths_to_mask


class ConformerBackbone(AbsBackbone):
    """ESPnet's fbank frontend + utterance MVN + SpecAugment + ESPnet's ConformerEncoder.

    The states are the outputs of every Conformer block (the last one after the
    final layer norm), so ``num_layers == num_blocks``; with ``embedding_state`` the output of
    the subsampling layer comes first (``num_blocks + 1`` states, as ``hf_ssl`` gives L+1).

    Args:
        fs, n_fft, win_length, hop_length, n_mels: filterbank settings.
        output_size, attention_heads, linear_units, num_blocks, dropout_rate,
        input_layer: ConformerEncoder settings (``input_layer=conv2d`` subsamples 4x).
        normalize: feature normalisation: ``utterance`` (mean over the utterance
            per mel bin, ESPnet's UtteranceMVN: removes average pitch and
            loudness), ``frame`` (each frame over its mel bins: removes loudness,
            keeps the spectral shape and so pitch), or ``none``.
        pitch: append two pitch features per frame to the normalised filterbank (log-F0 in
            octaves re 150 Hz, 0 when unvoiced; the NCCF peak as voicing), as Kaldi's fbank+pitch.
            Forty mel bins hardly resolve a voice's harmonics, and SER needs its pitch.
        pitch_conf: PitchFeatures keyword arguments (f0_min, f0_max, voicing_threshold).
        embedding_state: also return the subsampling layer's output (the state before block 1).
        specaug_conf: SpecAug keyword arguments, or None for no SpecAugment.
        encoder_conf: any other ConformerEncoder keyword arguments. ``rel_pos_type`` defaults to
            ``latest`` here (ESPnet's own default is ``legacy``, which it marks deprecated): the
            legacy relative-position attention gives a frame other scores when the batch is
            padded longer, so an utterance's states depend on its batch.
        freeze: keep the weights fixed, in eval mode (no dropout, BatchNorm statistics kept,
            no SpecAugment) and out of the autograd graph: a pre-trained encoder (copied in
            with ``--init_param``) used as the paper uses WavLM.
        mask_padding: give every utterance of a batch the states it gets alone. ESPnet's
            encoder does not: its subsampling mask counts up to one frame of padding per
            convolution as valid (``conv2d6``: 11 frames where the utterance alone has 9), the
            depthwise convolutions see the padding, and the STFT's last frames see the padding
            where alone they see a reflection. In a batch with much padding those frames hold
            garbage that attention spreads over the utterance: on mini_emo, a model decoded 16
            utterances at a time in file order scored WER 22.3 against 13.8 decoding one at a
            time. With ``true``: exact subsampled lengths, padding zeroed before each depthwise
            convolution, and each utterance's end padded by reflection for the STFT; with the
            ``latest`` relative positions (see ``encoder_conf``) the states are then the same as
            alone, to float rounding. A model must be trained and decoded with the same setting.
    """

    def __init__(
        self,
        fs: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 1024,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        input_layer: str = "conv2d",
        normalize: str = "utterance",
        pitch: bool = False,
        pitch_conf: Optional[dict] = None,
        embedding_state: bool = False,
        specaug_conf: Optional[dict] = None,
        encoder_conf: Optional[dict] = None,
        freeze: bool = False,
        mask_padding: bool = True,
    ):
        super().__init__()
        self.frontend = DefaultFrontend(
            fs=fs, n_fft=n_fft, win_length=win_length, hop_length=hop_length, n_mels=n_mels
        )
        if normalize not in ("utterance", "frame", "none"):
            raise ValueError(f"backbone_conf.normalize must be utterance, frame or none, not '{normalize}'")
        self.normalize_kind = normalize
        self.normalize = UtteranceMVN() if normalize == "utterance" else None
        self.pitch = (
            PitchFeatures(fs=fs, win_length=win_length, hop_length=hop_length, **(pitch_conf or {})) if pitch else None
        )
        self.specaug = SpecAug(**specaug_conf) if specaug_conf else None
        self.encoder = ConformerEncoder(
            input_size=n_mels + (2 if pitch else 0),
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            input_layer=input_layer,
            **{"rel_pos_type": "latest", **(encoder_conf or {})},
        )
        self.feature_size = n_mels + (2 if pitch else 0)  # the encoder's input features per frame
        self._num_layers = num_blocks + int(embedding_state)
        self.embedding_state = embedding_state
        self.freeze = freeze
        self.mask_padding = mask_padding
        self._valid: Optional[torch.Tensor] = None  # (B, 1, T') after subsampling, set in each forward
        self._exact_lengths: Optional[torch.Tensor] = None
        if mask_padding and (encoder_conf or {}).get("rel_pos_type") == "legacy":
            logging.warning("backbone_conf: mask_padding with encoder_conf.rel_pos_type: legacy still lets the "
                            "padding change an utterance's states (the legacy relative positions do)")
        if mask_padding:
            if type(self.encoder.embed).__name__.startswith("Conv2dSubsampling"):  # those take and return the mask
                self.encoder.embed.register_forward_hook(self._exact_mask)
            for block in self.encoder.encoders:
                if getattr(block, "conv_module", None) is not None:
                    block.conv_module.depthwise_conv.register_forward_pre_hook(self._zero_padding)
        if freeze:
            self.requires_grad_(False)
            self.train(False)

    def _subsampled_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """The frames the subsampling convolutions output from ``lengths`` valid inputs (time axis)."""
        for m in self.encoder.embed.modules():
            if isinstance(m, torch.nn.Conv2d):
                k, s, p, d = m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0]
                lengths = torch.div(lengths + 2 * p - d * (k - 1) - 1, s, rounding_mode="floor") + 1
        return lengths.clamp(min=0)

    def _exact_mask(self, _module, _inputs, out):
        """Forward hook of the subsampling layer: replace its mask by the exact one."""
        if self._exact_lengths is None:  # called on its own, not from this backbone's forward
            return out
        x, mask = out
        self._valid = lengths_to_mask(self._exact_lengths.to(mask.device), mask.size(-1)).unsqueeze(1)  # (B, 1, T')
        return x, self._valid

    def _zero_padding(self, _module, inputs):
        x = inputs[0]  # (B, C, T') inside a convolution module
        if self._valid is None:
            return inputs
        return (x * self._valid.to(x.dtype),) + tuple(inputs[1:])

    def train(self, mode: bool = True):
        super().train(mode and not self.freeze)
        return self

    @property
    def num_layers(self) -> int:
        return self._num_layers

    def output_size(self) -> int:
        return self.encoder.output_size()

    def forward(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            return self._forward(speech, speech_lengths)

    def _forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        return self.encode(*self.features(speech, speech_lengths))

    @property
    def subsampling(self) -> int:
        """Input feature frames per output frame (6 for ``conv2d6``)."""
        return round(1200 / int(self._subsampled_lengths(torch.tensor([1200]))[0]))

    def features(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(feats (B, T, F), feat_lengths)``: the normalised filterbank (+ pitch) the encoder reads,
        after SpecAugment in training. ``forward`` is ``encode(*features(...))``."""
        speech = speech[:, : int(speech_lengths.max())]  # ESPnet's masks assume no extra padding
        stft_input = speech
        if self.mask_padding:  # each utterance's last STFT frames see its reflection, as alone
            stft_input = reflect_tails(speech, speech_lengths, self.frontend.stft.n_fft // 2)
        # under autocast a float32 model computes its features in float32, as ESPnet's frontend under
        # amp; a model cast to a lower precision (decoding in bf16) keeps them in its own dtype
        fp32_features = torch.is_autocast_enabled(speech.device.type) and next(self.encoder.parameters()).dtype == torch.float32
        with torch.autocast(speech.device.type, enabled=False) if fp32_features else contextlib.nullcontext():
            feats, feat_lengths = self.frontend(stft_input.float() if fp32_features else stft_input, speech_lengths)
        feats = feats[:, : int(feat_lengths.max())]  # the reflected tails add frames past every utterance's end
        if self.normalize_kind == "utterance":
            feats, feat_lengths = self.normalize(feats, feat_lengths)
        elif self.normalize_kind == "frame":
            feats = torch.nn.functional.layer_norm(feats, feats.shape[-1:])
        if self.pitch is not None:
            pitch, _ = self.pitch(speech, speech_lengths)
            pitch = torch.nn.functional.pad(pitch, (0, 0, 0, max(0, feats.size(1) - pitch.size(1))))
            feats = torch.cat([feats, pitch[:, : feats.size(1)].to(feats.dtype)], dim=-1)
        # SpecAugment after normalisation, so a masked region holds the mean (0). Masking
        # raw log-mels with 0 (far above their typical -10..0) and normalising afterwards
        # turns every masked frame into a loud artefact; on mini_emo that kept a CTC
        # model at 60 % CER where the same model without SpecAugment reached 10 %.
        if self.specaug is not None and self.training:
            feats, feat_lengths = self.specaug(feats, feat_lengths)
        return feats, feat_lengths

    def encode(self, feats: torch.Tensor, feat_lengths: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """The Conformer's states of every block from ``features`` (the states ``forward`` returns)."""
        embedded = []
        hook = None
        if self.embedding_state:  # subsampling returns (x, mask); with rel-pos, x is (x, pos_emb)
            hook = self.encoder.embed.register_forward_hook(lambda _m, _i, out: embedded.append(_first(out)))
        if self.mask_padding:
            self._exact_lengths = self._subsampled_lengths(feat_lengths)
            # no subsampling convolutions: the mask of the features (the hook replaces it otherwise)
            self._valid = lengths_to_mask(feat_lengths, feats.size(1)).unsqueeze(1)
        try:
            (last, hidden), lengths, _ = self.encoder(feats, feat_lengths, return_all_hs=True)
        finally:
            if hook is not None:
                hook.remove()
            self._valid = self._exact_lengths = None
        return embedded + list(hidden[:-1]) + [last], lengths


def reflect_tails(speech: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(B, T)`` -> ``(B, T + width)``: after each utterance's end, ``width`` samples of its
    reflection (``x[n-2], x[n-3], ...``, as ``torch.stft(center=True)`` pads a signal's end)."""
    out = torch.nn.functional.pad(speech, (0, width))
    j = torch.arange(width, device=speech.device)[None]
    n = lengths.to(speech.device).long()[:, None]
    src = (n - 2 - j).clamp(min=0)
    return out.scatter(1, n + j, speech.gather(1, src))


def _first(x):
    """The state inside ESPnet's nested (state, pos_emb / mask) tuples."""
    while isinstance(x, tuple):
        x = x[0]
    return x
