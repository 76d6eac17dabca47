"""Regions of an anomaly map at run time: boxes, connected components, and tracks of regions.

What :mod:`ddlvad.stream` reads from a frame's anomaly map (the anomalous regions and, over an
event, their tracks), and the geometry the evaluation metrics (:mod:`ddlvad.localisation`) use
for detected and ground-truth regions alike. Numbers in, numbers out; no torch, no file I/O.

Coordinates: a *box* is ``(x1, y1, x2, y2)`` in pixels of the map it came from, ``x`` = column,
``y`` = row, with ``x2`` and ``y2`` **exclusive** (the box covers columns ``x1 .. x2 - 1``), so
its area is ``(x2 - x1) * (y2 - y1)``. Regions are connected components (8-connectivity,
:func:`scipy.ndimage.label`) of a thresholded score map or of a ground-truth mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

Box = tuple[float, float, float, float]
"""``(x1, y1, x2, y2)`` in pixels, ``x2``/``y2`` exclusive (integers when they come from a map)."""

Track = list[tuple[int, Box]]
"""One track: ``(frame index, box)`` pairs in frame order."""

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity structuring element


@dataclass(frozen=True)
class Region:
    """One detected anomalous region of a frame: a box and its score.

    ``x1, y1, x2, y2`` are pixel coordinates of the score map (``x2``, ``y2`` exclusive);
    ``score`` is in the map's units (higher = more abnormal).
    """

    x1: int
    y1: int
    x2: int
    y2: int
    score: float

    @property
    def box(self) -> Box:
        """``(x1, y1, x2, y2)``."""
        return (self.x1, self.y1, self.x2, self.y2)


def as_box(b: Box | Region | Sequence[float]) -> Box:
    """A box from a :class:`Region` or a sequence of at least 4 numbers (extra items ignored)."""
    if isinstance(b, Region):
        return b.box
    x1, y1, x2, y2 = b[:4]
    return (x1, y1, x2, y2)


def iou(a: Box | Region, b: Box | Region) -> float:
    """Intersection over union of two boxes, in [0, 1].

    Boxes are ``(x1, y1, x2, y2)`` with exclusive ``x2``/``y2`` (a :class:`Region` is accepted
    for either). Empty or inverted boxes have area 0; the IoU is 0 when the union is empty.
    """
    ax1, ay1, ax2, ay2 = as_box(a)
    bx1, by1, bx2, by2 = as_box(b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    area_a = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1)
    area_b = max(0.0, bx2 - bx1) * max(0.0, by2 - by1)
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every row of ``a`` (n, 4) with every row of ``b`` (m, 4): (n, m), same rule as iou."""
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _components(binary: np.ndarray) -> tuple[np.ndarray, int, list[tuple[slice, slice]]]:
    """8-connected components of a 2-D bool array: labels, count, and one slice pair each."""
    labels, n = ndimage.label(binary, structure=_EIGHT)
    return labels, int(n), ndimage.find_objects(labels)


def regions_from_map(score_map: np.ndarray, threshold: float, min_area: int = 1) -> list[Region]:
    """Anomalous regions of one score map: 8-connected components of ``score_map > threshold``.

    Args:
        score_map: ``(H, W)`` float array, higher = more abnormal. ``NaN`` pixels never exceed the
            threshold (they belong to no region).
        threshold: strict threshold in the map's units.
        min_area: components with fewer pixels than this are dropped (>= 1).

    Returns:
        One :class:`Region` per kept component, in the order :func:`scipy.ndimage.label` numbers
        them (raster order of each component's first pixel): the bounding box of the component
        (``x2``, ``y2`` exclusive) and ``score`` = the maximum of the map over the component's own
        pixels (not over its whole box). Empty list when no pixel exceeds the threshold.
    """
    m = np.asarray(score_map)
    if m.ndim != 2:
        raise ValueError(f"score_map must be (H, W), got shape {m.shape}")
    if min_area < 1:
        raise ValueError(f"min_area must be >= 1, got {min_area}")
    labels, n, slices = _components(m > threshold)
    if n == 0:
        return []
    index = np.arange(1, n + 1)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    peaks = ndimage.maximum(m, labels, index)  # max of the map over each component's pixels
    out = []
    for i, (sy, sx) in enumerate(slices):
        if areas[i] >= min_area:
            out.append(Region(int(sx.start), int(sy.start), int(sx.stop), int(sy.stop), float(peaks[i])))
    return out


def mask_regions(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Ground-truth regions of one pixel mask: boxes of its 8-connected components.

    Args:
        mask: ``(H, W)`` array, truthy = anomalous pixel.

    Returns:
        ``(x1, y1, x2, y2)`` integer boxes (``x2``, ``y2`` exclusive), in
        :func:`scipy.ndimage.label` order; empty list for an empty mask.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {m.shape}")
    _, _, slices = _components(m.astype(bool))
    return [(int(sx.start), int(sy.start), int(sx.stop), int(sy.stop)) for sy, sx in slices]


def link_tracks(
    regions_per_frame: Sequence[Sequence[Box]],
    min_iou: float = 0.0,
    *,
    video_starts: Iterable[int] = (),
) -> list[Track]:
    """Ground-truth tracks from per-frame regions (our rule; benchmark masks carry no track ids).

    Frame by frame, each region of frame ``f`` is linked to a track that has a region in frame
    ``f - 1`` overlapping it with IoU ``> min_iou`` (with the default 0: any overlap). Links are
    one-to-one and greedy by IoU: candidate pairs (track's region in ``f - 1``, region in ``f``)
    are taken in decreasing IoU (ties: earlier previous region, then earlier current region) while
    both are free, so a region joins the track whose last region overlaps it best unless a better
    overlapping region of frame ``f`` already took that track. A region left unlinked starts a new
    track. A track ends at the first frame where it gets no region (a one-frame gap splits it),
    and never continues across a frame listed in ``video_starts``.

    Args:
        regions_per_frame: ``regions_per_frame[f]`` = boxes ``(x1, y1, x2, y2)`` of frame ``f``
            (for instance :func:`mask_regions` of each ground-truth mask).
        min_iou: IoU in [0, 1) that a link must exceed.
        video_starts: frame indices where a new video begins (when the frames of several videos
            are concatenated); no link is made from frame ``s - 1`` to frame ``s``.

    Returns:
        Tracks, each a list of ``(frame, box)`` in frame order, ordered by first frame and then by
        the position of their first region in that frame. Every input region is in exactly one
        track.
    """
    if not 0.0 <= min_iou < 1.0:
        raise ValueError(f"min_iou must be in [0, 1), got {min_iou}")
    starts = {int(s) for s in video_starts}
    tracks: list[Track] = []
    prev: list[tuple[int, Box]] = []  # (track index, box) of the previous frame
    for f, boxes in enumerate(regions_per_frame):
        cur = [as_box(b) for b in boxes]
        owner = [-1] * len(cur)
        if prev and cur and f not in starts:
            ious = iou_matrix(np.asarray([b for _, b in prev], float), np.asarray(cur, float))
            pi, ci = np.nonzero(ious > min_iou)
            order = np.lexsort((ci, pi, -ious[pi, ci]))  # IoU descending, then prev, then cur
            taken = set()
            for j in order:
                p, c = int(pi[j]), int(ci[j])
                if p in taken or owner[c] != -1:
                    continue
                taken.add(p)
                owner[c] = prev[p][0]
        for c, box in enumerate(cur):
            if owner[c] == -1:
                owner[c] = len(tracks)
                tracks.append([])
            tracks[owner[c]].append((f, box))
        prev = [(owner[c], box) for c, box in enumerate(cur)]
    return tracks
