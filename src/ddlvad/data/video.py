"""Reading frames: image files, video files, cameras and streams, through OpenCV, in one place.

Everything that reads pixels from a source goes through this module: the frame cache
(:mod:`ddlvad.data.frames`), ``ddlvad data info`` and the detection stream
(:class:`VideoSource`). Images come back as OpenCV gives them: BGR, grey or BGRA, uint8 or
uint16, at the source's size. Failures are :class:`UserError` naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError
from ..urls import redact, url_name
from .layouts import IMAGE_EXTS, VideoRecord, image_files

DEFAULT_FPS = 25.0
"""Frame rate assumed for a folder of frames, or a source that reports none (``--fps``)."""


def read_image(path: Path, where: str) -> np.ndarray:
    """One image file as OpenCV reads it (unchanged depth and channels)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"cannot read {where}: {path} is corrupt or not an image; replace or delete it")
    return image


def open_capture(target: str | int, what: str = "video file") -> cv2.VideoCapture:
    """``cv2.VideoCapture(target)``, opened, with OpenCV's and FFmpeg's own log lines kept off
    stderr (a failure is reported here in one line)."""
    with _quiet_stderr():
        capture = cv2.VideoCapture(target)
    if not capture.isOpened():
        hint = {"video file": "it is corrupt or in a format OpenCV cannot read; convert it (e.g. to MJPG .avi) "
                              "or extract its frames into a folder",
                "camera": "check that it is connected and not in use"}.get(what, "check the address and that "
                                                                             "the stream is up")
        raise UserError(f"cannot open {what} {redact(str(target))}: {hint}")
    return capture


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The frames of an open capture until it ends (the capture is left open)."""
    while True:
        ok, image = capture.read()
        if not ok or image is None:
            return
        yield image


def frame_count(capture: cv2.VideoCapture) -> int | None:
    """The frame count the file's header announces (None when it announces none)."""
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return count if count > 0 else None


def header_frame_count(record: VideoRecord) -> int:
    """Frames of a video file as its header announces them (0 when unknown); nothing is decoded."""
    capture = open_capture(str(record.source))
    try:
        return frame_count(capture) or 0
    finally:
        capture.release()


def first_frame_size(record: VideoRecord) -> tuple[int, int]:
    """``(height, width)`` of the first source frame of ``record``, in pixels."""
    if record.frame_files is not None:
        if not record.frame_files:
            raise UserError(f"{record.name} has no frame images: remove the empty folder {record.source}")
        image = read_image(record.frame_files[0], f"frame 0 of {record.name}")
    else:
        capture = open_capture(str(record.source))
        try:
            image = next(read_frames(capture), None)
        finally:
            capture.release()
        if image is None:
            raise UserError(f"cannot read the first frame of {record.name}: {record.source} is corrupt")
    return int(image.shape[0]), int(image.shape[1])


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
            what = "video file" if path.is_file() else "camera" if text.isdigit() else "stream"
            target: str | int = str(path) if path.is_file() else int(text) if text.isdigit() else text
            self._capture = open_capture(target, what)
            self.announced = frame_count(self._capture)
            self.live = what == "camera" or (what == "stream" and self.announced is None)
            reported = self._capture.get(cv2.CAP_PROP_FPS)
            self.label = f"camera {text}" if what == "camera" else redact(text)
            self.name = path.stem if path.is_file() else f"camera{text}" if text.isdigit() else url_name(text)
        else:
            raise UserError(f"source {redact(text)} not found: give a video file, a folder of frame images, "
                            f"a camera index (0) or a stream URL")
        reported = float(reported) if reported and math.isfinite(reported) and 0 < reported < 1000 else None
        self.fps: float = float(fps or reported or DEFAULT_FPS)
        """Frames per second used for frame times."""
        self.fps_origin = "--fps" if fps else "source" if reported else "assumed"

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._capture is None:
            for index, path in enumerate(self._files):
                yield read_image(path, f"frame {index} of {self.label}")
            return
        count = 0
        for image in read_frames(self._capture):
            count += 1
            yield image
        if self.live:
            self.stopped = f"{self.label} stopped sending frames after {count} frames"

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
