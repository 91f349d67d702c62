"""Tests of espnet_harmonifuse.utils.plots: each figure draws the data it is given."""

import math
import warnings

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from espnet_harmonifuse.utils.plots import (
    confusion_figure,
    curve_figure,
    gate_stats_figure,
    layer_weights_figure,
    load_reporter_stats,
    plot_confusion,
    plot_gate_stats,
    plot_layer_weights,
    plot_training_curves,
)


def _lines(ax):
    """``{legend label: y data}`` of the Axes' lines."""
    return {line.get_label(): np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()}


def _png_matches(path, fig) -> None:
    """The PNG at ``path`` has the pixels of ``fig`` saved the same way (100 dpi, tight layout)."""
    fig.tight_layout()
    fig.canvas.draw()
    want = np.asarray(fig.canvas.buffer_rgba(), dtype=np.float32)[..., :3] / 255
    plt.close(fig)
    got = mpimg.imread(path)[..., :3]
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-2


def test_confusion_figure_colours_row_percentages_and_writes_counts():
    m = np.array([[5, 1, 0, 1], [0, 3, 1, 0], [0, 0, 0, 0]])
    fig = confusion_figure(m, ["a", "b", "c"], ["a", "b", "c", "<other>"], "conf")
    ax = fig.axes[0]
    colour = np.asarray(ax.images[0].get_array())
    want = np.zeros((3, 4))
    want[:2] = 100.0 * m[:2] / m[:2].sum(axis=1, keepdims=True)  # an empty row stays at 0 %
    np.testing.assert_allclose(colour, want)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert len(cells) == m.size
    for (i, j), text in cells.items():
        count, pct = text.split("\n")
        assert int(count) == m[i, j] and float(pct.rstrip("%")) == pytest.approx(want[i, j], abs=0.05)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "<other>"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    plt.close(fig)
    with pytest.raises(ValueError, match=r"matrix shape \(3, 4\) does not match labels \(1, 1\)"):
        confusion_figure(m, ["a"], ["a"])


def test_layer_weights_figure_draws_the_mean_band_and_static_weights():
    rng = np.random.default_rng(0)
    w = rng.random((5, 13))
    w /= w.sum(axis=1, keepdims=True)
    static = rng.random(13)
    fig = layer_weights_figure({"asr": w, "ser": w[0]}, "layers", static=static)
    ax = fig.axes[0]
    lines = _lines(ax)
    assert list(lines) == ["asr (5 prompts)", "ser (1 prompts)", "static"]
    np.testing.assert_allclose(lines["asr (5 prompts)"], w.mean(axis=0))
    np.testing.assert_allclose(lines["ser (1 prompts)"], w[0])
    np.testing.assert_allclose(lines["static"], static)
    # one min-max band, for the task with several prompts: its edges at each layer are min and max
    assert len(ax.collections) == 1
    vertices = ax.collections[0].get_paths()[0].vertices
    for layer in range(13):
        ys = vertices[np.isclose(vertices[:, 0], layer), 1]
        np.testing.assert_allclose([ys.min(), ys.max()], [w[:, layer].min(), w[:, layer].max()])
    plt.close(fig)


def test_gate_stats_figure_histograms_the_finite_gate_values():
    rng = np.random.default_rng(0)
    asr = rng.random(256)
    ser = np.concatenate([np.full(100, 0.8), [np.nan, np.inf]])
    fig = gate_stats_figure({"asr": asr, "ser": ser}, "gates")
    ax = fig.axes[0]
    heights = np.array([p.get_height() for p in ax.patches]).reshape(2, 40)
    bins = np.linspace(0.0, 1.0, 41)
    np.testing.assert_array_equal(heights[0], np.histogram(asr, bins)[0])
    np.testing.assert_array_equal(heights[1], np.histogram(np.full(100, 0.8), bins)[0])
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"asr (mean={asr.mean():.3f}, n=256)", "ser (mean=0.800, n=100)"]
    plt.close(fig)


def test_plot_functions_write_the_figure_they_draw(tmp_path):
    m = np.array([[5, 1], [2, 3]])
    weights = {"asr": np.array([[0.2, 0.8], [0.4, 0.6]])}
    gates = {"asr": np.linspace(0, 1, 64)}
    _png_matches(plot_confusion(m, ["a", "b"], ["a", "b"], tmp_path / "c.png", "t"), confusion_figure(m, ["a", "b"], ["a", "b"], "t"))
    _png_matches(plot_layer_weights(weights, tmp_path / "lw.png", "t"), layer_weights_figure(weights, "t"))
    _png_matches(plot_gate_stats(gates, tmp_path / "sub" / "g.png", "t"), gate_stats_figure(gates, "t"))


def _fake_checkpoint(exp_dir):
    """Build a real espnet2 Reporter state; the SER task is absent (NaN)."""
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    for epoch in range(1, 4):
        reporter.set_epoch(epoch)
        for phase in ("train", "valid"):
            with reporter.observe(phase) as sub:
                for step in range(3):
                    loss_asr = 3.0 / epoch + 0.1 * step + (phase == "valid")
                    stats = {"loss": 2 * loss_asr, "loss_asr": loss_asr,
                             "acc_asr": 0.2 * epoch, "loss_ser": math.nan}
                    if phase == "train":
                        stats["acc_ser"] = None  # registered as NaN
                    sub.register(stats)
                    sub.next()
    torch.save({"reporter": reporter.state_dict()}, exp_dir / "checkpoint.pth")


def test_training_curves_plot_the_logged_epoch_means(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN
        _fake_checkpoint(tmp_path)
    stats = load_reporter_stats(tmp_path)
    assert [s["epoch"] for s in stats] == [1, 2, 3]
    assert stats[1]["train"]["loss_asr"] == pytest.approx(1.5 + 0.1)
    assert math.isnan(stats[0]["valid"]["loss_ser"])
    assert "acc_ser" not in stats[0]["valid"]

    epochs = np.array([1.0, 2.0, 3.0])
    train_loss = 3.0 / epochs + 0.1  # the mean over the 3 steps of each epoch
    fig = curve_figure(stats, {"total": "loss", "asr": "loss_asr", "ser": "loss_ser"}, "Loss")
    lines = _lines(fig.axes[0])
    assert list(lines) == ["total (train)", "total (valid)", "asr (train)", "asr (valid)"]  # no SER data
    np.testing.assert_allclose(lines["asr (train)"], train_loss)
    np.testing.assert_allclose(lines["asr (valid)"], train_loss + 1)
    np.testing.assert_allclose(lines["total (valid)"], 2 * (train_loss + 1))
    assert all(list(line.get_xdata()) == [1, 2, 3] for line in fig.axes[0].get_lines())
    plt.close(fig)
    fig = curve_figure(stats, {"asr": "acc_asr"}, "Accuracy")
    np.testing.assert_allclose(_lines(fig.axes[0])["asr (train)"], 0.2 * epochs)
    plt.close(fig)
    fig = curve_figure(stats, {"ser": "acc_ser"}, "Accuracy")
    assert not fig.axes[0].get_lines() and [t.get_text() for t in fig.axes[0].texts] == ["no data"]
    plt.close(fig)

    paths = plot_training_curves(stats, tmp_path / "images", ["asr", "ser"])
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["loss_per_task.png", "acc_per_task.png"]
    _png_matches(paths[0], curve_figure(stats, {"total": "loss", "asr": "loss_asr", "ser": "loss_ser"}, "Loss"))
    _png_matches(paths[1], curve_figure(stats, {"asr": "acc_asr", "ser": "acc_ser"}, "Accuracy"))


def test_load_reporter_stats_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint.pth"):
        load_reporter_stats(tmp_path)
