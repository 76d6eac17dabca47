"""Figures of scores, ROC, anomaly weight and losses. Figures are returned, not saved.

Every figure is a plain :class:`matplotlib.figure.Figure` (no pyplot, so no global figure
registry, no GUI backend and nothing to close); :func:`save_figure` writes one as PNG and
:func:`png_bytes` gives the PNG bytes for embedding. This module does not import torch.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from .files import atomic_write, writable_dir

_DPI = 100
_RAW = "#9aa5b1"
_SMOOTH = "#1f5fa8"
_ABNORMAL = "#e4572e"


def abnormal_spans(labels: np.ndarray) -> list[tuple[int, int]]:
    """Runs of 1 in a 0/1 sequence as half-open frame ranges ``[start, stop)``."""
    lab = np.asarray(labels).astype(bool).astype(np.int8)
    edges = np.diff(np.r_[0, lab, 0])
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def score_figure(
    video_id: str,
    scores: np.ndarray,
    smoothed: np.ndarray | None,
    labels: np.ndarray | None,
    threshold: float | None = None,
) -> Figure:
    """Frame score over frame index for one video.

    ``scores`` (raw) and ``smoothed`` are ``(frames,)`` on the full frame index, NaN where a
    frame has no score (edge frames leave gaps); ``smoothed`` may be None. Abnormal frames of
    ``labels`` (``(frames,)`` 0/1, or None) are shaded, one span per run, frame ``i`` covering
    ``[i-0.5, i+0.5]``. ``threshold`` draws a dashed horizontal line. One axes; lines are raw,
    then smoothed, then threshold.
    """
    scores = np.asarray(scores, dtype=np.float64)
    fig = Figure(figsize=(8, 2.8), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(scores.size)
    if labels is not None:
        for i, (start, stop) in enumerate(abnormal_spans(labels)):
            ax.axvspan(start - 0.5, stop - 0.5, color=_ABNORMAL, alpha=0.18, lw=0,
                       label="abnormal (ground truth)" if i == 0 else None)
    ax.plot(x, scores, color=_RAW, lw=0.9, label="raw score")
    if smoothed is not None:
        ax.plot(x, np.asarray(smoothed, dtype=np.float64), color=_SMOOTH, lw=1.6, label="smoothed")
    if threshold is not None:
        ax.axhline(threshold, color="black", ls="--", lw=1, label=f"threshold {threshold:.4g}")
    ax.set_xlim(-0.5, max(scores.size - 0.5, 0.5))
    ax.set_xlabel("frame")
    ax.set_ylabel("anomaly score")
    ax.set_title(f"video {video_id}".replace("$", r"\$"), loc="left", fontsize=10)  # no mathtext
    ax.legend(loc="lower right", bbox_to_anchor=(1, 1), ncols=4, fontsize=8, frameon=False)
    return fig


def roc_figure(scores: np.ndarray, labels: np.ndarray, auc: float | None) -> Figure:
    """ROC curve of pooled frames (abnormal = positive) with the chance diagonal.

    ``auc`` (a fraction, as :func:`ddlvad.metrics.frame_metrics` returns it) goes into the title.
    With fewer than two classes only the diagonal and a note are drawn. Lines: ROC, chance.
    """
    labels = np.asarray(labels)
    fig = Figure(figsize=(4.2, 4.2), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    if labels.size and 0 < int(labels.sum()) < labels.size:
        fpr, tpr, _ = roc_curve(labels, np.asarray(scores, dtype=np.float64))
        ax.plot(fpr, tpr, color=_SMOOTH, lw=1.8, label="ROC")
    else:
        ax.text(0.5, 0.55, "ROC needs normal and abnormal frames", ha="center", fontsize=9)
    ax.plot([0, 1], [0, 1], color=_RAW, ls=":", lw=1, label="chance")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC" if auc is None else f"ROC, AUC = {100 * auc:.2f} %")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def localisation_figure(curve: dict, rbdc: float | None, tbdc: float | None) -> Figure:
    """Region- and track-based detection rates against false positives per frame (the RBDC and
    TBDC curves), from the per-level points of :meth:`ddlvad.localisation.MapEvaluation.result`:
    steps of the best rate reachable at each rate of false positives, on [0, 1]."""
    from .localisation import level_curve

    fig = Figure(figsize=(5.0, 3.6), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    for key, name, value, colour in (("rbdr", "RBDC", rbdc, _SMOOTH), ("tbdr", "TBDC", tbdc, _ABNORMAL)):
        fpr, rate, _ = level_curve(list(zip(curve["fpr"], curve[key])))
        x = np.minimum(np.append(fpr, 1.0), 1.0)
        ax.step(x, np.append(rate, rate[-1]), where="post", color=colour, lw=1.8,
                label=f"{name} = {'n/a' if value is None else f'{100 * value:.2f} %'}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive regions per frame")
    ax.set_ylabel("detection rate (regions / tracks)")
    ax.set_title("Localisation: region and track detection", loc="left", fontsize=10)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def weight_figure(steps: Sequence[int], weights: Sequence[float]) -> Figure:
    """The anomaly weight ``s = sigmoid(l)`` over training steps (the paper's Figure 5).

    The dashed line marks s = 0.5, the fixed weight of SDL. Lines: s, reference.
    """
    steps_a, weights_a = _check_xy(steps, weights, "weights")
    fig = Figure(figsize=(6, 3), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(steps_a, weights_a, color=_SMOOTH, lw=1.6, label="s (DDL)")
    ax.axhline(0.5, color=_RAW, ls="--", lw=1, label="s = 0.5 (SDL)")
    ax.set_ylim(0, 1)
    ax.set_xlabel("training step")
    ax.set_ylabel("anomaly weight s")
    ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def loss_figure(steps: Sequence[int], parts: dict[str, Sequence[float]]) -> Figure:
    """Loss parts (e.g. ``total``, ``recon``, ``distinction``) over training steps.

    One line per part, each the same length as ``steps``. The y axis is logarithmic when every
    finite value is positive (parts differ by orders of magnitude), linear otherwise.
    """
    fig = Figure(figsize=(6, 3), dpi=_DPI, layout="constrained")
    ax = fig.add_subplot()
    values = []
    for name, ys in parts.items():
        x, y = _check_xy(steps, ys, f"loss part {name!r}")
        ax.plot(x, y, lw=1.3, label=name)
        values.append(y[np.isfinite(y)])
    finite = np.concatenate(values) if values else np.zeros(0)
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    if parts:
        ax.legend(loc="best", fontsize=8, frameon=False)
    return fig


def training_figure(rows: Sequence[dict]) -> Figure:
    """A run's ``metrics.jsonl`` rows in three panels over the training steps: the loss parts
    (log scale), the anomaly weight ``s``, and the validation signals (held-out reconstruction
    error and pseudo-anomaly AUC, with the best validation marked) when the run validated."""
    steps = [r["step"] for r in rows if "loss" in r]
    val = [r for r in rows if "val_auc" in r]
    fig = Figure(figsize=(7, 7.5 if val else 5), dpi=_DPI, layout="constrained")
    axes = fig.subplots(3 if val else 2, 1, sharex=True)
    for key in ("loss", "recon", "dist"):
        ys = [r.get(key, np.nan) for r in rows if "loss" in r]
        if np.isfinite(ys).any():
            axes[0].plot(steps, ys, lw=1.0, label=key)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss")
    axes[0].legend(loc="upper right", fontsize=8, frameon=False)
    axes[1].plot(steps, [r["weight"] for r in rows if "loss" in r], color=_SMOOTH, lw=1.4)
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("anomaly weight s")
    if val:
        x = [r["step"] for r in val]
        ax = axes[2]
        ax.plot(x, [r["val_auc"] for r in val], color=_SMOOTH, marker="o", ms=3, lw=1.2, label="val AUC (pseudo)")
        ax.set_ylabel("held-out pseudo-anomaly AUC")
        best = [r for r in val if r.get("best")]
        if best:
            ax.plot([best[-1]["step"]], [best[-1]["val_auc"]], "*", color=_ABNORMAL, ms=11, label="best so far")
        twin = ax.twinx()
        twin.plot(x, [r["val_recon"] for r in val], color=_RAW, lw=1.2, ls="--", label="val recon error")
        twin.set_ylabel("held-out recon error")
        ax.legend(loc="lower right", fontsize=8, frameon=False)
    axes[-1].set_xlabel("training step")
    return fig


def png_bytes(fig: Figure) -> bytes:
    """The figure rendered as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders are created) and release it.

    Figures from this module need no closing; one made with pyplot is closed here so that
    pyplot's registry does not keep it alive.
    """
    path = Path(path)
    writable_dir(path.parent)
    atomic_write(path, png_bytes(fig))
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        pyplot.close(fig)
    return path


def _check_xy(steps: Sequence[int], ys: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"{what}: {y.shape} values for {x.shape} steps; give one value per step")
    return x, y
