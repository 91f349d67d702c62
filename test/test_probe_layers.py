"""The per-layer linear probe: UA arithmetic, and a label that is readable from every layer."""

import numpy as np
import pytest
import torch
from conftest import ASR_TEXTS, toy_wave, write_task_dir

from espnet_harmonifuse.bin.probe_layers import probe, unweighted_accuracy
from espnet_harmonifuse.tasks import HarmoniFuseTask


def test_unweighted_accuracy_is_the_mean_per_class_recall():
    # class 0: 3 of 4 right; class 1: 1 of 2 right -> (0.75 + 0.5) / 2
    assert unweighted_accuracy([0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 1, 1]) == pytest.approx(0.625)


def _pitch_dir(root, name, seeds):
    # toy_wave's first tone is 200 + 150 * (seed % 7) Hz: "low" below 500 Hz
    items = [(f"u{s:03d}", toy_wave(s, 0.4), "low" if s % 7 < 2 else "high") for s in seeds]
    return write_task_dir(root, name, items)


def test_probe_reads_the_pitch_class_from_a_random_conformer(make_args, tmp_path):
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(make_args())
    _pitch_dir(tmp_path, "train", range(0, 42))
    _pitch_dir(tmp_path, "test", range(42, 70))
    out = probe(model.backbone, str(tmp_path / "train"), [str(tmp_path / "test")])
    ua = out[str(tmp_path / "test")]
    assert len(ua) == model.backbone.num_layers == 3
    assert min(ua) >= 0.8, ua  # chance is 0.5: the tone frequency survives every random layer


def test_probe_refuses_eval_labels_unseen_in_training(make_args, tmp_path):
    model = HarmoniFuseTask.build_model(make_args())
    _pitch_dir(tmp_path, "train", range(0, 6))
    write_task_dir(tmp_path, "test", [("v1", toy_wave(1, 0.4), "medium")])
    with pytest.raises(ValueError, match="medium"):
        probe(model.backbone, str(tmp_path / "train"), [str(tmp_path / "test")])


class _ToneReader(torch.nn.Module):
    """A stand-in backbone of two layers over 60 ms frames: layer 1 is noise, layer 2 one-hot of the
    tone that carries a token in :func:`_spoken` (0: silence)."""

    num_layers = 2
    frame = 960

    def output_size(self):
        return 64

    def forward(self, speech, lengths):
        n = int(lengths[0]) // self.frame
        frames = speech[0, : n * self.frame].reshape(n, self.frame)
        spec = torch.fft.rfft(frames).abs()
        ids = ((torch.fft.rfftfreq(self.frame, 1 / 16000)[spec.argmax(-1)] - 300) / 40).round().long() + 1
        ids[spec.max(-1).values < 1.0] = 0
        onehot = torch.nn.functional.one_hot(ids.clamp(0, 63), 64).float()
        return [torch.randn(1, n, 64), onehot.unsqueeze(0)], torch.tensor([n])


def _spoken(ids):
    """Each token a 120 ms tone at 300 + 40 * id Hz, then 60 ms of silence."""
    t = np.arange(1920) / 16000
    parts = [np.concatenate([np.sin(2 * np.pi * (300 + 40 * i) * t), np.zeros(960)]) for i in ids]
    return np.concatenate(parts).astype(np.float32)


def test_asr_probe_finds_the_layer_that_carries_the_transcript(bpemodel, tmp_path):
    import sentencepiece as spm

    from espnet_harmonifuse.bin.probe_layers import asr_probe

    sp = spm.SentencePieceProcessor(model_file=bpemodel)
    words = sorted({w for t in ASR_TEXTS for w in t.split()})
    rng = np.random.default_rng(0)

    def items(prefix, n):
        texts = [" ".join(rng.choice(words, size=3)) for _ in range(n)]
        return [(f"{prefix}{i:02d}", _spoken(sp.encode(t)), t) for i, t in enumerate(texts)]

    write_task_dir(tmp_path, "train", items("a", 40))
    write_task_dir(tmp_path, "test", items("b", 10))
    cer = asr_probe(_ToneReader(), str(tmp_path / "train"), [str(tmp_path / "test")], bpemodel, epochs=150)
    noise, tones = cer[str(tmp_path / "test")]
    assert tones < 15 < 60 < noise, (noise, tones)
