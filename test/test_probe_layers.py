"""The per-layer linear probe: UA arithmetic, and a label that is readable from every layer."""

import pytest
import torch
from conftest import toy_wave, write_task_dir

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
