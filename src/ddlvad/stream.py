"""Score a new video file, folder of frames or live stream with a trained model.

:meth:`AnomalyDetector.stream` converts frames to the run's frame spec as they arrive
(:func:`ddlvad.data.frames.convert_frame`: the same resizing and channel conversion as
training, whatever the source) and scores them with :class:`ddlvad.score.Scorer`, which holds
at most ``B + T - 1`` frames and scores ``B`` windows per pass. Files and folders use
``B = score.batch_size``; live streams use ``B = 1`` so that a frame's result comes
``(T-1)/2`` frames after it. Memory does not grow with the length of the source.

A frame's score is the worst patch mean of its error map (docs/method.md §6); the first
and last ``(T-1)/2`` frames have no full window: their score is NaN, they have no error map
and are never anomalous. A frame is anomalous when its score is strictly above the
threshold; a threshold of 0 makes every scored frame anomalous (a score of exactly 0, a
perfect reconstruction, too). :class:`EventTracker` merges anomalous frames into events.

    from ddlvad import AnomalyDetector
    detector = AnomalyDetector.load("runs/tiny")
    for result in detector.stream("clip.mp4"):
        print(result.frame, result.time, result.score, result.anomalous)
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import Config, EventRules
from .data.frames import FrameSpec, convert_frame
from .data.video import DEFAULT_FPS, VideoSource
from .errors import UserError
from .regions import Region, link_tracks, regions_from_map
from .score import ScoredFrame, Scorer


# ====================================================================== results and events
@dataclass
class FrameResult:
    """What the detector says about one frame."""

    frame: int
    """Index of the frame in the source, from 0."""
    time: float
    """Seconds from the start of the source: ``frame / fps``."""
    score: float
    """Worst patch mean of the error map; NaN for the ``(T-1)/2`` edge frames at each end."""
    anomalous: bool
    """``score > threshold`` (every scored frame at threshold 0); always False for edge frames and
    when no threshold is set."""
    error_map: np.ndarray | None
    """``(H, W)`` float32 error ``e(X_t, f(X))`` at the model's resolution; None for edge frames."""
    box: tuple[int, int, int, int] | None
    """The worst patch ``(x, y, w, h)`` in error-map pixels; None for edge frames."""
    image: np.ndarray = field(repr=False)
    """The frame as the source gave it (BGR or grey at the source's size, or as passed in)."""
    regions: list[Region] = field(default_factory=list)
    """Anomalous regions: connected components of the frame's anomaly map (:attr:`ddlvad.score.ScoredFrame.anomaly_map`)
    above the run's region threshold, as boxes ``(x1, y1, x2, y2)`` (x2, y2 exclusive) in
    error-map pixels with the largest patch mean inside as score; empty for normal frames."""

    def in_source(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box ``(x1, y1, x2, y2)`` in error-map pixels, in pixels of :attr:`image`."""
        if self.error_map is None:
            return box
        sy, sx = self.image.shape[0] / self.error_map.shape[0], self.image.shape[1] / self.error_map.shape[1]
        x1, y1, x2, y2 = box
        return (round(x1 * sx, 1), round(y1 * sy, 1), round(x2 * sx, 1), round(y2 * sy, 1))


@dataclass
class Event:
    """One abnormal segment: from its first to its last anomalous frame (inclusive). Boxes are in
    pixels of the source frames, ``(x1, y1, x2, y2)``."""

    start_frame: int
    end_frame: int
    start_time: float
    """Seconds, time of ``start_frame``."""
    end_time: float
    """Seconds, time of ``end_frame``."""
    peak_score: float
    peak_frame: int
    box: list[float] | None = None
    """The union of the event's regions (None: no region above the region threshold)."""
    peak_regions: list[list[float]] = field(default_factory=list)
    """The regions of the peak frame, each ``[x1, y1, x2, y2, score]``."""
    tracks: list[list[list[float]]] = field(default_factory=list)
    """The regions linked over the event's frames by overlap (:func:`ddlvad.regions.link_tracks`):
    per track its ``[frame, x1, y1, x2, y2]`` rows, longest track first."""

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def as_dict(self) -> dict:
        return {**asdict(self), "frames": self.frames}

    def describe(self) -> str:
        where = "" if self.box is None else f", region {[round(v) for v in self.box]}"
        return (f"frames {self.start_frame}-{self.end_frame} ({self.start_time:.2f}-{self.end_time:.2f} s), "
                f"peak {self.peak_score:.4g} at frame {self.peak_frame}{where}")


class EventTracker:
    """Merges results, in frame order, into events under :class:`EventRules`.

    :meth:`update` returns an event when it closes (``gap + 1`` non-anomalous frames after
    its last anomalous frame); :meth:`finish` closes the one still open at the end. An event
    carries the regions of its anomalous frames: their union, those of its peak frame, and
    their tracks.
    """

    def __init__(self, rules: EventRules | None = None) -> None:
        self.rules = rules or EventRules()
        self._open: Event | None = None
        self._regions: dict[int, list[tuple[tuple[float, ...], float]]] = {}

    @property
    def current(self) -> Event | None:
        """The event still open (it may yet be dropped as shorter than ``min_frames``)."""
        return self._open

    def update(self, result: FrameResult) -> Event | None:
        event = self._open
        if result.anomalous:
            regions = [(result.in_source(r.box), r.score) for r in result.regions]
            if event is None:
                event = self._open = Event(result.frame, result.frame, result.time, result.time, result.score,
                                           result.frame)
                self._regions = {}
            else:
                event.end_frame, event.end_time = result.frame, result.time
                if result.score > event.peak_score:
                    event.peak_score, event.peak_frame = result.score, result.frame
            self._regions[result.frame] = regions
            return None
        if event is not None and result.frame - event.end_frame > self.rules.gap:
            return self.finish()
        return None

    def finish(self) -> Event | None:
        """Close the open event; None when there is none or it is shorter than ``min_frames``."""
        event, self._open = self._open, None
        if event is None or event.frames < self.rules.min_frames:
            return None
        boxes = [b for regions in self._regions.values() for b, _ in regions]
        if boxes:
            event.box = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                         max(b[3] for b in boxes)]
        event.peak_regions = [[*b, round(float(score), 6)] for b, score in self._regions.get(event.peak_frame, [])]
        frames = list(range(event.start_frame, event.end_frame + 1))
        tracks = link_tracks([[b for b, _ in self._regions.get(f, [])] for f in frames])
        event.tracks = [[[event.start_frame + f, *b] for f, b in t] for t in sorted(tracks, key=len, reverse=True)]
        return event


# ====================================================================== the detector
def _check_batch(batch_size: int | None) -> None:
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch {batch_size}: must be >= 1")


class AnomalyDetector:
    """A trained model that scores frames as they arrive (not to be confused with the object
    detectors of :mod:`ddlvad.objects`, which find the boxes pseudo anomalies go into).

    ``threshold`` is the frame score above which a frame is anomalous (None: scores only;
    :meth:`stream` then refuses to run). ``batch_size`` (windows per forward pass for
    files, folders and arrays) defaults to ``cfg.score.batch_size``.
    """

    def __init__(self, model: nn.Module, cfg: Config, threshold: float | None = None,
                 batch_size: int | None = None, region_threshold: float | None = None,
                 weights: torch.Tensor | None = None, engine: str | None = None) -> None:
        _check_batch(batch_size)
        if threshold is not None and not (math.isfinite(threshold) and threshold >= 0):
            raise UserError(f"--threshold {threshold:g}: frame scores are errors >= 0: give a finite threshold "
                            f">= 0 (0 makes every scored frame anomalous)")
        self.model = model.eval()
        self.cfg = cfg
        self.spec = FrameSpec.for_scoring(cfg)  # the training size unless score.scale (docs/method.md#scoring-options)
        from .engines import load_engine

        self.engine = engine or cfg.score.engine
        """What runs the network (``score.engine``; :attr:`model` stays the torch model)."""
        scoring = load_engine(model, cfg, self.engine, batch_size, cfg.data.cache_dir)
        self.scorer = Scorer(scoring, cfg.score, batch_size, weights)
        self.threshold = None if threshold is None else float(threshold)
        self.region_threshold = self.threshold if region_threshold is None else float(region_threshold)
        """Anomaly-map value above which a pixel belongs to a region (stored by training; else
        the frame threshold)."""
        self.threshold_origin: str | None = None if threshold is None else "given"
        """Where the threshold came from: ``run`` (stored by training), ``given``, or None."""
        self.info: dict = {}
        """What the run says about its training (``step``, ``stopped``, ``converged``), when loaded."""

    @classmethod
    def load(cls, run: str | Path, threshold: float | None = None, batch_size: int | None = None,
             engine: str | None = None) -> AnomalyDetector:
        """The model of a run folder (or checkpoint file); ``threshold`` overrides the one
        stored by training (``checkpoint["threshold"]["value"]``), ``engine`` the run's
        ``score.engine``."""
        from .checkpoint import load_model
        from .conv_layout import choose as choose_layout
        from .models import apply_layout

        model, cfg, ckpt = load_model(run)
        apply_layout(model, choose_layout(cfg, "score"))
        stored = (ckpt.get("threshold") or {}).get("value")
        detector = cls(model, cfg, stored if threshold is None else threshold, batch_size,
                       region_threshold=(ckpt.get("threshold") or {}).get("region"), weights=position_of(ckpt, cfg, run),
                       engine=engine)
        detector.info = {k: ckpt.get(k) for k in ("step", "trained_steps", "stopped", "converged", "kept_step")}
        if threshold is None and stored is not None:
            detector.threshold_origin = "run"
        return detector

    @property
    def frames(self) -> int:
        """Window length T."""
        return self.scorer.frames

    @property
    def batch_size(self) -> int:
        return self.scorer.batch_size

    def prepare(self, image: np.ndarray, raw: bool | None = None, where: str = "frame") -> np.ndarray:
        """One frame -> ``(H, W, C)`` uint8 in the model's spec.

        ``raw=True``: an OpenCV image (BGR/grey/BGRA, any size) converted like training
        frames. ``raw=None``: an array already of the spec's shape and uint8 is taken as
        converted (so a BGR image exactly of a colour model's size must be passed with
        ``raw=True``); anything else is converted. Raises :class:`UserError` when the
        channels or pixel type cannot be converted.
        """
        s = self.spec
        if not raw and image.dtype == np.uint8 and image.shape == (s.height, s.width, s.channels):
            return image
        if raw is False:
            raise UserError(f"{where} has shape {image.shape} and type {image.dtype}: expected "
                            f"({s.height}, {s.width}, {s.channels}) uint8 frames in the model's spec")
        return convert_frame(np.asarray(image), s, where)

    def score(self, frames: np.ndarray | Iterable[np.ndarray], raw: bool | None = None) -> np.ndarray:
        """Scores ``(N,)`` float64 of N frames (``(N, H, W, C)`` uint8 in the model's spec, or
        OpenCV images of any size: see :meth:`prepare`); NaN for the edge frames. Needs no
        threshold. Equals :func:`ddlvad.score.score_video` on converted frames."""
        scored = self.scorer.stream(frames, lambda image, i: self.prepare(image, raw, f"frame {i}"))
        return np.array([r.score for r in scored], dtype=np.float64)

    def stream(self, source: VideoSource | str | int | Path | Iterable[np.ndarray], *, fps: float | None = None,
               batch_size: int | None = None, max_frames: int | None = None) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per frame of ``source``, in order, as soon as its
        window is complete.

        ``source``: a :class:`VideoSource`, what :class:`VideoSource` opens (path, camera
        index, URL; closed at the end), or any iterable of frames (as :meth:`prepare`
        takes them; times use ``fps`` or :data:`DEFAULT_FPS`). ``batch_size``: windows per
        pass (default: 1 for a live source, else the detector's). ``max_frames``: stop
        after that many frames. Bad arguments raise here, before any frame is read.
        """
        if self.threshold is None:
            raise UserError("no detection threshold: this run stores none; pass threshold=... "
                            "(a frame score, e.g. the largest score of a normal video)")
        if max_frames is not None and not 1 <= max_frames <= sys.maxsize:
            raise UserError(f"--max-frames {max_frames}: must be from 1 to {sys.maxsize}")
        _check_batch(batch_size)
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise UserError(f"--fps {fps}: must be a positive number of frames per second")
        return self._stream(source, fps, batch_size, max_frames)

    def _stream(self, source: VideoSource | str | int | Path | Iterable[np.ndarray], fps: float | None,
                batch_size: int | None, max_frames: int | None) -> Iterator[FrameResult]:
        owned = isinstance(source, (str, int, Path))
        video = VideoSource(source, fps) if owned else source
        try:
            if isinstance(video, VideoSource):
                rate, raw, live = video.fps, True, video.live
            else:
                rate, raw, live = float(fps or DEFAULT_FPS), None, False
            batch = batch_size or (1 if live else self.batch_size)
            images = itertools.islice(video, max_frames) if max_frames else video
            prepare = lambda image, i: self.prepare(image, raw, f"frame {i}")  # noqa: E731
            for scored in self.scorer.stream(images, prepare, batch):
                yield frame_result(scored, scored.index / rate, self.threshold, self.region_threshold)
        finally:
            if owned:
                video.close()


def position_of(ckpt: dict, cfg: Config, run: str | Path) -> torch.Tensor | None:
    """The ``score.position`` weights a run stored (None when it scores the paper's error)."""
    if cfg.score.position == "none":
        return None
    weights = (ckpt.get("position") or {}).get("weights")
    if weights is None:
        raise UserError(f"{run}: trained with score.position={cfg.score.position} but stores no position statistics; "
                        f"train it again (or evaluate it with --position mean and --data, which measures them)")
    return weights


def frame_result(scored: ScoredFrame, time: float, threshold: float | None, region_threshold: float | None
                 ) -> FrameResult:
    """What a scored frame means at a threshold: anomalous when its score is strictly above
    ``threshold`` (every scored frame at threshold 0); its regions, the components of its anomaly map above ``region_threshold``
    (:func:`ddlvad.regions.regions_from_map`); ``time`` in seconds (from the source's start, or
    the wall clock for live cameras)."""
    error = None if scored.error is None else scored.error.numpy().copy()
    anomalous = (threshold is not None and math.isfinite(scored.score)
                 and (scored.score > threshold or threshold == 0))  # 0: every scored frame
    regions = []
    if scored.anomaly_map is not None and region_threshold is not None:
        regions = regions_from_map(scored.anomaly_map.numpy(), region_threshold)
    return FrameResult(scored.index, time, scored.score, anomalous, error, scored.box, scored.item, regions)
