"""Tests of espnet_harmonifuse.utils.plots (each plot writes a sane PNG)."""

import math
import warnings

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

from espnet_harmonifuse.utils.plots import (
    load_reporter_stats,
    plot_confusion,
    plot_gate_stats,
    plot_layer_weights,
    plot_training_curves,
)


def _check_png(path) -> None:
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    h, w = img.shape[:2]
    assert 100 <= h <= 4000 and 100 <= w <= 4000
    assert img.std() > 0  # not a blank image


def test_plot_confusion(tmp_path):
    m = np.array([[5, 1, 0, 1], [0, 3, 1, 0], [2, 0, 0, 0]])
    p = plot_confusion(m, ["a", "b", "c"], ["a", "b", "c", "<other>"],
                       tmp_path / "c.png", "conf")
    _check_png(p)
    with pytest.raises(ValueError):
        plot_confusion(m, ["a"], ["a"], tmp_path / "bad.png", "bad")


def test_plot_layer_weights(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.random((5, 13))
    w /= w.sum(axis=1, keepdims=True)
    static = np.full(13, 1 / 13)
    p = plot_layer_weights({"asr": w, "ser": w[0]}, tmp_path / "lw.png",
                           "layers", static=static)
    _check_png(p)


def test_plot_gate_stats(tmp_path):
    rng = np.random.default_rng(0)
    p = plot_gate_stats({"asr": rng.random(256), "ser": np.full(256, 0.5)},
                        tmp_path / "sub" / "gate.png", "gates")
    _check_png(p)


def _fake_checkpoint(exp_dir):
    """Build a real espnet2 Reporter state; the SER task is absent (NaN)."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    for epoch in range(1, 4):
        reporter.set_epoch(epoch)
        for phase in ("train", "valid"):
            with reporter.observe(phase) as sub:
                for step in range(3):
                    loss_asr = 3.0 / epoch + 0.1 * step
                    stats = {"loss": loss_asr, "loss_asr": loss_asr,
                             "acc_asr": 0.2 * epoch, "loss_ser": math.nan}
                    if phase == "train":
                        stats["acc_ser"] = None  # registered as NaN
                    sub.register(stats)
                    sub.next()
    torch.save({"reporter": reporter.state_dict()}, exp_dir / "checkpoint.pth")


def test_plot_training_curves(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN
        _fake_checkpoint(tmp_path)
    stats = load_reporter_stats(tmp_path)
    assert [s["epoch"] for s in stats] == [1, 2, 3]
    assert stats[1]["train"]["loss_asr"] == pytest.approx(1.5 + 0.1)
    assert math.isnan(stats[0]["valid"]["loss_ser"])
    assert "acc_ser" not in stats[0]["valid"]
    paths = plot_training_curves(stats, tmp_path / "images", ["asr", "ser"])
    assert [p.rsplit("/", 1)[-1] for p in paths] == [
        "loss_per_task.png", "acc_per_task.png"
    ]
    for p in paths:
        _check_png(p)


def test_load_reporter_stats_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pth"):
        load_reporter_stats(tmp_path)
