"""Plotting helpers (matplotlib, Agg backend); each ``plot_*`` writes one PNG file.

* :func:`plot_confusion` - SER confusion matrix.
* :func:`plot_layer_weights` - per-task layer-weight distributions.
* :func:`plot_gate_stats` - per-task histograms of per-channel gate means.
* :func:`plot_training_curves` - per-task loss / accuracy vs. epoch from the
  ESPnet reporter state (see :func:`load_reporter_stats`).

Each ``plot_*`` draws with the matching ``*_figure`` function, which returns the
matplotlib Figure (its Axes hold the plotted data) without writing anything.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

PathLike = Union[str, Path]
EpochStats = Dict[str, object]  # {"epoch": int, "train": {...}, "valid": {...}}


def _save(fig: "plt.Figure", path: PathLike) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def confusion_figure(
    matrix: Union[np.ndarray, Sequence[Sequence[int]]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str = "Confusion matrix",
) -> "plt.Figure":
    """Confusion matrix (rows: reference, columns: hypothesis).

    Cells show the count and the row-normalised percentage; the colour is
    the row-normalised percentage.
    """
    m = np.asarray(matrix, dtype=float)
    if m.shape != (len(row_labels), len(col_labels)):
        raise ValueError(
            f"matrix shape {m.shape} does not match labels "
            f"({len(row_labels)}, {len(col_labels)})"
        )
    rows = m.sum(axis=1, keepdims=True)
    pct = np.divide(100.0 * m, rows, out=np.zeros_like(m), where=rows > 0)
    size = 1.2 + 0.9 * max(len(row_labels), len(col_labels))
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(pct, cmap="Blues", vmin=0.0, vmax=100.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row %")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            color = "white" if pct[i, j] > 50 else "black"
            ax.text(
                j, i, f"{int(m[i, j])}\n{pct[i, j]:.1f}%",
                ha="center", va="center", color=color, fontsize=8,
            )
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=45)
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    ax.set_xlabel("Hypothesis")
    ax.set_ylabel("Reference")
    ax.set_title(title)
    return fig


def plot_confusion(
    matrix: Union[np.ndarray, Sequence[Sequence[int]]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: PathLike,
    title: str = "Confusion matrix",
) -> str:
    """Write :func:`confusion_figure` to ``path``; returns the path."""
    return _save(confusion_figure(matrix, row_labels, col_labels, title), path)


def layer_weights_figure(
    weights: Mapping[str, np.ndarray],
    title: str = "Layer weights",
    static: Optional[np.ndarray] = None,
    rows: str = "prompts",
) -> "plt.Figure":
    """Per-task layer-weight distribution over layers ``0..L``.

    Each value is ``(L+1,)`` or ``(n_prompts, L+1)``; the mean over prompts
    is drawn as a curve with the min-max band across prompts.  ``static``
    (a single ``(L+1,)`` vector, e.g. a static weighted-sum model) is drawn
    in grey. ``rows`` names what the rows are in the legend ("3 prompts").
    """
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for task, w in weights.items():
        arr = np.atleast_2d(np.asarray(w, dtype=float))
        x = np.arange(arr.shape[1])
        (line,) = ax.plot(x, arr.mean(axis=0), marker="o", ms=3,
                          label=f"{task} ({arr.shape[0]} {rows})")
        if arr.shape[0] > 1:
            ax.fill_between(x, arr.min(axis=0), arr.max(axis=0),
                            color=line.get_color(), alpha=0.2)
    if static is not None:
        s = np.asarray(static, dtype=float).reshape(-1)
        ax.plot(np.arange(s.size), s, color="grey", ls="--", marker="s",
                ms=3, label="static")
    n_layers = max(np.atleast_2d(np.asarray(w)).shape[1] for w in weights.values()) if weights else 0
    ax.set_xticks(np.arange(n_layers))  # layers are integers
    ax.set_xlabel("Layer")
    ax.set_ylabel("Weight")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_layer_weights(
    weights: Mapping[str, np.ndarray],
    path: PathLike,
    title: str = "Layer weights",
    static: Optional[np.ndarray] = None,
    rows: str = "prompts",
) -> str:
    """Write :func:`layer_weights_figure` to ``path``; returns the path."""
    return _save(layer_weights_figure(weights, title, static, rows), path)


def gate_stats_figure(stats: Mapping[str, np.ndarray], title: str = "Gate values") -> "plt.Figure":
    """Per-task histogram of per-channel mean gate values in [0, 1]."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bins = np.linspace(0.0, 1.0, 41)
    for task, v in stats.items():
        arr = np.asarray(v, dtype=float).reshape(-1)
        arr = arr[np.isfinite(arr)]
        mean = float(arr.mean()) if arr.size else float("nan")
        ax.hist(np.clip(arr, 0.0, 1.0), bins=bins, alpha=0.5,
                label=f"{task} (mean={mean:.3f}, n={arr.size})")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("Per-channel mean gate value")
    ax.set_ylabel("# channels")
    ax.set_title(title)
    ax.legend()
    return fig


def plot_gate_stats(
    stats: Mapping[str, np.ndarray],
    path: PathLike,
    title: str = "Gate values",
) -> str:
    """Write :func:`gate_stats_figure` to ``path``; returns the path."""
    return _save(gate_stats_figure(stats, title), path)


def _as_float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _series(stats: Sequence[EpochStats], phase: str, key: str) -> np.ndarray:
    vals = []
    for e in stats:
        d = e.get(phase) or {}
        vals.append(_as_float(d.get(key)) if isinstance(d, dict) else math.nan)
    return np.asarray(vals, dtype=float)


def curve_figure(stats: Sequence[EpochStats], keys: Dict[str, str], ylabel: str) -> "plt.Figure":
    """One curve per ``{name: stats key}`` and phase (train solid, valid dashed) over the epochs;
    a series with no finite value is left out."""
    epochs = [int(e["epoch"]) for e in stats]  # type: ignore[call-overload]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    plotted = 0
    for i, (name, key) in enumerate(keys.items()):
        color = f"C{i}"
        for phase, ls in (("train", "-"), ("valid", "--")):
            y = _series(stats, phase, key)
            if np.isfinite(y).any():
                ax.plot(epochs, y, ls=ls, marker="o", ms=3, color=color,
                        label=f"{name} ({phase})")
                plotted += 1
    if plotted:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center",
                transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.set_title(f"{ylabel} per task")
    return fig


def plot_training_curves(
    stats: Sequence[EpochStats], out_dir: PathLike, tasks: Sequence[str]
) -> List[str]:
    """Write ``loss_per_task.png`` and ``acc_per_task.png`` in ``out_dir``.

    ``stats`` is a list (sorted by epoch) of ``{"epoch": e, "train": {...},
    "valid": {...}}``; keys ``loss`` (total), ``loss_<task>`` and
    ``acc_<task>`` are plotted, NaN / missing values are skipped.
    """
    out = Path(out_dir)
    loss_keys = {"total": "loss"}
    loss_keys.update({t: f"loss_{t}" for t in tasks})
    acc_keys = {t: f"acc_{t}" for t in tasks}
    return [
        _save(curve_figure(stats, loss_keys, "Loss"), out / "loss_per_task.png"),
        _save(curve_figure(stats, acc_keys, "Accuracy"), out / "acc_per_task.png"),
    ]


def reporter_state_to_stats(state: Mapping[str, object]) -> List[EpochStats]:
    """Convert ``espnet2.train.reporter.Reporter.state_dict()`` to a list.

    The state is ``{"epoch": int, "stats": {epoch: {"train": {key: value},
    "valid": {...}, ...}}}``.
    """
    raw = state.get("stats")
    if not isinstance(raw, dict):
        raise ValueError("Reporter state has no 'stats' dict")
    out: List[EpochStats] = []
    for epoch in sorted(raw):
        entry: EpochStats = {"epoch": int(epoch)}
        entry.update({k: dict(v) for k, v in raw[epoch].items()})
        out.append(entry)
    return out


def load_reporter_stats(exp_dir: PathLike) -> List[EpochStats]:
    """Read ``exp_dir/checkpoint.pth`` and return per-epoch reporter stats."""
    from espnet_harmonifuse.utils.checkpoint import safe_torch_load

    ckpt = Path(exp_dir) / "checkpoint.pth"
    if not ckpt.is_file():
        raise FileNotFoundError(f"Training checkpoint not found: {ckpt}")
    states = safe_torch_load(ckpt)
    if "reporter" not in states:
        raise KeyError(f"No 'reporter' entry in {ckpt}")
    return reporter_state_to_stats(states["reporter"])
