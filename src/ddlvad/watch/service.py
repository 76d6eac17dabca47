"""The watch service: cameras in, events out. Readers -> one model per run -> event rules -> store,
media, notifications; and what the web page reads (:class:`ddlvad.watch.web.WatchView`).

Threads: one :class:`~ddlvad.watch.readers.CameraReader` per camera; one scoring thread per
trained run (:class:`ModelGroup`), which batches the windows of the cameras that share the run into
one forward pass (:class:`ddlvad.score.LiveScorer`: each frame encoded once) and runs each
camera's event rules; the caller's thread runs periodic work (retention, state messages) until
:meth:`Service.stop`. A frame's path: reader queue (bounded, newest kept) -> model's frame spec ->
:class:`~ddlvad.score.LiveScorer` (ignore mask applied to the error before scoring) ->
:func:`ddlvad.stream.frame_result` (threshold, regions) -> :class:`ddlvad.stream.EventTracker`
-> :class:`Camera` (store rows, snapshot, clip, notifications).

An event is stored (and notified) once it spans ``min_frames`` frames; its row is updated at most
once a second while it lasts and closed when the tracker closes it; its snapshot (the peak frame
with regions drawn) is written when it closes and its clip (pre-roll, the event, post-roll) when
the post-roll has passed; files are written to a temporary name and renamed, then named in the
store, so the page never sees half a file. At :meth:`Service.stop` (SIGTERM, Ctrl-C) open events
are closed and their clips finalised; after a hard kill the next start closes what was left open
(:meth:`~ddlvad.watch.store.EventStore.close_open_events`).

One concern, in one module though it is long: what happens to a camera's frames once read: scoring,
events, media, notifications, and what the page reads.
"""

from __future__ import annotations

import math
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import UserError
from ..files import atomic_write
from ..overlay import OverlayRenderer
from ..score import LiveScorer, ScoredFrame
from ..stream import AnomalyDetector, Event, EventTracker, FrameResult, frame_result
from .config import CameraConfig, WatchConfig
from .notify import Mqtt, Notifier, Webhook
from .readers import CameraReader
from .store import EventStore, prepare_media_dir

Log = Callable[[str], None]

CLIP_SUFFIX, CLIP_FOURCC = ".webm", "VP80"
"""Clips are VP8 in WebM: what this OpenCV writes and browsers play."""
STATS_WINDOW = 10.0
"""Seconds over which process rates and latencies are measured."""
VIEW_IDLE = 3.0
"""Live frames are drawn only while someone asked for one within this many seconds."""
ROW_UPDATE_EVERY = 1.0
"""An open event's row is rewritten at most this often (seconds)."""
RETENTION_EVERY = 3600.0
STATE_EVERY = 30.0
TRACE_SECONDS = 300.0


def ignore_mask(polygons: list, source_size: tuple[int, int], map_size: tuple[int, int]) -> torch.Tensor | None:
    """``(H, W)`` float 0/1 mask at the error map's size: 0 inside the ignore ``polygons`` (source
    pixels ``[[x, y], ...]`` of a ``source_size`` = (height, width) frame), 1 elsewhere; None without polygons."""
    if not polygons:
        return None
    (sh, sw), (h, w) = source_size, map_size
    keep = np.ones((h, w), np.uint8)
    for polygon in polygons:
        points = np.array([[x * w / sw, y * h / sh] for x, y in polygon], np.float64)
        cv2.fillPoly(keep, [np.round(points).astype(np.int32)], 0)
    return torch.from_numpy(keep.astype(np.float32))


class ClipWriter:
    """One event's clip, encoded by a thread of its own (VP8 costs tens of milliseconds a frame on a
    small CPU: scoring must not wait for it). :meth:`write` never blocks: when the encoder falls
    more than :data:`QUEUE` frames behind, frames are left out of the clip and counted
    (``dropped``). :meth:`close` finishes the file under a temporary name and renames it into place."""

    QUEUE = 256

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.path = path
        self.temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
        self.writer = cv2.VideoWriter(str(self.temporary), cv2.VideoWriter_fourcc(*CLIP_FOURCC), fps, size)
        self.frames: queue.Queue[np.ndarray | None] = queue.Queue(self.QUEUE)
        self.dropped = 0
        self.thread = threading.Thread(target=self._encode, name=f"ddlvad-clip-{path.stem}", daemon=True)
        if self.opened:
            self.thread.start()

    @property
    def opened(self) -> bool:
        return self.writer.isOpened()

    def write(self, frame: np.ndarray) -> None:
        try:
            self.frames.put_nowait(frame)
        except queue.Full:
            self.dropped += 1

    def close(self) -> bool:
        """Finish the clip; True when the file is in place."""
        if not self.opened:
            return False
        self.frames.put(None)
        self.thread.join()
        self.writer.release()
        self.temporary.replace(self.path)
        return True

    def _encode(self) -> None:
        while (frame := self.frames.get()) is not None:
            self.writer.write(frame)


@dataclass
class _OpenEvent:
    """What the service knows of one camera's event in progress (or in its post-roll)."""

    id: int
    clip_path: Path
    clip: ClipWriter | None
    clip_until: float | None = None
    """Wall-clock time its clip ends (set when the event closes)."""
    peak_jpeg: bytes | None = None
    peak_score: float = -math.inf
    updated: float = 0.0


@dataclass
class _Rates:
    times: deque = field(default_factory=deque)
    latencies: deque = field(default_factory=deque)

    def add(self, now: float, latency: float) -> None:
        self.times.append(now)
        self.latencies.append((now, latency))
        while self.times and self.times[0] < now - STATS_WINDOW:
            self.times.popleft()
        while self.latencies and self.latencies[0][0] < now - STATS_WINDOW:
            self.latencies.popleft()


class Camera:
    """One camera: its reader, threshold, event rules, ignore mask, overlay and the event in progress."""

    def __init__(self, cfg: CameraConfig, detector: AnomalyDetector, service: Service) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.detector = detector
        self.service = service
        self.threshold = float(cfg.threshold if cfg.threshold is not None else detector.threshold)
        self.reader = CameraReader(cfg.name, cfg.source, fps_cap=cfg.fps, loop=cfg.loop, clock=time.time)
        self.tracker = EventTracker(cfg.events.rules)
        self.keep: torch.Tensor | None = None
        self.renderer: OverlayRenderer | None = None
        self.rates = _Rates()
        self.trace: deque[tuple[float, float]] = deque()
        self.preroll: deque[FrameResult] = deque()
        self.event: _OpenEvent | None = None
        self.finishing: list[_OpenEvent] = []
        """Closed events whose clips are still in their post-roll."""
        self.reconnects = 0
        self.last_state: str | None = None
        self.last_notified_end = -math.inf
        self.frame_lock = threading.Condition()
        self.frame_seq = 0
        self.frame_jpeg: bytes | None = None
        self.frame_plain: bytes | None = None
        self.viewed_at = -math.inf
        self._drawing: tuple[FrameResult | None, np.ndarray | None] = (None, None)

    # ------------------------------------------------------------------ frames
    def prepare(self, image: np.ndarray) -> np.ndarray:
        if self.keep is None and self.cfg.ignore:
            spec = self.detector.spec
            self.keep = ignore_mask(self.cfg.ignore, image.shape[:2], (spec.height, spec.width))
        return self.detector.prepare(image, raw=True, where=f"camera {self.name}")

    def handle(self, scored: ScoredFrame) -> None:
        """A scored frame of this camera: event rules, store, media, live view."""
        arrival, image = scored.item
        now = time.time()
        result = frame_result(scored, arrival, self.threshold, self.detector.region_threshold)
        result.image = image
        self.rates.add(now, now - arrival)
        self.trace.append((arrival, result.score))
        while self.trace and self.trace[0][0] < now - TRACE_SECONDS:
            self.trace.popleft()
        if self.renderer is None:
            self.renderer = OverlayRenderer(image.shape, self.threshold, wall_clock=True)
        self.renderer.note(result)
        self._drawing = (result, None)
        closed = self.tracker.update(result)
        self._media(result, now)
        if closed is not None:
            self._close(closed, now)
        current = self.tracker.current
        if current is not None and current.frames >= self.cfg.events.min_frames:
            self._open_or_update(current, result, now)
        self._live(result, now)

    def _drawn(self, result: FrameResult) -> np.ndarray:
        """The overlay picture of ``result`` (drawn once per frame, however many use it)."""
        if self._drawing[0] is result:
            if self._drawing[1] is None:
                self._drawing = (result, self.renderer.draw(result))
            return self._drawing[1]
        return self.renderer.draw(result)

    def _media(self, result: FrameResult, now: float) -> None:
        """Pre-roll buffer, clip frames of the event in progress and of the closed ones in their post-roll."""
        roll = self.cfg.events.pre_roll
        self.preroll.append(result)
        while self.preroll and self.preroll[0].time < result.time - roll:
            self.preroll.popleft()
        writing = [e for e in ([self.event] if self.event else []) + self.finishing if e.clip is not None]
        if writing:
            frame = self._drawn(result)
            for e in writing:
                e.clip.write(frame)
        for e in [e for e in self.finishing if e.clip_until is not None and now >= e.clip_until]:
            self.finishing.remove(e)
            self._finish_clip(e)

    def _open_or_update(self, event: Event, result: FrameResult, now: float) -> None:
        store = self.service.store
        if self.event is None:
            event_id = store.open_event(self.name, started_at=event.start_time, start_frame=event.start_frame,
                                        peak_score=event.peak_score, peak_frame=event.peak_frame,
                                        ended_at=event.end_time, end_frame=event.end_frame, threshold=self.threshold)
            self.event = _OpenEvent(event_id, self.service.media_file("clips", self.name, event_id, CLIP_SUFFIX),
                                    None, updated=now)
            self._start_clip(self.event)
            if event.start_time - self.last_notified_end >= self.cfg.events.cooldown:
                self.service.notify_event(self.name, "start", store.event(event_id))
        elif now - self.event.updated >= ROW_UPDATE_EVERY:
            store.update_event(self.event.id, ended_at=event.end_time, end_frame=event.end_frame,
                               peak_score=event.peak_score, peak_frame=event.peak_frame)
            self.event.updated = now
        if event.peak_score > self.event.peak_score:  # the snapshot: the peak frame, drawn
            peak = next((r for r in reversed(self.preroll) if r.frame == event.peak_frame), None)
            if peak is not None:
                ok, jpeg = cv2.imencode(".jpg", self._drawn(peak))
                self.event.peak_jpeg = jpeg.tobytes() if ok else None
            self.event.peak_score = event.peak_score

    def _close(self, event: Event, now: float) -> None:
        """The tracker closed an event: final row, snapshot; its clip goes on for the post-roll."""
        store = self.service.store
        if self.event is None:  # closed as soon as it reached min_frames (at the end of the stream)
            self._open_or_update(event, self.preroll[-1], now)
        open_event, self.event = self.event, None
        store.close_event(open_event.id, ended_at=event.end_time, end_frame=event.end_frame,
                          peak_score=event.peak_score, peak_frame=event.peak_frame, peak_at=self._peak_time(event),
                          regions=event.peak_regions, tracks=event.tracks, box=event.box)
        if open_event.peak_jpeg is not None:
            path = self.service.media_file("snapshots", self.name, open_event.id, ".jpg")
            atomic_write(path, open_event.peak_jpeg, what="watch data")
            store.attach_media(open_event.id, snapshot=self.service.relative(path))
        open_event.clip_until = now + self.cfg.events.post_roll
        self.finishing.append(open_event)
        if event.start_time - self.last_notified_end >= self.cfg.events.cooldown:
            self.service.notify_event(self.name, "end", store.event(open_event.id))
        self.last_notified_end = event.end_time

    def _peak_time(self, event: Event) -> float:
        for r in self.preroll:
            if r.frame == event.peak_frame:
                return r.time
        return event.start_time

    def _start_clip(self, event: _OpenEvent) -> None:
        fps = self.cfg.fps or self.stats()["process_fps"] or self.reader.camera_fps or 10.0
        writer = ClipWriter(event.clip_path, max(1.0, min(fps, 60.0)), self.renderer.size)
        if not writer.opened:
            self.service.log(f"camera {self.name}: cannot write clips ({CLIP_FOURCC}{CLIP_SUFFIX}); events keep their snapshots")
            return
        event.clip = writer
        for r in self.preroll:  # the pre-roll and the current frame; _media writes the next ones
            writer.write(self._drawn(r))

    def _finish_clip(self, event: _OpenEvent) -> None:
        if event.clip is None:
            return
        clip, event.clip = event.clip, None
        if clip.close():
            self.service.store.attach_media(event.id, clip=self.service.relative(event.clip_path))

    def flush(self) -> None:
        """At shutdown: close the event in progress (if it counts) and finalise every clip now."""
        if self.event is not None or self.tracker.current is not None:
            last = self.tracker.finish()
            if last is not None:
                self._close(last, time.time())
            elif self.event is not None:  # stored but dropped by the rules (cannot happen: stored at min_frames)
                self.service.store.close_event(self.event.id)
                self.finishing.append(self.event)
                self.event = None
        for e in self.finishing:
            self._finish_clip(e)
        self.finishing = []

    # ------------------------------------------------------------------ what the page reads
    def _live(self, result: FrameResult, now: float) -> None:
        if now - self.viewed_at > VIEW_IDLE and self.frame_jpeg is not None:
            return
        drawn = self._drawn(result)
        ok, jpeg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 80])
        ok2, plain = cv2.imencode(".jpg", result.image, [cv2.IMWRITE_JPEG_QUALITY, 80])
        with self.frame_lock:
            self.frame_seq += 1
            self.frame_jpeg = jpeg.tobytes() if ok else None
            self.frame_plain = plain.tobytes() if ok2 else None
            self.frame_lock.notify_all()

    def stats(self) -> dict:
        reader = self.reader.stats()
        now = time.time()
        times = [t for t in list(self.rates.times) if t >= now - STATS_WINDOW]  # list(): a copy taken at once
        latencies = sorted(lat for t, lat in list(self.rates.latencies) if t >= now - STATS_WINDOW)
        span = min(STATS_WINDOW, now - self.service.started_at)

        def ms(q: float) -> float | None:
            return None if not latencies else round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1)

        return {"camera_fps": reader["camera_fps"], "process_fps": round(len(times) / span, 2) if span > 0.05 else 0.0,
                "skipped_fps": reader["skipped_fps"],
                "latency_median_ms": None if not latencies else round(1000 * statistics.median(latencies), 1),
                "latency_p95_ms": ms(0.95), "last_frame_at": reader["last_frame_at"], "frames": reader["frames"],
                "skipped": reader["skipped"], "capped": reader["capped"], "reconnects": reader["reconnects"],
                "last_error": reader["last_error"]}

    def describe(self) -> dict:
        return {"name": self.name, "label": self.reader.label, "run": str(self.cfg.run), "state": self.reader.state,
                "threshold": self.threshold, "stats": self.stats()}


class ModelGroup:
    """The cameras that share one trained run, scored by one thread in shared forward passes."""

    def __init__(self, detector: AnomalyDetector, cameras: list[Camera], service: Service) -> None:
        self.detector = detector
        self.cameras = cameras
        self.service = service
        self.scorer = LiveScorer(detector.scorer.model, detector.cfg.score, detector.scorer.weights)  # the engine
        self.thread = threading.Thread(target=self._loop, name=f"ddlvad-score-{cameras[0].name}", daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while not self.service.stopping.is_set():
                new, idle = {}, True
                for camera in self.cameras:
                    if camera.reader.reconnects != camera.reconnects:  # no window across a gap in the stream
                        camera.reconnects = camera.reader.reconnects
                        self.scorer.reset(camera.name)
                    frame = camera.reader.get(timeout=0)
                    if frame is None:
                        continue
                    idle = False
                    index, arrival, image = frame
                    new[camera.name] = (index, camera.prepare(image), (arrival, image))
                if idle:
                    time.sleep(0.005)
                    continue
                keep = {c.name: c.keep for c in self.cameras if c.name in new}
                for name, scored in self.scorer.step(new, keep).items():
                    next(c for c in self.cameras if c.name == name).handle(scored)
        except BaseException as exc:  # a failure here stops the service with the reason
            self.error = exc
            self.service.stopping.set()


class Service:
    """``ddlvad watch``: the cameras of a :class:`WatchConfig`, scored until :meth:`stop`.

    Implements :class:`ddlvad.watch.web.WatchView` (``store``, ``data_dir``, :meth:`cameras`,
    :meth:`latest_frame`, :meth:`wait_frame`, :meth:`trace`, :meth:`set_threshold`)."""

    def __init__(self, cfg: WatchConfig, *, log: Log = print) -> None:
        self.cfg = cfg
        self.log = log
        self.data_dir = prepare_media_dir(cfg.data, what=f"{cfg.origin}: data")
        self.store = EventStore(cfg.database, what=f"{cfg.origin}: database")
        interrupted = self.store.close_open_events()
        if interrupted:
            log(f"watch: closed {len(interrupted)} event(s) left open by the last run (marked interrupted)")
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.cams: dict[str, Camera] = {}
        self.groups: list[ModelGroup] = []
        for run, names in cfg.runs.items():
            detector = AnomalyDetector.load(run, engine=cfg.engine)
            missing = [n for n in names if cfg.cameras[n].threshold is None and detector.threshold is None]
            if missing:
                raise UserError(f"{cfg.origin}: cameras.{missing[0]}.threshold: the run {run} stores no threshold; "
                                f"give one in the camera's entry")
            cams = [Camera(cfg.cameras[n], detector, self) for n in names]
            self.cams.update({c.name: c for c in cams})
            self.groups.append(ModelGroup(detector, cams, self))
        for camera in self.cams.values():
            self._record_threshold(camera, "config" if camera.cfg.threshold is not None else "run")
        self.notifier = Notifier(
            Webhook(cfg.webhook.url, cfg.webhook.timeout, cfg.webhook.retries, outbox=cfg.webhook.outbox)
            if cfg.webhook.url else None,
            Mqtt(cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.prefix, cfg.mqtt.username, cfg.mqtt.password,
                 cfg.mqtt.client_id) if cfg.mqtt.host else None)

    # ------------------------------------------------------------------ running
    def start(self) -> Service:
        for camera in self.cams.values():
            camera.reader.start()
        for group in self.groups:
            group.thread.start()
        return self

    def run(self, until: Callable[[], bool] | None = None) -> None:
        """Periodic work (retention, camera states) until :meth:`stop` or ``until()``."""
        next_retention = next_state = 0.0
        while not self.stopping.is_set() and not (until and until()):
            now = time.monotonic()
            if now >= next_retention:
                self.retention()
                next_retention = now + RETENTION_EVERY
            self._states(force=now >= next_state)
            if now >= next_state:
                next_state = now + STATE_EVERY
            self.stopping.wait(0.2)

    def stop(self) -> None:
        """Stop reading and scoring; close open events, finalise clips, say goodbye on MQTT."""
        self.stopping.set()
        for group in self.groups:
            if group.thread.is_alive():
                group.thread.join(10)
        for camera in self.cams.values():
            camera.reader.stop()
            camera.flush()
        self._states(force=True)
        self.notifier.close()
        self.store.close()
        errors = [g.error for g in self.groups if g.error is not None]
        if errors:
            raise errors[0]

    def retention(self) -> None:
        r = self.cfg.retention
        if r.days is None and r.gigabytes is None:
            return
        self.store.retention(data_dir=self.data_dir, days=r.days, gigabytes=r.gigabytes)

    def _states(self, force: bool) -> None:
        for camera in self.cams.values():
            state = camera.reader.state
            if force or state != camera.last_state:
                camera.last_state = state
                self.notifier.state(camera.name, {"state": state, "label": camera.reader.label, **camera.stats()})

    # ------------------------------------------------------------------ files and messages
    def media_file(self, kind: str, camera: str, event_id: int, suffix: str) -> Path:
        """``DATA/KIND/CAMERA/DAY/ID.suffix`` (its folder created)."""
        path = self.data_dir / kind / camera / time.strftime("%Y-%m-%d") / f"{event_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()

    def notify_event(self, camera: str, phase: str, event: dict | None) -> None:
        if event is not None:
            self.notifier.event(camera, {"phase": phase, **event})

    def _record_threshold(self, camera: Camera, origin: str, note: str | None = None) -> None:
        history = self.store.thresholds(camera.name)
        if not history or history[-1]["value"] != camera.threshold:
            self.store.record_threshold(camera.name, camera.threshold, origin, note=note)

    # ------------------------------------------------------------------ WatchView
    def _camera(self, name: str) -> Camera:
        return self.cams[name]  # KeyError: unknown camera (404 on the page)

    def cameras(self) -> list[dict]:
        return [c.describe() for c in self.cams.values()]

    def latest_frame(self, camera: str, overlay: bool = True) -> tuple[int, bytes] | None:
        c = self._camera(camera)
        c.viewed_at = time.time()
        with c.frame_lock:
            data = c.frame_jpeg if overlay else c.frame_plain
            return None if data is None else (c.frame_seq, data)

    def wait_frame(self, camera: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        c = self._camera(camera)
        c.viewed_at = time.time()
        with c.frame_lock:
            if not c.frame_lock.wait_for(lambda: c.frame_seq > after and c.frame_jpeg is not None or self.stopping.is_set(),
                                         timeout):
                return None
            return None if c.frame_jpeg is None or c.frame_seq <= after else (c.frame_seq, c.frame_jpeg)

    def trace(self, camera: str, seconds: float = 60.0) -> list[tuple[float, float]]:
        c = self._camera(camera)
        since = time.time() - seconds
        return [(t, s) for t, s in list(c.trace) if t >= since and math.isfinite(s)]

    def set_threshold(self, camera: str, value: float, origin: str, note: str | None = None) -> None:
        c = self._camera(camera)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"threshold {value!r}: must be a finite number >= 0")
        c.threshold = float(value)
        if c.renderer is not None:
            c.renderer.threshold = float(value)
        self.store.record_threshold(camera, float(value), origin, note=note)
