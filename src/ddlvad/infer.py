"""Score a new video file, folder of frames or live stream with a trained model.

The core is :meth:`Detector.stream`: frames are converted to the run's frame spec as they
arrive (:func:`ddlvad.data.frames.convert_frame`: the same resizing and channel conversion
as training, whatever the source) and held in a buffer of at most ``B + T - 1`` frames;
every ``B`` new frames, the ``B`` windows whose last frame has arrived are scored in one
pass (:func:`ddlvad.score.reconstruct_windows`, encoder outputs shared across windows) and
their results are yielded in frame order. Files and folders use ``B = cfg.score.batch_size``;
live streams use ``B = 1`` so that a frame's result comes ``(T-1)/2`` frames after it.
Memory does not grow with the length of the source.

A frame's score is the worst patch mean of its error map (METHOD.md section 6); the first
and last ``(T-1)/2`` frames have no full window: their score is NaN, they have no error map
and are never anomalous. A frame is anomalous when its score is strictly above the
threshold. :class:`EventTracker` merges anomalous frames into events.

    from ddlvad import Detector
    detector = Detector.load("runs/tiny")
    for result in detector.stream("clip.mp4"):
        print(result.frame, result.time, result.score, result.anomalous)
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
from torch import nn

from .config import Config, EventRules
from .data.frames import FrameSpec, convert_frame
from .data.layouts import IMAGE_EXTS, image_files
from .errors import UserError
from .loss import pixel_error
from .score import reconstruct_windows, to_tensor, worst_patches

DEFAULT_FPS = 25.0
"""Frame rate assumed for a folder of frames, or a source that reports none (``--fps``)."""


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
    """``score > threshold``; always False for edge frames and when no threshold is set."""
    error_map: np.ndarray | None
    """``(H, W)`` float32 error ``e(X_t, f(X))`` at the model's resolution; None for edge frames."""
    box: tuple[int, int, int, int] | None
    """The worst patch ``(x, y, w, h)`` in error-map pixels; None for edge frames."""
    image: np.ndarray = field(repr=False)
    """The frame as the source gave it (BGR or grey at the source's size, or as passed in)."""


@dataclass
class Event:
    """One abnormal segment: from its first to its last anomalous frame (inclusive)."""

    start_frame: int
    end_frame: int
    start_time: float
    """Seconds, time of ``start_frame``."""
    end_time: float
    """Seconds, time of ``end_frame``."""
    peak_score: float
    peak_frame: int

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame + 1

    def as_dict(self) -> dict:
        return {**asdict(self), "frames": self.frames}

    def describe(self) -> str:
        return (f"frames {self.start_frame}-{self.end_frame} ({self.start_time:.2f}-{self.end_time:.2f} s), "
                f"peak {self.peak_score:.4g} at frame {self.peak_frame}")


class EventTracker:
    """Merges results, in frame order, into events under :class:`EventRules`.

    :meth:`update` returns an event when it closes (``gap + 1`` non-anomalous frames after
    its last anomalous frame); :meth:`finish` closes the one still open at the end.
    """

    def __init__(self, rules: EventRules = EventRules()) -> None:
        self.rules = rules
        self._open: Event | None = None

    def update(self, result: FrameResult) -> Event | None:
        event = self._open
        if result.anomalous:
            if event is None:
                self._open = Event(result.frame, result.frame, result.time, result.time, result.score, result.frame)
            else:
                event.end_frame, event.end_time = result.frame, result.time
                if result.score > event.peak_score:
                    event.peak_score, event.peak_frame = result.score, result.frame
            return None
        if event is not None and result.frame - event.end_frame > self.rules.gap:
            return self.finish()
        return None

    def finish(self) -> Event | None:
        """Close the open event; None when there is none or it is shorter than ``min_frames``."""
        event, self._open = self._open, None
        return event if event is not None and event.frames >= self.rules.min_frames else None


# ====================================================================== sources
class VideoSource:
    """Frames of a video file, a folder of images, a camera or a stream URL, one at a time.

    ``source``: an existing file or folder; else a camera index (``0``) or a URL
    (``rtsp://...``). Iterating yields OpenCV images (BGR, grey or BGRA; uint8 or uint16)
    at the source's size. ``fps`` overrides the rate the source reports (a folder reports
    none; :data:`DEFAULT_FPS` is assumed then). A source is ``live`` when it is a camera or a
    URL that announces no frame count; when a live source stops sending frames, iteration
    ends and :attr:`stopped` says so.
    """

    def __init__(self, source: str | int | Path, fps: float | None = None) -> None:
        if fps is not None and not (fps > 0 and math.isfinite(fps)):
            raise UserError(f"--fps {fps}: must be a positive number of frames per second")
        self.stopped: str | None = None
        self._capture: cv2.VideoCapture | None = None
        self._files: tuple[Path, ...] = ()
        text = str(source)
        path = Path(text).expanduser()
        reported = None
        if path.is_dir():
            self._files = image_files(path)
            if not self._files:
                raise UserError(f"source folder {path} holds no frame images ({', '.join(IMAGE_EXTS)})")
            self.name, self.label, self.live, self.announced = path.resolve().name, str(path), False, len(self._files)
        elif path.is_file() or text.isdigit() or "://" in text:
            target: str | int = str(path) if path.is_file() else int(text) if text.isdigit() else text
            what = "video file" if path.is_file() else "camera" if text.isdigit() else "stream"
            self._capture = _open_capture(target)
            if not self._capture.isOpened():
                hint = ("it is corrupt or in a format OpenCV cannot read; convert it (e.g. to MJPG .avi) or "
                        "extract its frames into a folder" if what == "video file" else
                        "check that it is connected and not in use" if what == "camera" else
                        "check the address and that the stream is up")
                raise UserError(f"cannot open {what} {text}: {hint}")
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            self.announced = count if count > 0 else None
            self.live = what == "camera" or (what == "stream" and self.announced is None)
            reported = self._capture.get(cv2.CAP_PROP_FPS)
            self.label = f"camera {text}" if what == "camera" else text
            self.name = path.stem if path.is_file() else f"camera{text}" if text.isdigit() else _url_name(text)
        else:
            raise UserError(f"source {text} not found: give a video file, a folder of frame images, "
                            f"a camera index (0) or a stream URL")
        reported = float(reported) if reported and math.isfinite(reported) and 0 < reported < 1000 else None
        self.fps: float = float(fps or reported or DEFAULT_FPS)
        """Frames per second used for frame times."""
        self.fps_origin = "--fps" if fps else "source" if reported else "assumed"

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._capture is None:
            for index, path in enumerate(self._files):
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if image is None:
                    raise UserError(f"cannot read frame {index} of {self.label}: {path} is corrupt or not an "
                                    f"image; replace or delete it")
                yield image
            return
        count = 0
        while True:
            ok, image = self._capture.read()
            if not ok or image is None:
                if self.live:
                    self.stopped = f"{self.label} stopped sending frames after {count} frames"
                return
            count += 1
            yield image

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _open_capture(target: str | int) -> cv2.VideoCapture:
    """``cv2.VideoCapture(target)`` with OpenCV's and FFmpeg's own log lines kept off stderr
    (a failure is reported by the caller in one line)."""
    with _quiet_stderr():
        return cv2.VideoCapture(target)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null (C libraries write there, not to ``sys.stderr``)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # no usable descriptor 2: nothing to hide
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _url_name(url: str) -> str:
    tail = url.split("://", 1)[1].split("?")[0].rstrip("/")
    return Path(tail).stem or tail.split("/")[0] or "stream"


# ====================================================================== the detector
class Detector:
    """A trained model that scores frames as they arrive.

    ``threshold`` is the frame score above which a frame is anomalous (None: scores only;
    :meth:`stream` then refuses to run). ``batch_size`` (windows per forward pass for
    files, folders and arrays) defaults to ``cfg.score.batch_size``.
    """

    def __init__(self, model: nn.Module, cfg: Config, threshold: float | None = None,
                 batch_size: int | None = None) -> None:
        if batch_size is not None and batch_size < 1:
            raise UserError(f"--batch {batch_size}: must be >= 1")
        self.model = model.eval()
        self.cfg = cfg
        self.spec = FrameSpec.from_config(cfg.data)
        self.threshold = None if threshold is None else float(threshold)
        self.batch_size = batch_size or cfg.score.batch_size
        self.threshold_origin: str | None = None if threshold is None else "given"
        """Where the threshold came from: ``run`` (stored by training), ``given``, or None."""

    @classmethod
    def load(cls, run: str | Path, threshold: float | None = None, batch_size: int | None = None) -> "Detector":
        """The model of a run folder (or checkpoint file); ``threshold`` overrides the one
        stored by training (``checkpoint["threshold"]["value"]``)."""
        from .checkpoint import load_model

        model, cfg, ckpt = load_model(run)
        stored = (ckpt.get("threshold") or {}).get("value")
        detector = cls(model, cfg, stored if threshold is None else threshold, batch_size)
        if threshold is None and stored is not None:
            detector.threshold_origin = "run"
        return detector

    @property
    def frames(self) -> int:
        """Window length T."""
        return int(self.model.frames)

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
        results = self._scan(frames, 1.0, self.batch_size, raw, None)
        return np.array([r.score for r in results], dtype=np.float64)

    def stream(self, source: "VideoSource | str | int | Path | Iterable[np.ndarray]", *, fps: float | None = None,
               batch_size: int | None = None, max_frames: int | None = None) -> Iterator[FrameResult]:
        """Yield a :class:`FrameResult` per frame of ``source``, in order, as soon as its
        window is complete.

        ``source``: a :class:`VideoSource`, what :class:`VideoSource` opens (path, camera
        index, URL; closed at the end), or any iterable of frames (as :meth:`prepare`
        takes them; times use ``fps`` or :data:`DEFAULT_FPS`). ``batch_size``: windows per
        pass (default: 1 for a live source, else the detector's). ``max_frames``: stop
        after that many frames.
        """
        if self.threshold is None:
            raise UserError("no detection threshold: this run stores none; pass threshold=... "
                            "(a frame score, e.g. the largest score of a normal video)")
        if max_frames is not None and max_frames < 1:
            raise UserError(f"--max-frames {max_frames}: must be >= 1")
        owned = isinstance(source, (str, int, Path))
        video = VideoSource(source, fps) if owned else source
        try:
            if isinstance(video, VideoSource):
                rate, raw, live = video.fps, True, video.live
            else:
                rate, raw, live = float(fps or DEFAULT_FPS), None, False
            batch = batch_size or (1 if live else self.batch_size)
            images = itertools.islice(video, max_frames) if max_frames else video
            yield from self._scan(images, rate, batch, raw, self.threshold)
        finally:
            if owned:
                video.close()

    # ------------------------------------------------------------------ the streaming core
    def _scan(self, images: Iterable[np.ndarray], fps: float, batch: int, raw: bool | None,
              threshold: float | None) -> Iterator[FrameResult]:
        """Results of ``images`` in order; holds at most ``batch + T - 1`` frames."""
        h = self.frames // 2
        held: list[np.ndarray] = []   # converted frames first .. n-1, each (H, W, C) uint8
        given: list[np.ndarray] = []  # the same frames as the source gave them
        first = 0                     # source index of held[0]
        n = 0                         # frames read so far
        centre = h                    # next frame to score
        for image in images:
            held.append(self.prepare(image, raw, f"frame {n}"))
            given.append(image)
            n += 1
            if n <= h:  # leading edge frame: no window will ever be centred on it
                yield self._edge(n - 1, fps, image)
            while n - h - centre >= batch:  # `batch` windows have all their frames
                yield from self._windows(held, given, first, centre, batch, fps, threshold)
                centre += batch
                drop = centre - h - first  # frames no later window needs
                del held[:drop], given[:drop]
                first += drop
        if n - h > centre:
            yield from self._windows(held, given, first, centre, n - h - centre, fps, threshold)
            centre = n - h
        for index in range(max(centre, h), n):  # trailing edge frames
            yield self._edge(index, fps, given[index - first])

    @torch.inference_mode()
    def _windows(self, held: list[np.ndarray], given: list[np.ndarray], first: int, centre: int, count: int,
                 fps: float, threshold: float | None) -> Iterator[FrameResult]:
        frames = np.stack(held)                                   # (len(held), H, W, C)
        local = np.arange(centre, centre + count) - first
        recon = reconstruct_windows(self.model, frames, local)    # (count, C, H, W)
        error = pixel_error(to_tensor(frames[local]), recon)      # (count, H, W)
        scores, boxes = worst_patches(error, self.cfg.score.patch, self.cfg.score.shifted_grid)
        for k, i in enumerate(local):
            score = float(scores[k])
            yield FrameResult(int(first + i), (first + i) / fps, score, threshold is not None and score > threshold,
                              error[k].numpy().copy(), tuple(int(v) for v in boxes[k]), given[i])

    @staticmethod
    def _edge(index: int, fps: float, image: np.ndarray) -> FrameResult:
        return FrameResult(index, index / fps, math.nan, False, None, None, image)
