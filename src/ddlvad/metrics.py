"""Frame-level evaluation: edge rule, smoothing, normalisation, AUC/EER/AP. Numbers in, numbers out.

The input of :func:`frame_metrics` is one ``(scores, labels)`` pair per video:

* ``scores``: float array ``(frames,)`` over *all* frames of the video, higher = more abnormal,
  ``NaN`` where a frame has no score (the first and last ``(T-1)/2`` frames, docs/method.md §6);
* ``labels``: ``uint8`` array ``(frames,)``, 1 = abnormal, or ``None`` when ground truth is unknown.

Per video, in this order (docs/method.md §6):

1. **edge rule** -- frames whose score is NaN are dropped together with their labels;
2. **smoothing** -- :func:`smooth` over the remaining scored frames (median of window 17 in the
   paper protocol);
3. **normalisation** -- optional per-video min-max to [0, 1].

Then the metrics: ``auc_micro`` pools every labelled frame of every video (the headline number),
``auc_macro`` is the mean of per-video AUCs over videos that contain both classes, ``eer`` and
``ap`` are computed on the pooled frames. Every AUC, EER and AP is a fraction in [0, 1] (the paper
prints percentages; :func:`ablation_table` converts). This module does no file I/O and does not
import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from .config import Protocol
from .errors import UserError


# ---------------------------------------------------------------------------------- per video
def smooth(scores: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Smooth one video's scored frames; returns a new float64 array of the same length.

    ``scores`` holds only scored frames (no NaN: apply the edge rule first). Edges: both
    filters extend the sequence by repeating its first/last value (``mode="nearest"``), so a
    median window of 17 at frame 0 sees 8 copies of frame 0, frame 0..8. Unlike
    ``scipy.signal.medfilt`` (zero padding) this does not pull the ends towards 0. A sequence
    shorter than the window is fine. An empty array is returned as is.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"smooth expects a 1-D score sequence, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("smooth expects finite scores; drop NaN (edge) frames first")
    if x.size == 0 or protocol.smoothing == "none":
        return x.copy()
    if protocol.smoothing == "median":
        return median_filter(x, size=protocol.window, mode="nearest")
    return gaussian_filter1d(x, sigma=protocol.sigma, mode="nearest")


def normalise(scores: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Per-video normalisation. ``minmax`` maps to [0, 1]; a constant video becomes all 0."""
    x = np.asarray(scores, dtype=np.float64)
    if protocol.normalise == "none" or x.size == 0:
        return x.copy()
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


@dataclass
class _Video:
    frames: int
    keep: np.ndarray  # (frames,) bool: frames with a score
    scores: np.ndarray  # (frames_scored,) smoothed + normalised
    labels: np.ndarray | None  # (frames_scored,) uint8, or None


def _prepare(video_id: str, scores: np.ndarray, labels: np.ndarray | None, protocol: Protocol) -> _Video:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise UserError(f"video {video_id}: scores must be 1-D (one per frame), got shape {s.shape}")
    if np.isinf(s).any():
        raise UserError(f"video {video_id}: scores contain inf; re-run scoring")
    keep = ~np.isnan(s)  # edge rule: frames without a score go, with their labels
    lab = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != s.shape:
            raise UserError(
                f"video {video_id}: {lab.shape[0] if lab.ndim == 1 else lab.shape} labels for "
                f"{s.shape[0]} frames; check the ground-truth file of this video"
            )
        if not np.isin(lab, (0, 1)).all():
            raise UserError(f"video {video_id}: labels must be 0 (normal) or 1 (abnormal)")
        lab = lab[keep].astype(np.uint8)
    processed = normalise(smooth(s[keep], protocol), protocol)
    return _Video(frames=int(s.shape[0]), keep=keep, scores=processed, labels=lab)


def _prepare_all(
    videos: dict[str, tuple[np.ndarray, np.ndarray | None]], protocol: Protocol
) -> dict[str, _Video]:
    return {vid: _prepare(vid, sc, lab, protocol) for vid, (sc, lab) in sorted(videos.items())}


# ------------------------------------------------------------------------------------ metrics
def _two_classes(labels: np.ndarray) -> bool:
    return labels.size > 0 and 0 < int(labels.sum()) < labels.size


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC with abnormal (1) as positive; None when only one class is present."""
    labels = np.asarray(labels)
    if not _two_classes(labels):
        return None
    return float(roc_auc_score(labels, scores))


def eer(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Equal error rate: the point of the ROC where FPR = FNR = 1 - TPR.

    ROC points come from :func:`sklearn.metrics.roc_curve`; ``d = FPR - FNR`` never decreases
    along them, so the EER lies on the first segment where ``d`` reaches 0 and is found by
    linear interpolation on that segment. None when only one class is present.
    """
    labels = np.asarray(labels)
    if not _two_classes(labels):
        return None
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fpr - fnr  # -1 at the first point (0, 0), +1 at the last (1, 1)
    i = int(np.argmax(d >= 0))
    if d[i] == 0 or i == 0:
        return float(fpr[i])
    t = -d[i - 1] / (d[i] - d[i - 1])  # fraction along segment i-1 -> i where d = 0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """sklearn's average precision, abnormal (1) positive; None without an abnormal frame."""
    labels = np.asarray(labels)
    if labels.size == 0 or int(labels.sum()) == 0:
        return None
    return float(average_precision_score(labels, scores))


# ------------------------------------------------------------------------------------- public
@dataclass
class Pooled:
    """Arrays behind a report, for plots (not JSON)."""

    scores: np.ndarray
    """(N,) processed scores of every labelled scored frame, videos in sorted id order."""
    labels: np.ndarray
    """(N,) uint8 labels matching ``scores``; empty when no video has labels."""
    smoothed: dict[str, np.ndarray] = field(default_factory=dict)
    """Per video, (frames,) processed scores on the full frame index, NaN on dropped frames."""


def pooled(videos: dict[str, tuple[np.ndarray, np.ndarray | None]], protocol: Protocol) -> Pooled:
    """The pooled arrays :func:`frame_metrics` computes its micro metrics on, plus per-video curves."""
    return _pool(_prepare_all(videos, protocol))


def _pool(prepared: dict[str, _Video]) -> Pooled:
    labelled = [v for v in prepared.values() if v.labels is not None]
    scores = np.concatenate([v.scores for v in labelled]) if labelled else np.zeros(0)
    labels = np.concatenate([v.labels for v in labelled]) if labelled else np.zeros(0, np.uint8)
    smoothed = {}
    for vid, v in prepared.items():
        full = np.full(v.frames, np.nan)
        full[v.keep] = v.scores
        smoothed[vid] = full
    return Pooled(scores=scores, labels=labels.astype(np.uint8), smoothed=smoothed)


def frame_metrics(videos: dict[str, tuple[np.ndarray, np.ndarray | None]], protocol: Protocol) -> dict:
    """Apply ``protocol`` to every video and return a JSON-ready report.

    Keys: ``auc_micro``, ``auc_macro``, ``eer``, ``ap`` (fractions or None), ``frames_scored``
    (scored frames of all videos), ``frames_evaluated`` (scored frames of labelled videos: the
    pooled set), ``frames_abnormal`` (abnormal among them, None without labels), ``videos``
    (id -> ``frames``, ``frames_scored``, ``abnormal``, ``auc``), ``protocol`` and
    ``labels_available``. Videos whose labels are None are scored but left out of every
    metric; with no labels at all every metric is None (no exception). A video with one class
    has ``auc`` None and is left out of ``auc_macro``.
    """
    prepared = _prepare_all(videos, protocol)
    pool = _pool(prepared)
    per_video: dict[str, dict] = {}
    video_aucs: list[float] = []
    for vid, v in prepared.items():
        a = auc(v.scores, v.labels) if v.labels is not None else None
        if a is not None:
            video_aucs.append(a)
        per_video[vid] = {
            "frames": v.frames,
            "frames_scored": int(v.scores.size),
            "abnormal": int(v.labels.sum()) if v.labels is not None else None,
            "auc": a,
        }
    labels_available = any(v.labels is not None for v in prepared.values())
    return {
        "auc_micro": auc(pool.scores, pool.labels),
        "auc_macro": float(np.mean(video_aucs)) if video_aucs else None,
        "eer": eer(pool.scores, pool.labels),
        "ap": average_precision(pool.scores, pool.labels),
        "frames_scored": int(sum(v.scores.size for v in prepared.values())),
        "frames_evaluated": int(pool.labels.size),
        "frames_abnormal": int(pool.labels.sum()) if labels_available else None,
        "videos": per_video,
        "protocol": protocol.to_dict(),
        "labels_available": labels_available,
    }


def aggregate_scenes(reports: dict[str, dict], pooled_micro: float | None) -> dict:
    """Combine per-scene reports (ShanghaiTech, one model per scene).

    ``reports`` maps scene id -> report of :func:`frame_metrics`. Returns ``scenes`` (scene ->
    its ``auc_micro``), ``auc_scene_median`` (the paper's 74.25 is this, in %),
    ``auc_scene_mean``, ``n_scenes`` (scenes with an AUC) and ``auc_micro_pooled``
    (``pooled_micro``, all test frames of all scenes pooled, computed by the caller).
    Scenes without an AUC are listed as None and left out of median and mean.
    """
    scenes = {scene: reports[scene].get("auc_micro") for scene in sorted(reports)}
    values = [a for a in scenes.values() if a is not None]
    return {
        "scenes": scenes,
        "auc_scene_median": float(np.median(values)) if values else None,
        "auc_scene_mean": float(np.mean(values)) if values else None,
        "n_scenes": len(values),
        "auc_micro_pooled": pooled_micro,
    }


# ------------------------------------------------------------------------ published numbers
PAPER_TABLE: dict = {
    # docs/method.md §7, frame-level AUC in %; None = not reported.
    "main": {
        "MemAE (2019)": {"ped2": 94.1, "avenue": 83.3, "shanghaitech": 71.2},
        "MNAD reconstruction (2020)": {"ped2": 90.2, "avenue": 82.8, "shanghaitech": 69.8},
        "PseudoBound (2023)": {"ped2": 98.44, "avenue": 87.1, "shanghaitech": 73.66},
        "MAMC (2024)": {"ped2": 96.7, "avenue": 87.6, "shanghaitech": 71.5},
        "C2Net (2024)": {"ped2": 98.0, "avenue": 87.5, "shanghaitech": None},
        # ShanghaiTech: median of per-scene AUCs.
        "C3DSU with DDL": {"ped2": 98.46, "avenue": 90.35, "shanghaitech": 74.25},
    },
    # Table 2: (arch, dataset) -> mode -> AUC %. Modes as in DDLConfig.mode: recon = "without
    # DDL" (reconstruction loss only), sdl = s fixed at 0.5, ddl = trainable s.
    "ablation": {
        ("unet", "ped2"): {"recon": 86.9, "sdl": 95.28, "ddl": 97.76},
        ("c3dsu", "ped2"): {"recon": 95.55, "sdl": 97.12, "ddl": 98.46},
        ("unet", "avenue"): {"recon": 84.18, "sdl": 87.06, "ddl": 88.96},
        ("c3dsu", "avenue"): {"recon": 82.54, "sdl": 89.41, "ddl": 90.35},
    },
}

_ARCH_NAMES = {"unet": "UNet", "c3dsu": "C3DSU"}
_DATASET_NAMES = {"ped2": "Ped2", "avenue": "Avenue"}
_MODE_NAMES = {"recon": "without", "sdl": "SDL", "ddl": "DDL"}


def ablation_table(results: dict[tuple[str, str], float | None], dataset: str) -> str:
    """Markdown table shaped like the paper's Table 2 for ``dataset`` (``ped2`` or ``avenue``).

    ``results`` maps ``(arch, mode)`` (e.g. ``("c3dsu", "ddl")``) to our AUC as a fraction in
    [0, 1], as :func:`frame_metrics` returns it; missing or None entries print ``-``. Each mode has
    a paper column and an ours column, both in %.
    """
    datasets = sorted({ds for _, ds in PAPER_TABLE["ablation"]})
    if dataset not in datasets:
        raise UserError(f"ablation table dataset={dataset!r}: the paper's Table 2 covers {', '.join(datasets)}")
    for key, value in results.items():
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"ablation result {key}={value}: give AUC as a fraction in [0, 1], not %")
    head = ["model"] + [f"{_MODE_NAMES[m]} ({who})" for m in _MODE_NAMES for who in ("paper", "ours")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for arch, arch_name in _ARCH_NAMES.items():
        paper = PAPER_TABLE["ablation"][(arch, dataset)]
        cells = [f"{arch_name}, {_DATASET_NAMES[dataset]}"]
        for mode in _MODE_NAMES:
            ours = results.get((arch, mode))
            cells += [f"{paper[mode]:.2f}", "-" if ours is None else f"{100 * ours:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
