"""Spatial localisation metrics for video anomaly detection. Numbers in, numbers out.

Two families of metrics, computed from per-frame score maps or detected regions and per-frame
ground truth (pixel masks, boxes or annotated tracks). This module does no file I/O and does not
import torch; it needs numpy, scipy and scikit-learn (and OpenCV only inside :func:`resize_mask`).
Regions, boxes and their coordinates (``x2``/``y2`` exclusive) are those of :mod:`ddlvad.regions`,
which the run-time code uses too. The public Street Scene / AED tools use inclusive corners and
add 1 to each side in their IoU; convert with ``x2_exclusive = x2_inclusive + 1``.

1. Pixel-level AUC with the UCSD 40 % rule (:func:`pixel_auc`)
    V. Mahadevan, W. Li, V. Bhalodia, N. Vasconcelos, "Anomaly detection in crowded scenes",
    CVPR 2010; W. Li, V. Mahadevan, N. Vasconcelos, "Anomaly detection and localization in
    crowded scenes", TPAMI 36(1), 2014. At a threshold ``theta`` the detected pixels of a frame
    are ``map > theta`` and the frame is *predicted abnormal* when any pixel is detected. A frame
    whose mask has a pixel is abnormal and is a true positive only when the detected pixels cover
    at least ``overlap`` (40 %) of its mask pixels; a normal frame predicted abnormal is a false
    positive. The AUC is that of the curve (FPR, TPR) over all ``theta``; see
    :func:`pixel_auc_values` for the exact per-frame reduction that makes it an ordinary ROC AUC.

2. RBDC and TBDC (:func:`rbdc_tbdc`)
    B. Ramachandra, M. Jones, "Street Scene: A new dataset and evaluation protocol for video
    anomaly detection", WACV 2020. Region-based and track-based detection criteria: detection
    rate of ground-truth regions (or tracks) against false-positive regions per frame, area under
    that curve for false positives per frame in [0, 1]. Cross-checked against the public
    implementation that most papers cite (M.-I. Georgescu et al., CVPR 2021 / TPAMI 2021,
    repository ``lilygeorgescu/AED``, ``evaluation/compute_tbdc_rbdc.py``); see
    :func:`rbdc_tbdc` for where the rules agree and the one place (tied scores) they differ.
    The published criteria take their ground truth from *annotated object tracks* (one box per
    anomalous object per frame, with a track id; :func:`annotated_box` brings such a box to a
    map); without them :class:`MapEvaluation` cuts regions from the pixel masks and links them
    into tracks, which is not the published protocol (:func:`describe_protocol` says which).

One concern, in one module though it is long: the localisation metrics of a test set (pixel AUC,
RBDC/TBDC, the maps of a whole test set, the protocol text); the run-time region geometry is in
:mod:`ddlvad.regions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

from .config import LocalisationProtocol
from .regions import Box, Region, Track, as_box, iou_matrix, link_tracks, mask_regions, regions_from_map


# ------------------------------------------------------------------------------- ground truth
def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a ground-truth mask to a score map's ``(H, W)`` by nearest neighbour.

    The pixel metrics compare a map and a mask pixel by pixel, so they must have the same shape;
    benchmark masks are at video resolution and maps are often smaller (or larger). Resize the
    *mask* to the *map* (not the map to the mask), with this function, before calling
    :func:`pixel_auc` or :func:`pixel_auc_values`.

    Args:
        mask: ``(h, w)`` array, truthy = anomalous.
        shape: target ``(H, W)`` (rows, columns).

    Returns:
        ``(H, W)`` bool array (``cv2.resize`` with ``INTER_NEAREST``).
    """
    import cv2  # only this helper needs OpenCV

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (h, w), got shape {m.shape}")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    if m.shape == (h, w):
        return m.astype(bool)
    out = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)  # dsize is (W, H)
    return out.astype(bool)


def annotated_box(corners: Sequence[int], frame_size: tuple[int, int], map_size: tuple[int, int]) -> Box:
    """An annotated box in a map's pixels: ``(x_min, y_min, x_max, y_max)`` **inclusive** pixel
    indices of a ``frame_size`` ``(H, W)`` video frame (the published track annotations) to
    ``(x1, y1, x2, y2)`` of a ``map_size`` ``(h, w)`` map, ``x2``/``y2`` exclusive, by the exact
    scale (floats; the box covers the same fraction of the frame). Example: columns 2..7 of a
    20-pixel-wide frame cover [2, 8); on a 10-pixel-wide map that is [1, 4)."""
    x_min, y_min, x_max, y_max = corners[:4]
    (fh, fw), (h, w) = frame_size, map_size
    return (x_min * w / fw, y_min * h / fh, (x_max + 1) * w / fw, (y_max + 1) * h / fh)  # exact at the edges


# ---------------------------------------------------------------------- pixel-level AUC (UCSD)
def _min_count(fraction: float, n: int) -> int:
    """Smallest integer k >= 0 with k / n >= fraction (exactly as the ratio is compared).

    Uses the same float comparison ``k / n >= fraction`` as a direct implementation would, so
    e.g. 55 of 100 meet ``fraction = 0.55`` although ``math.ceil(0.55 * 100)`` is 56 (the float
    product is 55.00000000000001).
    """
    k = max(0, min(n, math.ceil(fraction * n)))
    while k > 0 and (k - 1) / n >= fraction:
        k -= 1
    while k < n and k / n < fraction:
        k += 1
    return k


def pixel_auc_values(score_map: np.ndarray, mask: np.ndarray, overlap: float = 0.4) -> tuple[float, int]:
    """Per-frame value and label whose ROC AUC is the UCSD pixel-level AUC.

    For one frame with score map ``M`` and mask ``G`` (``n`` mask pixels) the value ``v`` is the
    supremum of the thresholds at which the frame counts as positive, so that the frame is positive
    at threshold ``theta`` **exactly when** ``theta < v``:

    * normal frame (``n == 0``): false positive iff some pixel has ``M > theta``, so
      ``v = max(M)``;
    * abnormal frame: true positive iff ``#{p in G : M[p] > theta} >= overlap * n``. The count is
      non-increasing in ``theta``; with ``k`` = the smallest integer ``>= 1`` such that
      ``k / n >= overlap`` (``k = ceil(0.4 n)`` for the default), the count reaches ``k`` iff the
      ``k``-th largest value of ``M`` over ``G`` (counting ties with multiplicity) is ``> theta``.
      So ``v`` = that ``k``-th largest value. Example: ``n = 5``, ``k = 2``, values in ``G``
      ``[0.9, 0.3, 0.3, 0.1, 0]``: ``v = 0.3``; at ``theta = 0.3`` only 1 pixel (20 %) is
      detected, just below 0.3 three are (60 %). Since ``k >= 1`` a true positive always has a
      detected pixel, i.e. is predicted abnormal. With ``overlap = 0`` the coverage test always
      passes and a frame is a true positive iff it is predicted abnormal: ``v = max(M)`` over the
      whole frame.

    Then TPR(theta) = #{abnormal: v > theta} / #abnormal and FPR(theta) likewise over normal frames:
    the ROC curve of the values ``v`` with labels ``1`` = abnormal, whose area (trapezoids between
    the achievable points, i.e. ties between an abnormal and a normal value count one half) is
    :func:`sklearn.metrics.roc_auc_score`. That is what :func:`pixel_auc` returns; a caller that
    produces maps one at a time can keep only these pairs and call :func:`pixel_auc_from_values`.

    Args:
        score_map: ``(H, W)`` float array, finite, higher = more abnormal.
        mask: ``(H, W)`` array, truthy = anomalous pixel; **same shape as the map** (use
            :func:`resize_mask` first when the resolutions differ).
        overlap: fraction of mask pixels that must be detected, in [0, 1] (UCSD: 0.4).

    Returns:
        ``(v, label)``: ``v`` in the map's units, ``label`` 1 when the mask has a pixel, else 0.
    """
    m = np.asarray(score_map, dtype=np.float64)
    g = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"score_map must be (H, W), got shape {m.shape}")
    if g.shape != m.shape:
        raise ValueError(
            f"mask shape {g.shape} differs from score_map shape {m.shape}; resize the mask to the map "
            "with resize_mask(mask, score_map.shape)"
        )
    if m.size == 0:
        raise ValueError("score_map is empty")
    if not np.isfinite(m).all():
        raise ValueError("score_map has NaN or infinite values")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be in [0, 1], got {overlap}")
    inside = m[g]
    n = inside.size
    if n == 0 or overlap == 0.0:
        return float(m.max()), int(n > 0)
    k = max(1, _min_count(overlap, n))
    # k-th largest value over the mask = value at sorted position n - k (ascending)
    return float(np.partition(inside, n - k)[n - k]), 1


def pixel_auc_from_values(values: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC of per-frame ``(value, label)`` pairs from :func:`pixel_auc_values`.

    Returns a fraction in [0, 1], or ``None`` when the frames are all normal or all abnormal.
    """
    v = np.asarray(values, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if v.shape != y.shape or v.ndim != 1:
        raise ValueError(f"values and labels must be 1-D of equal length, got {v.shape} and {y.shape}")
    if y.size == 0 or y.min() == y.max():
        return None
    return float(roc_auc_score(y, v))


def pixel_auc(maps: Iterable[np.ndarray], masks: Iterable[np.ndarray], overlap: float = 0.4) -> float | None:
    """Pixel-level AUC with the UCSD ``overlap`` (40 %) rule, over all frames of a test set.

    Exact (no threshold grid): see :func:`pixel_auc_values` for the definition and its reduction
    to one value per frame. ``maps`` and ``masks`` are consumed together one frame at a time
    (generators are fine; only two floats per frame are kept).

    Args:
        maps: ``(H, W)`` float score maps, one per frame.
        masks: ``(H, W)`` ground-truth masks, one per frame, each of its map's shape (resize the
            masks to the maps with :func:`resize_mask` when the resolutions differ).
        overlap: fraction of mask pixels that must be detected for a true positive, in [0, 1].

    Returns:
        AUC in [0, 1], or ``None`` when there is no abnormal or no normal frame.

    Raises:
        ValueError: the two iterables have different lengths, or a frame is invalid.
    """
    values: list[float] = []
    labels: list[int] = []
    for m, g in zip(maps, masks, strict=True):
        v, y = pixel_auc_values(m, g, overlap)
        values.append(v)
        labels.append(y)
    return pixel_auc_from_values(values, labels)


# ------------------------------------------------------------------------------- RBDC / TBDC
def _as_detection(d: Region | Sequence[float]) -> tuple[Box, float]:
    """(box, score) from a :class:`Region` or an ``(x1, y1, x2, y2, score)`` sequence."""
    if isinstance(d, Region):
        return d.box, float(d.score)
    x1, y1, x2, y2, s = d
    return (x1, y1, x2, y2), float(s)


def _step_area(fpr: np.ndarray, rate: np.ndarray, max_fpr: float) -> float:
    """Area under the right-continuous step curve through (fpr, rate) on [0, max_fpr], / max_fpr.

    ``fpr`` is non-decreasing and starts at 0. ``rate[i]`` holds on ``[fpr[i], fpr[i+1])``; the
    last value holds up to ``max_fpr``; the curve is cut at ``max_fpr``.
    """
    x = np.minimum(fpr, max_fpr)
    widths = np.diff(np.append(x, max_fpr))  # width of each step inside [0, max_fpr]
    return float(np.sum(rate * widths) / max_fpr)


def rbdc_tbdc(
    detections: Sequence[Sequence[Region | Sequence[float]]],
    ground_truth: Sequence[Sequence[Box]],
    beta: float = 0.1,
    alpha: float = 0.1,
    max_fpr: float = 1.0,
    tracks: Sequence[Sequence[tuple[int, Box]]] | None = None,
    *,
    video_starts: Iterable[int] = (),
) -> dict:
    """Region- and track-based detection criteria (RBDC, TBDC) of Ramachandra & Jones, WACV 2020.

    Definitions, at a score threshold ``t`` (a detected region is kept when ``score >= t``):

    * a ground-truth region is **detected** when a kept detection of its frame has IoU ``>= beta``
      with it; region-based detection rate RBDR(t) = detected regions / all ground-truth regions;
    * a ground-truth track is **detected** when ``(detected regions of the track) / (regions of the
      track) >= alpha``; track-based detection rate TBDR(t) = detected tracks / all tracks;
    * a kept detection is a **false positive** when its IoU with every ground-truth region of its
      frame is ``< beta`` (every detection of a frame without ground truth is one). A detection
      that overlaps an already detected region is neither a true nor a false positive.
      FPR(t) = false positives / number of frames (all frames, normal ones included), in false
      positives per frame (it may exceed 1).

    Curve and integration rule: the thresholds are the distinct detection scores, in decreasing
    order, plus the origin ``(FPR 0, rate 0)`` at an infinite threshold. The curve is the step
    function that, at false positives per frame ``x``, takes the rate of the last threshold whose
    FPR is ``<= x`` (the best rate reachable with at most ``x`` false positives per frame). Its area
    on ``[0, max_fpr]``, divided by ``max_fpr``, is the criterion (a perfect detector: 1, no
    detection: 0). When the largest FPR is below ``max_fpr`` the last rate is extended
    horizontally; when the curve passes ``max_fpr`` it is cut there (on a step function the
    segment crossing ``max_fpr`` is flat, so linear interpolation within it is its left value).

    Agreement with the public implementation (``lilygeorgescu/AED``,
    ``evaluation/compute_tbdc_rbdc.py``, Georgescu et al.): same IoU ``>= beta`` test, same false
    positives (a detection matching no ground-truth region of its frame, duplicates not
    penalised), same ``>= alpha`` ratio per track, FPR over all frames, curve from (0, 0),
    trapezoids (``sklearn.metrics.auc``) over the points with FPR ``<= 1`` plus the last of them
    carried to FPR 1. Its IoU uses inclusive corners (+1 per side), the same as ours on boxes
    whose ``x2``/``y2`` are one larger; its tracks come from annotation files. That code
    adds one curve point per detection in decreasing score order; each step then moves along one
    axis only, so its trapezoids equal this step area exactly whenever scores are distinct. With
    tied scores it depends on the input order of the tied detections; this function counts a
    group of tied detections as one threshold (order-independent; the rates reached inside the
    group count only from the group's full FPR on, which is the lowest of the orderings).

    Args:
        detections: ``detections[f]`` = detected regions of frame ``f`` (:class:`Region`, or
            ``(x1, y1, x2, y2, score)``), scores finite, higher = more abnormal. One entry per
            frame of the test set, empty for frames without detections.
        ground_truth: ``ground_truth[f]`` = ground-truth boxes of frame ``f`` (same coordinates as
            the detections, e.g. :func:`mask_regions` of the mask resized to the map). Same length
            as ``detections``.
        beta: IoU a detection needs with a ground-truth region, in (0, 1] (paper: 0.1).
        alpha: fraction of a track's regions that must be detected, in (0, 1] (paper: 0.1).
        max_fpr: upper end of the false-positives-per-frame range, > 0 (paper: 1).
        tracks: ground-truth tracks, each a list of ``(frame, box)`` whose boxes are among
            ``ground_truth[frame]``; default ``link_tracks(ground_truth, video_starts=...)``.
        video_starts: passed to :func:`link_tracks` when ``tracks`` is ``None``.

    Returns:
        ``{"rbdc", "tbdc", "curve", "regions", "tracks", "frames"}``: ``rbdc``/``tbdc`` in [0, 1]
        (``None`` when there is no ground-truth region, resp. track); ``curve`` has lists ``fpr``
        (false positives per frame), ``rbdr``, ``tbdr`` (fractions) and ``threshold`` (``None``
        for the origin, then the distinct scores in decreasing order), uncut; ``regions``,
        ``tracks``, ``frames`` are the counts used as denominators.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"detections cover {len(detections)} frames, ground_truth {len(ground_truth)}")
    n_frames = len(ground_truth)
    if n_frames == 0:
        raise ValueError("no frames")
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    if not max_fpr > 0.0:
        raise ValueError(f"max_fpr must be > 0, got {max_fpr}")

    # ground-truth regions, numbered in frame order; gt_start[f] = index of frame f's first region
    gt_boxes = [[as_box(b) for b in frame] for frame in ground_truth]
    gt_start = np.concatenate(([0], np.cumsum([len(b) for b in gt_boxes])))
    n_regions = int(gt_start[-1])
    # best[r] = highest score of a detection with IoU >= beta with region r (-inf: never detected)
    best = np.full(n_regions, -np.inf)
    det_scores: list[float] = []
    det_fp: list[bool] = []
    for f, frame in enumerate(detections):
        if not frame:
            continue
        pairs = [_as_detection(d) for d in frame]
        scores = np.asarray([s for _, s in pairs], dtype=np.float64)
        if not np.isfinite(scores).all():
            raise ValueError(f"frame {f}: detection scores must be finite")
        det_scores.extend(scores.tolist())
        if not gt_boxes[f]:
            det_fp.extend([True] * len(pairs))
            continue
        hit = iou_matrix(np.asarray([b for b, _ in pairs], float), np.asarray(gt_boxes[f], float)) >= beta
        det_fp.extend((~hit.any(axis=1)).tolist())
        masked = np.where(hit, scores[:, None], -np.inf)  # (detections, regions)
        lo = gt_start[f]
        best[lo : lo + len(gt_boxes[f])] = np.maximum(best[lo : lo + len(gt_boxes[f])], masked.max(axis=0))

    # ground-truth tracks -> for each, the score at which it becomes detected
    if tracks is None:
        tracks = link_tracks(gt_boxes, video_starts=video_starts)
    track_score = np.full(len(tracks), -np.inf)
    for i, track in enumerate(tracks):
        if not track:
            raise ValueError(f"track {i} is empty")
        region_scores = []
        for frame_idx, box in track:
            b = as_box(box)
            f = int(frame_idx)
            if not 0 <= f < n_frames or b not in gt_boxes[f]:
                raise ValueError(f"track {i}: region {b} of frame {frame_idx} is not in ground_truth")
            region_scores.append(best[gt_start[f] + gt_boxes[f].index(b)])
        k = max(1, _min_count(alpha, len(region_scores)))
        # detected at t iff >= k of its regions are: the k-th largest region score >= t
        track_score[i] = np.sort(region_scores)[::-1][k - 1]
    n_tracks = len(tracks)

    # the sweep: thresholds = distinct detection scores, decreasing
    s = np.asarray(det_scores, dtype=np.float64)
    fp_scores = np.sort(s[np.asarray(det_fp, dtype=bool)]) if s.size else s
    thresholds = np.unique(s)[::-1]
    # count of values >= t for each threshold t, via sorted arrays
    def _at_least(values: np.ndarray) -> np.ndarray:
        v = np.sort(values)
        return v.size - np.searchsorted(v, thresholds, side="left")

    fpr = np.concatenate(([0.0], _at_least(fp_scores) / n_frames))
    rbdr = np.concatenate(([0.0], _at_least(best) / n_regions)) if n_regions else np.zeros(len(thresholds) + 1)
    tbdr = np.concatenate(([0.0], _at_least(track_score) / n_tracks)) if n_tracks else np.zeros(len(thresholds) + 1)
    return {
        "rbdc": _step_area(fpr, rbdr, max_fpr) if n_regions else None,
        "tbdc": _step_area(fpr, tbdr, max_fpr) if n_tracks else None,
        "curve": {
            "fpr": fpr.tolist(),
            "rbdr": rbdr.tolist(),
            "tbdr": tbdr.tolist(),
            "threshold": [None, *thresholds.tolist()],
        },
        "regions": n_regions,
        "tracks": n_tracks,
        "frames": n_frames,
    }


# ------------------------------------------------------------------------ maps of a whole test set
def level_curve(points: Sequence[tuple[float, float]], max_fpr: float = 1.0) -> tuple[list[float], list[float], float]:
    """The step curve and its area from ``(fpr, rate)`` points measured at several thresholds of
    a map (regions re-extracted at each): the origin, then the points by FPR, each rate the
    best reached at that FPR or below (the best rate reachable with at most ``x`` false
    positives per frame, as in :func:`rbdc_tbdc`). Returns ``(fpr, rate, area / max_fpr)``."""
    pts = sorted((float(f), float(r)) for f, r in points)
    fpr = [0.0] + [f for f, _ in pts]
    rate = [0.0] + list(np.maximum.accumulate([r for _, r in pts])) if pts else [0.0]
    return fpr, rate, _step_area(np.asarray(fpr), np.asarray(rate), max_fpr)


class MapEvaluation:
    """Pixel AUC (40 % rule), RBDC and TBDC of a test set's anomaly maps, one frame at a time.

    Regions of a map are the connected components of ``map > t``; unlike detectors with one
    score per region, a map gives other regions at every threshold, so the RBDC/TBDC curves are
    measured at each of ``levels`` (thresholds of the map) by re-extracting the regions there,
    and joined with :func:`level_curve`. Frames are added per video (:meth:`add`), in any order
    of videos; :meth:`result` puts the videos in the order it is given. Masks must have the
    map's shape (see :func:`resize_mask`). :meth:`state` / :meth:`merge` carry the
    accumulated numbers between processes. ``protocol``: the criteria's parameters (default:
    :class:`ddlvad.config.LocalisationProtocol`'s).

    The ground truth of RBDC/TBDC comes from one source for the whole test set: with
    ``annotated`` the annotated boxes and track ids given to :meth:`add` (the published
    protocol: a track is one annotated object, also across frames it skips); otherwise the
    connected components of each mask, linked into tracks by :func:`link_tracks` (our rule; a
    one-frame gap splits a track, touching objects merge into one region).
    """

    def __init__(self, levels: Sequence[float], protocol: LocalisationProtocol | None = None, *,
                 annotated: bool = False) -> None:
        self.levels = sorted(float(t) for t in levels)
        p = protocol or LocalisationProtocol()
        self.overlap, self.beta, self.alpha, self.max_fpr = p.overlap, p.beta, p.alpha, p.max_fpr
        self.annotated = annotated
        self.videos: dict[str, dict[str, list]] = {}

    def add(self, video: str, score_map: np.ndarray, mask: np.ndarray | None = None,
            boxes: Sequence[tuple[int, Box]] | None = None) -> None:
        """The next scored frame of ``video``: its anomaly map ``(H, W)``; ``mask`` ``(H, W)`` bool
        (None: the frame has no pixel mask and stays out of the pixel AUC); with ``annotated``,
        ``boxes`` = the frame's annotated ``(track id, box)`` pairs in map pixels (``x2``/``y2``
        exclusive, :func:`annotated_box`; empty when none), else the mask is required."""
        if self.annotated and boxes is None:
            raise ValueError("annotated tracks: give the frame's boxes (an empty list when it has none)")
        if not self.annotated and mask is None:
            raise ValueError("without annotated tracks the ground truth is the mask: give one")
        v = self.videos.setdefault(video, {"values": [], "labels": [], "truth": [], "ids": [], "found": []})
        if mask is not None:
            value, label = pixel_auc_values(score_map, mask, self.overlap)
            v["values"].append(value)
            v["labels"].append(label)
        if boxes is not None:
            v["truth"].append([as_box(b) for _, b in boxes])
            v["ids"].append([int(t) for t, _ in boxes])
        else:
            v["truth"].append(mask_regions(mask))
        v["found"].append([[r.box for r in regions_from_map(score_map, level)] for level in self.levels])

    def state(self) -> dict:
        return self.videos

    def merge(self, videos: dict) -> None:
        self.videos.update(videos)

    def _tracks(self, order: Sequence[str], starts: list[int]) -> list[Track]:
        """Ground-truth tracks of the videos in ``order`` (frames numbered across them)."""
        if not self.annotated:
            return link_tracks([x for v in order for x in self.videos[v]["truth"]], video_starts=starts)
        tracks: dict[tuple[str, int], Track] = {}  # insertion order = order of first frame
        first = 0
        for v in order:
            for f, (boxes, ids) in enumerate(zip(self.videos[v]["truth"], self.videos[v]["ids"], strict=True)):
                for box, track in zip(boxes, ids, strict=True):
                    tracks.setdefault((v, track), []).append((first + f, box))
            first += len(self.videos[v]["truth"])
        return list(tracks.values())

    def result(self, order: Sequence[str] | None = None) -> dict:
        """``pixel_auc``, ``rbdc``, ``tbdc`` (fractions, None when undefined), the RBDC/TBDC
        points per level (false positives per frame, rates) and the counts behind them:
        ``frames``/``abnormal_frames`` with a pixel mask (the pixel AUC's), ``rbdc_frames`` (every
        frame added: the false positives' denominator), ``regions``, ``tracks``."""
        order = [v for v in (order or sorted(self.videos)) if v in self.videos]
        values = [x for v in order for x in self.videos[v]["values"]]
        labels = [x for v in order for x in self.videos[v]["labels"]]
        truth = [x for v in order for x in self.videos[v]["truth"]]
        found = [x for v in order for x in self.videos[v]["found"]]
        starts = np.cumsum([0] + [len(self.videos[v]["truth"]) for v in order])[1:-1].tolist()
        out: dict = {"pixel_auc": pixel_auc_from_values(values, labels) if values else None,
                     "frames": len(values), "abnormal_frames": int(sum(labels)), "rbdc_frames": len(truth),
                     "videos": order}
        if not truth:
            return {**out, "rbdc": None, "tbdc": None, "regions": 0, "tracks": 0, "curve": None}
        tracks = self._tracks(order, starts)
        per_level = [rbdc_tbdc([[(*b, 1.0) for b in frame[k]] for frame in found], truth, self.beta, self.alpha,
                               self.max_fpr, tracks) for k in range(len(self.levels))]
        points = [(r["curve"]["fpr"][-1], r["curve"]["rbdr"][-1], r["curve"]["tbdr"][-1]) for r in per_level]
        regions = per_level[0]["regions"]
        _, _, rbdc = level_curve([(f, r) for f, r, _ in points], self.max_fpr)
        _, _, tbdc = level_curve([(f, t) for f, _, t in points], self.max_fpr)
        return {**out, "rbdc": rbdc if regions else None, "tbdc": tbdc if tracks else None,
                "regions": regions, "tracks": len(tracks),
                "curve": {"levels": self.levels, "fpr": [p[0] for p in points], "rbdr": [p[1] for p in points],
                          "tbdr": [p[2] for p in points]}}


# ------------------------------------------------------------------------ what the report says
TRACKS_FROM_MASKS = ("tracks come from pixel masks (connected components linked by overlap): not comparable to "
                     "published RBDC/TBDC")
"""What a report says when RBDC/TBDC had no annotated tracks (:class:`MapEvaluation` without
``annotated``)."""


def describe_protocol(protocol: LocalisationProtocol, levels: Sequence[float],
                      annotations: str | None = None) -> dict:
    """The localisation protocol as ``report.json`` (``localisation.protocol``) and the HTML page
    state it: one sentence per choice, plus the parameters as numbers. ``levels``: the map
    thresholds used (:meth:`LocalisationProtocol.levels`); ``annotations``: where the annotated
    tracks came from (a folder), or None when the tracks were cut from the pixel masks.

    Keys: ``track_source`` (``"annotations"`` or ``"pixel masks"``), ``tracks``, ``map``,
    ``edge_frames``, ``masks``, ``pixel_auc``, ``regions``, ``rbdc_tbdc`` (sentences);
    ``annotations`` (the folder, or None), ``overlap``, ``beta``, ``alpha``, ``max_fpr``,
    ``levels`` (numbers)."""
    p = protocol
    n = p.octaves * p.levels_per_octave
    if annotations is None:
        tracks = TRACKS_FROM_MASKS
    else:
        tracks = (f"ground-truth regions and tracks are the annotated boxes and track ids of {annotations} (one box "
                  "per anomalous object per frame; frames 0-based, corners inclusive pixel indices of each video's "
                  "own frames, scaled to the map's size): the ground truth of the published RBDC/TBDC; a video "
                  "without a file has no annotated anomaly")
    return {
        "track_source": "pixel masks" if annotations is None else "annotations",
        "tracks": tracks,
        "map": "anomaly map: each pixel's largest patch-mean error over the patch x patch windows containing it "
               "(stride 1), at the model's frame size",
        "edge_frames": "frames without a full window (the first and last (T - 1) / 2 of each video, T = the window "
                       "length) have no map and are dropped with their masks and annotated boxes: they count neither "
                       "as ground truth nor in the false positives per frame",
        "masks": "pixel masks are resized to the map's size by nearest neighbour",
        "pixel_auc": f"UCSD rule: at threshold t a frame is abnormal when any pixel of its map exceeds t; an abnormal "
                     f"frame counts as detected only when the pixels above t cover >= {p.overlap:.0%} of its mask; "
                     f"frames with a pixel mask only",
        "regions": f"detected regions = connected components (8-connected) of map > t at each of {len(levels)} "
                   f"levels t = base x 2^(k/{p.levels_per_octave}), k = -{n}..{n} (base: the run's region threshold, else "
                   f"its frame threshold, else {p.fallback_level}); each level gives one point (false positives "
                   f"per frame, detection rate), the curve takes the best rate reachable at each FPR",
        "rbdc_tbdc": f"Ramachandra & Jones (WACV 2020): a ground-truth region is detected by a region of its frame "
                     f"with IoU >= {p.beta:g}; a region overlapping no ground-truth region with IoU >= {p.beta:g} is "
                     f"a false positive; a ground-truth track is detected when >= {p.alpha:.0%} of its regions "
                     f"are; area under detection rate vs false positives per frame (over every frame with a map) "
                     f"for FPR in [0, {p.max_fpr:g}], divided by {p.max_fpr:g}",
        "annotations": annotations,
        "overlap": p.overlap, "beta": p.beta, "alpha": p.alpha, "max_fpr": p.max_fpr,
        "levels": [float(f"{t:.6g}") for t in levels],
    }
