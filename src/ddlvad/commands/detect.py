"""``ddlvad detect``: score a video file, frame folder or live stream; write scores, events, overlay."""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..config import EventRules
from ..data.video import VideoSource
from ..errors import UserError
from ..files import atomic_path, atomic_write, atomic_writer, writable_dir
from ..overlay import OverlayRenderer
from ..runs import convergence_warning, detection_dir
from ..stream import AnomalyDetector, Event, EventTracker, FrameResult
from . import Log, sigterm_as_interrupt, to_stderr


def detect(run: str | Path, source: str | int | Path, out: str | Path | None = None, *,
           threshold: float | None = None, batch_size: int | None = None, overlay: bool = True,
           max_frames: int | None = None, fps: float | None = None, rules: EventRules | None = None,
           engine: str | None = None, say: Log = print, log: Log = to_stderr) -> dict:
    """Score every frame of ``source`` (video file, folder of frames, camera index, URL) with
    the model of ``run`` and write, in ``out`` (default ``RUN/detect/<source name>``):

    - ``scores.csv``: ``frame, time_s, score, anomalous, regions`` per frame (score empty and
      anomalous 0 for the edge frames);
    - ``regions.csv``: ``frame, time_s, x1, y1, x2, y2, score`` per anomalous region (source
      pixels, x2/y2 exclusive; :attr:`ddlvad.stream.FrameResult.regions`);
    - ``overlay.mp4`` (unless ``overlay=False``): see :mod:`ddlvad.overlay`;
    - ``events.json``: the events (:class:`ddlvad.config.EventRules` merge anomalous frames)
      with the source, fps, threshold and frame count; rewritten atomically when an event
      closes and at the end; each event has the union box of its regions, the regions of its
      peak frame and their tracks over its frames (source pixels).

    The tables and the overlay are written under temporary names beside them and renamed into
    place when the run ends: read to its end, a live stream that stopped, Ctrl-C (SIGTERM), or a
    failure after the first frame; they then hold the same frames, and ``events.json``, written
    last, says ``complete: false`` and why it ``stopped`` unless the source was read to its end.
    A run that fails or is interrupted before its first frame changes nothing in ``out``; a
    killed one leaves the previous files as they were.

    Each event is reported through ``say`` when it closes. Returns the events.json content.
    The threshold is ``threshold`` if given, else the run's stored one (none: UserError).
    """
    rules = rules or EventRules()
    detector = AnomalyDetector.load(run, threshold, batch_size, engine)
    warning = convergence_warning(detector.info, run)
    if warning:
        log(warning)
    if detector.threshold is None:
        raise UserError(f"the run {run} stores no detection threshold: pass --threshold X (a frame score, "
                        f"e.g. the largest score of a normal video in `ddlvad evaluate`'s scores.csv)")
    with VideoSource(source, fps) as video:
        low, high = OVERLAY_FPS
        if overlay and not low <= video.fps <= high:
            raise UserError(f"--fps {video.fps:g}: overlay.mp4 plays at the frame rate, and MPEG-4 takes {low:g} to "
                            f"{high} frames per second: give an --fps in that range or pass --no-overlay")
        results = detector.stream(video, max_frames=max_frames)  # checks --max-frames before a file is opened
        out = writable_dir(Path(out) if out else detection_dir(run, video.name))
        d = detector.cfg.data
        report: dict = {
            "source": video.label, "fps": video.fps, "fps_origin": video.fps_origin, "live": video.live,
            "threshold": detector.threshold, "threshold_origin": detector.threshold_origin,
            "run": str(run), "model": {"frames": d.frames, "size": [d.height, d.width], "channels": d.channels,
                                       "scored_size": [detector.spec.height, detector.spec.width]},
            "rules": dataclasses.asdict(rules), "frames": 0, "frames_scored": 0, "complete": False,
            "stopped": None, "events": [], "training_converged": detector.info.get("converged"),
        }
        events = _Events(out / "events.json", report, say)
        failure = None
        with atomic_writer(out / "scores.csv", newline="") as table, \
                atomic_writer(out / "regions.csv", newline="") as regions, \
                atomic_path(out / "overlay.mp4") as overlay_file:
            try:
                _score(results, video.fps, (table, regions), overlay_file if overlay else None, detector, report,
                       events, EventTracker(rules))
                report["complete"], report["stopped"] = video.stopped is None, video.stopped
            except BaseException as exc:
                if report["frames"] == 0:  # nothing to keep: the temporary files go, the previous ones stay
                    raise
                failure = exc  # keep frames 0 .. N-1: the files are renamed into place, then it is raised
        events.save()
        if failure is not None:
            raise failure
    report["outputs"] = sorted(p.name for p in out.iterdir() if p.suffix in (".csv", ".json", ".mp4")
                               and not p.name.startswith("."))
    report["out"] = str(out)
    return report


OVERLAY_FPS = (0.01, 65535)
"""Frame rates ``cv2.VideoWriter``'s MPEG-4 encoder opens a file at (``--fps`` outside: refused)."""


class _Events:
    """The events found so far, and ``events.json`` rewritten whenever they change."""

    def __init__(self, path: Path, report: dict, say: Log) -> None:
        self.path, self.report, self.say = path, report, say
        self.events: list[Event] = []
        self.started = time.perf_counter()

    def add(self, event: Event | None, save: bool = True) -> None:
        if event is not None:
            self.events.append(event)
            self.say(f"event {len(self.events)}: {event.describe()}")
            if save:
                self.save()

    def save(self) -> None:
        seconds = time.perf_counter() - self.started
        self.report.update(events=[e.as_dict() for e in self.events], seconds=round(seconds, 2),
                           frames_per_second=round(self.report["frames"] / max(seconds, 1e-9), 1))
        atomic_write(self.path, json.dumps(self.report, indent=2))


def _score(results: Iterator[FrameResult], fps: float, tables, overlay: Path | None, detector: AnomalyDetector,
           report: dict, events: _Events, tracker: EventTracker) -> None:
    """The detection loop: rows, an overlay frame (into the file ``overlay``) and an event update per
    frame. A frame is recorded whole or not at all: its overlay picture is drawn before its rows are
    written. ``report["stopped"]`` says why the loop ended early."""
    rows, region_rows = (csv.writer(t) for t in tables)
    rows.writerow(["frame", "time_s", "score", "anomalous", "regions"])
    region_rows.writerow(["frame", "time_s", "x1", "y1", "x2", "y2", "score"])
    writer = renderer = None
    try:
        with sigterm_as_interrupt():
            for result in results:
                if overlay is not None:
                    if renderer is None:
                        renderer = OverlayRenderer(result.image.shape, detector.threshold)
                    picture = renderer.render(result)
                    if writer is None:
                        writer = _video_writer(overlay, fps, renderer.size)
                scored = np.isfinite(result.score)
                rows.writerow([result.frame, f"{result.time:.4f}", f"{result.score:.6g}" if scored else "",
                               int(result.anomalous), len(result.regions)])
                for region in result.regions:
                    region_rows.writerow([result.frame, f"{result.time:.4f}", *result.in_source(region.box),
                                          f"{region.score:.6g}"])
                if writer is not None:
                    writer.write(picture)
                report["frames"] += 1
                report["frames_scored"] += int(scored)
                events.add(tracker.update(result))
    except KeyboardInterrupt:
        report["stopped"] = "interrupted"
        raise
    except UserError as exc:
        report["stopped"] = f"error: {exc}"
        raise
    except Exception as exc:
        report["stopped"] = f"failed: {type(exc).__name__}: {exc}"
        raise
    finally:
        if writer is not None:
            writer.release()
        events.add(tracker.finish(), save=False)  # events.json is written once the files are in place


def _video_writer(path: Path, fps: float, size: tuple[int, int]):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise UserError(f"cannot write {path.parent / 'overlay.mp4'}: this OpenCV has no mp4v encoder; pass "
                        f"--no-overlay")
    return writer
