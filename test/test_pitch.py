"""Pitch features and the Conformer's optional pitch input and embedding state."""

import numpy as np
import pytest
import torch

from espnet_harmonifuse.backbone.conformer import ConformerBackbone
from espnet_harmonifuse.backbone.pitch import PitchFeatures


def harmonic_tone(f0: float, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A voice-like tone: the fundamental and four weaker harmonics, plus a little noise."""
    t = np.arange(int(16000 * seconds)) / 16000
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6))
    x = x + 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return torch.tensor(x, dtype=torch.float32)


@pytest.mark.parametrize("f0", [70.0, 110.0, 150.0, 230.0, 370.0])
def test_pitch_of_a_harmonic_tone(f0):
    """The tracked F0 is the fundamental, not a sub- or higher harmonic, and the frame is voiced."""
    x = harmonic_tone(f0)
    feats, lengths = PitchFeatures()(x[None], torch.tensor([x.numel()]))
    assert feats.shape == (1, x.numel() // 160 + 1, 2) and lengths.tolist() == [feats.size(1)]
    inner = feats[0, 5:-5]
    assert 150 * 2 ** inner[:, 0].median().item() == pytest.approx(f0, rel=0.03)
    assert inner[:, 1].min().item() > 0.8


def test_noise_is_unvoiced_and_padding_gives_per_item_lengths():
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal(16000).astype(np.float32))
    tone = harmonic_tone(200.0, 0.5)
    batch = torch.nn.utils.rnn.pad_sequence([noise, tone], batch_first=True)
    feats, lengths = PitchFeatures()(batch, torch.tensor([16000, 8000]))
    assert lengths.tolist() == [101, 51]
    assert (feats[0, :, 0] != 0).float().mean().item() < 0.1  # noise: hardly any voiced frame
    assert (feats[1, 5:45, 0] != 0).all()


def test_pitch_search_range_is_checked():
    with pytest.raises(ValueError, match="f0_min"):
        PitchFeatures(f0_min=500.0)


def small_backbone(**kw) -> ConformerBackbone:
    torch.manual_seed(0)
    return ConformerBackbone(n_mels=40, output_size=32, attention_heads=2, linear_units=64, num_blocks=2,
                             input_layer="conv2d6", normalize="frame", **kw).eval()


def test_conformer_pitch_input_and_embedding_state():
    """pitch adds two input features; embedding_state puts the subsampling output first."""
    plain, rich = small_backbone(), small_backbone(pitch=True, embedding_state=True)
    assert rich.encoder.embed.conv[0].in_channels == 1 and rich.num_layers == 3 and plain.num_layers == 2
    x, n = harmonic_tone(120.0)[None], torch.tensor([16000])
    with torch.no_grad():
        states, lengths = rich(x, n)
        emb = rich.encoder.embed(torch.zeros(1, 101, 42), None)
    assert len(states) == 3 and all(s.shape == (1, int(lengths[0]), 32) for s in states)
    assert emb[0][0].shape == states[0].shape  # the first state is the subsampling layer's output
    # the same tone an octave higher changes the input features only through the pitch track
    feats_low, _ = rich.pitch(x, n)
    feats_high, _ = rich.pitch(harmonic_tone(240.0)[None], n)
    assert (feats_high[0, 5:-5, 0] - feats_low[0, 5:-5, 0]).median().item() == pytest.approx(1.0, abs=0.05)
