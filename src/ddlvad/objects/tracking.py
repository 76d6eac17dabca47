"""Glue between a detector and the Roboflow ``trackers`` library (OC-SORT, ByteTrack).

The paper tracks its detections with OC-SORT (docs/method.md §2.1); we call the
library's implementation, we do not write a tracker. This module only converts our
per-frame ``(k, 5)`` pixel boxes to ``supervision.Detections``, collects the tracker's ids,
and writes :class:`~ddlvad.data.tracks.Tracks` rows normalised to [0, 1].

Start of a track. The library returns ``tracker_id = -1`` for a track until it has been
matched in ``minimum_consecutive_frames`` consecutive frames, so the first 1-2 boxes of
every track would be missing and a pseudo-anomaly window (T frames that all need the
track) could not start there. With ``backfill=True`` (default) each new track is extended
backwards, one frame at a time and for at most ``minimum_consecutive_frames`` frames, onto
the unassigned detection of the previous frame that overlaps its earliest box best (IoU >=
the tracker's ``minimum_iou_threshold``). Detections that never join a confirmed track are
dropped. Boxes are the detector's boxes (the library returns the detections, not Kalman
predictions), so a frame where the detector missed an object has no box for it.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from typing import Any, Protocol

import numpy as np

from ..data.tracks import Tracks
from ..errors import UserError

# Our defaults, on top of the library's: its confidence thresholds (0.6-0.7) assume a
# learned detector; the motion detector's score is a fill ratio (typically 0.3-0.8).
TRACKER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ocsort": {"lost_track_buffer": 30, "frame_rate": 30.0, "minimum_consecutive_frames": 3,
               "minimum_iou_threshold": 0.3, "high_conf_det_threshold": 0.25},
    "bytetrack": {"lost_track_buffer": 30, "frame_rate": 30.0, "minimum_consecutive_frames": 2,
                  "minimum_iou_threshold": 0.1, "track_activation_threshold": 0.4,
                  "high_conf_det_threshold": 0.4},
}


class ObjectDetector(Protocol):
    """Finds the objects of a video: per frame a ``(k, 5)`` array ``x1, y1, x2, y2, score`` in pixels."""

    def detect_video(self, frames: np.ndarray) -> list[np.ndarray]: ...


def _make_tracker(name: str, params: dict[str, Any]):
    import trackers

    classes = {"ocsort": trackers.OCSORTTracker, "bytetrack": trackers.ByteTrackTracker}
    if name not in classes:
        raise UserError(f"unknown tracker {name!r}: use --tracker ocsort or --tracker bytetrack")
    try:
        return classes[name](**params)
    except TypeError as exc:
        raise UserError(f"tracker {name}: bad parameter ({exc})") from None


def tracker_params(tracker: str, **kw) -> dict[str, Any]:
    """The full parameter set used for ``tracker``: our defaults updated with ``kw``."""
    if tracker not in TRACKER_DEFAULTS:
        raise UserError(f"unknown tracker {tracker!r}: use --tracker ocsort or --tracker bytetrack")
    return {**TRACKER_DEFAULTS[tracker], **kw}


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box (4,) against boxes (m, 4), xyxy."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def track_video(detections: list[np.ndarray], frame_size: tuple[int, int], tracker: str = "ocsort",
                backfill: bool = True, **kw) -> np.ndarray:
    """Track one video's detections.

    ``detections``: per frame a ``(k, 5)`` array ``x1, y1, x2, y2, score`` in pixels.
    ``frame_size``: ``(height, width)`` in pixels (the order of ``frames.shape[1:3]``).
    ``tracker``: ``"ocsort"`` or ``"bytetrack"``; ``kw`` override :data:`TRACKER_DEFAULTS`.
    Returns Tracks rows ``(n, 7)`` float64 ``frame, track_id, x1, y1, x2, y2, score``,
    boxes normalised to [0, 1], track ids >= 0 numbered from 0 per video, sorted by frame.
    """
    import supervision as sv

    params = tracker_params(tracker, **kw)
    trk = _make_tracker(tracker, params)
    h, w = frame_size
    scale = np.array([w, h, w, h], np.float64)
    rows: list[np.ndarray] = []  # (k, 7) per frame, track -1 = not (yet) in a confirmed track
    for f, dets in enumerate(detections):
        dets = np.asarray(dets, np.float64).reshape(-1, 5)
        if len(dets) == 0:
            out = trk.update(sv.Detections.empty())
        else:
            out = trk.update(sv.Detections(xyxy=dets[:, :4].astype(np.float32),
                                           confidence=dets[:, 4].astype(np.float32)))
        conf = out.confidence if out.confidence is not None else np.ones(len(out))
        rows.append(np.column_stack([np.full(len(out), f), out.tracker_id, out.xyxy, conf]).reshape(-1, 7))

    if backfill:
        _backfill(rows, params["minimum_consecutive_frames"], params["minimum_iou_threshold"])
    table = np.concatenate(rows) if rows else np.zeros((0, 7))
    table = table[table[:, 1] >= 0]
    table[:, 2:6] = np.clip(table[:, 2:6] / scale, 0.0, 1.0)
    return table[np.lexsort((table[:, 1], table[:, 0]))]


def _backfill(rows: list[np.ndarray], steps: int, min_iou: float) -> None:
    """Give each confirmed track the unconfirmed detections that started it (in place)."""
    first: dict[int, int] = {}
    for f, r in enumerate(rows):
        for tid in r[:, 1]:
            if tid >= 0:
                first.setdefault(int(tid), f)
    for tid, f0 in first.items():
        box = rows[f0][rows[f0][:, 1] == tid][0, 2:6]
        for f in range(f0 - 1, max(f0 - 1 - steps, -1), -1):
            free = np.flatnonzero(rows[f][:, 1] < 0)
            if len(free) == 0:
                break
            ious = _iou(box, rows[f][free, 2:6])
            best = int(np.argmax(ious))
            if ious[best] < min_iou:
                break
            rows[f][free[best], 1] = tid
            box = rows[f][free[best], 2:6]


def _detector_settings(detector: Any) -> dict[str, Any]:
    if hasattr(detector, "settings"):
        return detector.settings()
    params = getattr(detector, "params", None)
    return {"name": getattr(detector, "name", type(detector).__name__),
            "params": asdict(params) if is_dataclass(params) else {}}


def track_dataset(videos: dict[str, np.ndarray], detector: ObjectDetector, tracker: str = "ocsort",
                  progress: bool = False, **kw) -> Tracks:
    """Detect and track every video; ``videos``: video id -> uint8 frames ``(N, H, W[, C])``.

    ``kw`` override the tracker's parameters. The returned :class:`Tracks` records in
    ``settings`` the detector (name + params), the tracker (name + full params, backfill)
    and the versions of the libraries involved, so a tracks file says how it was made.
    """
    import cv2
    import supervision
    import trackers

    from .. import __version__

    backfill = kw.pop("backfill", True)
    params = tracker_params(tracker, **kw)
    out = Tracks(settings={
        "detector": _detector_settings(detector),
        "tracker": {"name": tracker, "params": params, "backfill": backfill},
        "versions": {"ddlvad": __version__, "trackers": trackers.__version__ if hasattr(trackers, "__version__")
                     else _dist_version("trackers"), "supervision": supervision.__version__,
                     "opencv": cv2.__version__, "numpy": np.__version__},
    })
    items = list(videos.items())
    if progress:
        from tqdm import tqdm

        items = tqdm(items, desc="track", unit="video")
    for vid, frames in items:
        frames = np.asarray(frames)
        dets = detector.detect_video(frames)
        out.add(vid, len(frames), track_video(dets, frames.shape[1:3], tracker, backfill=backfill, **params))
    return out


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def mot_scores(rows: np.ndarray, truth: dict[int, np.ndarray], size: tuple[int, int]) -> dict[str, float]:
    """How well tracks match ground truth: recall, precision, IDF1, ID switches and MOTA (the
    ``motmetrics`` library's CLEAR-MOT and ID measures; a match needs IoU >= 0.5).

    ``rows``: Tracks rows ``(n, 7)`` with boxes normalised to [0, 1]; ``truth``: object id ->
    ``(frames, 4)`` pixel boxes ``x1, y1, x2, y2``, NaN where the object is absent; ``size``:
    ``(height, width)`` in pixels. Needs ``motmetrics`` (a test dependency).
    """
    try:
        import motmetrics as mm
    except ImportError:
        raise UserError("tracking scores need the motmetrics package: pip install motmetrics") from None

    h, w = size
    acc = mm.MOTAccumulator(auto_id=True)
    n = len(next(iter(truth.values())))
    for f in range(n):
        gt_ids = [oid for oid, b in truth.items() if not np.isnan(b[f, 0])]
        gt = np.array([truth[oid][f] for oid in gt_ids]).reshape(-1, 4)
        r = rows[rows[:, 0] == f]
        hyp = r[:, 2:6] * [w, h, w, h]
        # IoU computed here: motmetrics 1.4's iou_matrix uses np.asfarray, which numpy 2 removed
        iou = np.array([_iou(g, hyp) for g in gt]).reshape(len(gt), len(hyp))
        acc.update(gt_ids, r[:, 1].astype(int).tolist(), np.where(iou >= 0.5, 1 - iou, np.nan))
    names = ["recall", "precision", "idf1", "num_switches", "mota"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="scene")
    return {k: float(summary[k].iloc[0]) for k in names}
