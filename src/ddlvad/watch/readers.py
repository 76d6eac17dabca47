"""One reader per camera for ``ddlvad watch``: frames in, whatever the network does.

A :class:`CameraReader` owns a thread that opens its source, reads frames and keeps the newest
ones in a small bounded queue for the scorer (``get``). When the scorer is slower than the
camera, the oldest queued frame is dropped and counted (``skipped``); nothing queues without
bound. A stream that drops, or sends nothing for ``read_timeout`` seconds, is closed and
opened again after a capped, jittered exponential backoff, forever, until :meth:`stop`; no
error ever leaves the reader thread (it becomes :attr:`CameraReader.last_error`).

Sources: a camera index (``0``), an ``http(s)://`` MJPEG or ``rtsp://`` URL (OpenCV's FFmpeg
backend), or a video file or folder of frames, played in real time at its frame rate (and
looped with ``loop=True``) for trials without a camera.

Why two threads per connection: OpenCV's ``VideoCapture.read()`` blocks, and on a dead
network stream it blocks for FFmpeg's read timeout (30 s by default in OpenCV; the reader
sets ``CAP_PROP_OPEN_TIMEOUT_MSEC``/``CAP_PROP_READ_TIMEOUT_MSEC`` to a second more than
``read_timeout``, so that an abandoned capture returns soon); a camera device has no such
setting. So each connection reads in its own I/O thread, and the reader's thread is a
watchdog: when no frame has come for ``read_timeout`` it abandons that connection (its I/O
thread may deliver nothing more, and releases its own capture once OpenCV returns; a capture
is never touched from two threads) and opens a new one.

One concern, in one module though it is long: reading one camera so that a stalled or dropped stream
never stops the service (connections, watchdog, backoff, bounded queue, rates).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ..data.video import VideoSource, frame_count
from ..errors import UserError
from ..urls import redact

CONNECTING, CONNECTED, RECONNECTING, STOPPED = "connecting", "connected", "reconnecting", "stopped"
"""Reader states: ``connecting`` until the first frame ever arrives; ``connected`` while frames
arrive; ``reconnecting`` after a drop or stall, until a frame arrives again; ``stopped`` after
:meth:`CameraReader.stop`, or when a file played to its end without ``loop``."""

RATE_WINDOW = 5.0
"""Seconds over which ``camera_fps`` and ``skipped_fps`` are averaged."""

Frame = tuple[int, float, np.ndarray]
"""``(frame_index, arrival_time, image)``: the index counts every frame this reader has read
(across reconnects and loops, from 0), so a gap in indices is frames the consumer never saw;
``arrival_time`` is the reader's ``clock()`` when the frame was read; ``image`` as OpenCV
decodes it (BGR uint8 for streams and most files)."""


class _Connection:
    """One attempt to read a source: the I/O thread's side (frames, outcome) as the watchdog sees it."""

    def __init__(self, number: int, started: float) -> None:
        self.number = number
        self.started = started
        """``time.monotonic()`` when the attempt began."""
        self.opened: float | None = None
        self.last_frame: float | None = None
        self.frames = 0
        self.error: str | None = None
        """Why the connection ended (None: a file ended without ``loop``, or it was abandoned)."""
        self.ended = False
        self.abandoned = False
        self.cancel = threading.Event()
        """Set when the watchdog gives up on this connection or the reader stops."""
        self.done = threading.Event()
        """Set by the I/O thread when it returns."""


class CameraReader:
    """Frames of one camera, read by a thread of its own, newest kept.

    ``name``: the camera's name (used in thread names and stats). ``source``: a camera index
    (``0`` or ``"0"``), an ``http(s)://`` or ``rtsp://`` URL, a video file or a folder of frame
    images (files and folders are played in real time at their frame rate). ``fps_cap``: hand
    at most this many frames a second to the queue (the rest are read and counted in
    ``capped``). ``loop``: play a file or folder again from the start when it ends.
    ``queue_size``: frames kept for :meth:`get` (>= 1; 1 means :meth:`get` always returns the
    newest frame). ``backoff``: ``(first, cap)`` seconds to wait before reconnecting, doubled
    after each failed attempt up to ``cap``, each wait drawn from ``[delay/2, delay]``.
    ``read_timeout``: seconds without a frame (or, while opening, since the attempt began)
    after which the connection is abandoned and opened again. ``clock``: the clock of
    ``arrival_time`` and ``last_frame_at`` (timeouts and pacing always use ``time.monotonic``).

    Use as a context manager, or :meth:`start` then :meth:`stop`.
    """

    def __init__(self, name: str, source: str | int | Path, *, fps_cap: float | None = None, loop: bool = False,
                 queue_size: int = 2, backoff: tuple[float, float] = (0.5, 30.0), read_timeout: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if fps_cap is not None and not (fps_cap > 0 and math.isfinite(fps_cap)):
            raise UserError(f"camera {name}: fps_cap {fps_cap} must be a positive number of frames per second")
        if not (isinstance(queue_size, int) and queue_size >= 1):
            raise UserError(f"camera {name}: queue_size {queue_size} must be a whole number >= 1")
        first, cap = backoff
        if not (0 < first <= cap and math.isfinite(cap)):
            raise UserError(f"camera {name}: backoff {backoff} must be (first, cap) seconds with 0 < first <= cap")
        if not (read_timeout > 0 and math.isfinite(read_timeout)):
            raise UserError(f"camera {name}: read_timeout {read_timeout} must be a positive number of seconds")
        self.name = name
        self.source = source
        self.kind, self._target = _classify(source, name)
        self.label = redact(str(source))
        """The source as it may be shown (password hidden)."""
        self.fps_cap, self.loop, self.queue_size = fps_cap, loop, queue_size
        self.backoff, self.read_timeout, self._clock = (float(first), float(cap)), float(read_timeout), clock

        self.state = CONNECTING
        self.last_error: str | None = None
        """Why the last connection ended or failed (password hidden); kept after it recovers."""
        self.reconnects = 0
        """Connection attempts after the first one."""
        self.last_frame_at: float | None = None
        """``clock()`` when the last frame arrived (None before the first)."""
        self.frames = 0
        """Frames read (whether queued, capped or skipped)."""
        self.skipped = 0
        """Frames dropped from the queue because the consumer was slower than the camera."""
        self.capped = 0
        """Frames read but not queued because of ``fps_cap``."""
        self.ended = False
        """A file or folder played to its end (without ``loop``): the reader has stopped."""

        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: deque[Frame] = deque()
        self._arrivals: deque[float] = deque()
        self._skips: deque[float] = deque()
        self._next_due = 0.0
        self._started_at: float | None = None
        self._stop = threading.Event()
        self._connection: _Connection | None = None
        self._abandoned: list[threading.Thread] = []
        self._random = random.Random()
        self._thread = threading.Thread(target=self._supervise, name=f"ddlvad-camera-{name}", daemon=True)

    # -- the consumer's side ---------------------------------------------------------------
    def start(self) -> CameraReader:
        self._started_at = time.monotonic()
        self._thread.start()
        return self

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest queued frame (at most ``queue_size - 1`` behind the newest read), waiting
        up to ``timeout`` seconds (None: until one comes); None on timeout, or once the reader
        has stopped and the queue is empty."""
        with self._ready:
            self._ready.wait_for(lambda: self._queue or self.state == STOPPED, timeout)
            return self._queue.popleft() if self._queue else None

    def stop(self, timeout: float = 2.0) -> bool:
        """Stop reading (also while connecting or waiting to reconnect); True when the reader's
        thread ended within ``timeout`` seconds. An I/O thread stuck inside OpenCV is left to
        end on its own (it delivers nothing more)."""
        self._stop.set()
        connection = self._connection
        if connection is not None:
            connection.cancel.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._ready:
            self.state = STOPPED
            self._ready.notify_all()
        return not self._thread.is_alive()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> CameraReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def camera_fps(self) -> float:
        """Frames read per second over the last :data:`RATE_WINDOW` seconds."""
        with self._lock:
            return self._rate(self._arrivals)

    @property
    def skipped_fps(self) -> float:
        """Frames skipped per second over the last :data:`RATE_WINDOW` seconds."""
        with self._lock:
            return self._rate(self._skips)

    def stats(self) -> dict:
        """A snapshot: name, source (password hidden), state, last_error, reconnects, frames,
        skipped, capped, queued, camera_fps, skipped_fps, last_frame_at (``clock`` time),
        ended, and ``stuck``: abandoned I/O threads still blocked inside OpenCV."""
        with self._lock:
            self._abandoned = [t for t in self._abandoned if t.is_alive()]
            return {"name": self.name, "source": self.label, "state": self.state, "last_error": self.last_error,
                    "reconnects": self.reconnects, "frames": self.frames, "skipped": self.skipped,
                    "capped": self.capped, "queued": len(self._queue),
                    "camera_fps": round(self._rate(self._arrivals), 2), "skipped_fps": round(self._rate(self._skips), 2),
                    "last_frame_at": self.last_frame_at, "ended": self.ended, "stuck": len(self._abandoned)}

    def _rate(self, times: deque[float]) -> float:
        """Events per second in the window (over the time since start while that is shorter)."""
        now = time.monotonic()
        while times and times[0] <= now - RATE_WINDOW:
            times.popleft()
        span = min(RATE_WINDOW, now - (self._started_at or now))
        return len(times) / span if span > 0.05 else 0.0

    # -- the reader's thread: connect, watch, back off -------------------------------------
    def _supervise(self) -> None:
        failures = attempt = 0
        while not self._stop.is_set():
            attempt += 1
            connection = _Connection(attempt, time.monotonic())
            try:
                outcome = self._watch(connection)
            except Exception as exc:  # a bug here must not end the reader: log it as the error, retry
                connection.cancel.set()
                outcome = f"reader error: {type(exc).__name__}: {exc}"
            if self._stop.is_set():
                break
            if connection.ended:
                with self._ready:
                    self.ended, self.state = True, STOPPED
                    self._ready.notify_all()
                return
            failures = 1 if connection.frames else failures + 1
            with self._lock:
                self.last_error = _redact_in(outcome, self)
                self.state = RECONNECTING if self.frames else CONNECTING
            first, cap = self.backoff
            delay = min(cap, first * 2 ** (failures - 1))
            if self._stop.wait(self._random.uniform(delay / 2, delay)):
                break
            with self._lock:
                self.reconnects += 1
        with self._ready:
            self.state = STOPPED
            self._ready.notify_all()

    def _watch(self, connection: _Connection) -> str:
        """Run one connection until it ends, stalls or the reader stops; why it ended, in words."""
        self._connection = connection
        io = threading.Thread(target=self._read, args=(connection,), daemon=True,
                              name=f"ddlvad-camera-{self.name}-io{connection.number}")
        io.start()
        while True:
            if self._stop.is_set():
                connection.cancel.set()
                return "stopped"
            if connection.done.is_set():
                return connection.error or "ended"
            with self._lock:
                last = connection.last_frame or connection.opened or connection.started
            now = time.monotonic()
            deadline = last + self.read_timeout
            if now >= deadline:
                with self._lock:
                    connection.abandoned = True
                    self._abandoned.append(io)
                connection.cancel.set()
                if connection.opened is None:
                    return f"{self.label} did not open within {self.read_timeout:g} s"
                return f"no frame from {self.label} for {self.read_timeout:g} s"
            connection.done.wait(min(0.1, deadline - now))

    # -- the I/O thread of one connection --------------------------------------------------
    def _read(self, connection: _Connection) -> None:
        try:
            if self.kind == "stream":
                self._read_stream(connection)
            else:
                self._read_source(connection)
        except Exception as exc:  # OpenCV, a corrupt frame file, ...: the watchdog reconnects
            connection.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError) else str(exc)
        finally:
            connection.done.set()

    def _read_stream(self, connection: _Connection) -> None:
        """A network URL through FFmpeg, with its open and read timeouts set (a second longer than
        the watchdog's, which decides; they make an abandoned capture return soon after)."""
        ms = int((self.read_timeout + _FFMPEG_GRACE) * 1000)
        capture = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        try:
            if not capture.isOpened():
                connection.error = f"cannot open {self.label}: check the address and that the stream is up"
                return
            connection.opened = time.monotonic()
            # A URL that announces a frame count is a file served over HTTP: play it at its rate.
            rate = capture.get(cv2.CAP_PROP_FPS) if frame_count(capture) else None
            schedule = _Schedule(rate) if rate and 0 < rate < 1000 else None
            while not connection.cancel.is_set():
                ok, image = capture.read()
                if not ok or image is None:
                    connection.error = f"{self.label} stopped sending frames (dropped or timed out)"
                    return
                if schedule is not None and schedule.wait(connection.cancel):
                    return
                self._deliver(connection, image)
        finally:
            capture.release()

    def _read_source(self, connection: _Connection) -> None:
        """A camera index, video file or folder through :class:`VideoSource`; files and folders
        in real time, again from the start when ``loop``."""
        schedule: _Schedule | None = None
        while not connection.cancel.is_set():
            with _OPEN_LOCK:  # open_capture's stderr redirect is process-wide: one open at a time
                video = VideoSource(self._target)
            try:
                if connection.opened is None:
                    connection.opened = time.monotonic()
                if not video.live and schedule is None:
                    schedule = _Schedule(video.fps)
                count = 0
                for image in video:
                    if schedule is not None and schedule.wait(connection.cancel):
                        return
                    if connection.cancel.is_set() or not self._deliver(connection, image):
                        return
                    count += 1
            finally:
                video.close()
            if video.live:
                connection.error = f"{self.label} stopped sending frames"
                return
            if count == 0:
                connection.error = f"{self.label} has no readable frames"
                return
            if not self.loop:
                connection.ended = True
                return

    def _deliver(self, connection: _Connection, image: np.ndarray) -> bool:
        """Count a frame read by ``connection`` and queue it (dropping the oldest when full);
        False when the connection was abandoned (the frame is discarded)."""
        arrival, now = self._clock(), time.monotonic()
        with self._ready:
            if connection.abandoned or self._stop.is_set():
                return False
            index = self.frames
            self.frames += 1
            connection.frames += 1
            connection.last_frame = now
            self.last_frame_at = arrival
            self.state = CONNECTED
            self._arrivals.append(now)
            while self._arrivals[0] <= now - RATE_WINDOW:  # keep the window's times only
                self._arrivals.popleft()
            if self.fps_cap is not None:
                period = 1.0 / self.fps_cap
                if now < self._next_due - 0.1 * period:
                    self.capped += 1
                    return True
                self._next_due = max(self._next_due + period, now)
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.skipped += 1
                self._skips.append(now)
                while self._skips[0] <= now - RATE_WINDOW:
                    self._skips.popleft()
            self._queue.append((index, arrival, image))
            self._ready.notify_all()
            return True


_OPEN_LOCK = threading.Lock()
_FFMPEG_GRACE = 1.0


class _Schedule:
    """Real-time pacing of a file: frame k is due ``k / fps`` seconds after the first; a player
    that falls more than a second behind starts a new schedule rather than bursting."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.due: float | None = None

    def wait(self, cancel: threading.Event) -> bool:
        """Sleep until the next frame is due; True when ``cancel`` was set meanwhile."""
        now = time.monotonic()
        if self.due is None or now - self.due > 1.0:
            self.due = now
        delay = self.due - now
        self.due += self.period
        return cancel.wait(delay) if delay > 0 else cancel.is_set()


def _classify(source: str | int | Path, name: str) -> tuple[str, str | int]:
    """``(kind, target)``: ``camera`` (index), ``stream`` (URL) or ``file`` (file or folder path)."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()):
        return "camera", str(int(source))
    text = str(source)
    if "://" in text:
        return "stream", text
    path = Path(text).expanduser()
    if not path.exists():
        raise UserError(f"camera {name}: source {text} not found: give a camera index (0), a stream URL "
                        f"(rtsp://, http://), a video file or a folder of frame images")
    return "file", str(path)


def _redact_in(text: str, reader: CameraReader) -> str:
    """``text`` with the raw source (which may hold a password) replaced by its redacted label."""
    raw = str(reader.source)
    return text.replace(raw, reader.label) if raw != reader.label else text
