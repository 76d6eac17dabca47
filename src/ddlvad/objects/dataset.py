"""Objects of a whole dataset split: detect, track, cache, and find the tracks training uses.

Tracks live in the cache directory (never inside the dataset, which may be read-only),
keyed by the dataset folder, layout, scene and split (:func:`tracks_path`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..config import Config, ObjectsConfig
from ..data.frames import FrameSpec, FrameStore, default_cache_dir
from ..data.layouts import DatasetIndex
from ..data.tracks import Tracks, VideoTracks
from ..data.video import first_frame_size
from ..errors import UserError
from ..files import safe_name, writable_dir
from .tracking import ObjectDetector, track_dataset

Log = Callable[[str], None]


def tracks_path(index: DatasetIndex, split: str, cache_dir: str | Path | None) -> Path:
    """Where the tracks of one split of ``index`` are cached."""
    root = str(Path(index.root).resolve())
    key = hashlib.sha1(root.encode()).hexdigest()[:12]
    scene = "-".join(sorted({r.scene for r in index.split(split) if r.scene})) or "all"
    return default_cache_dir(cache_dir) / "tracks" / f"{Path(root).name}-{key}-{index.dataset}-{scene}-{split}.npz"


def detection_spec(index: DatasetIndex, split: str, objects: ObjectsConfig, colour: bool) -> FrameSpec:
    """The frame size objects are detected at: the source's, shrunk to ``objects.long_side``."""
    h, w = first_frame_size(index.split(split)[0])
    scale = min(1.0, objects.long_side / max(h, w))
    return FrameSpec(max(2, round(h * scale / 2) * 2), max(2, round(w * scale / 2) * 2), 3 if colour else 1)


def make_object_detector(objects: ObjectsConfig) -> ObjectDetector:
    """``objects.detector``: ``motion`` or ``onnx:PATH``."""
    from .motion import MotionDetector

    if objects.detector == "motion":
        return MotionDetector()
    if objects.detector.startswith("onnx:"):
        from .onnx_detector import OnnxDetector

        return OnnxDetector(objects.detector[5:], classes=objects.classes, score_threshold=objects.score_threshold)
    raise UserError(f"--object-detector {objects.detector!r}: use 'motion' or 'onnx:PATH/TO/model.onnx'")


def track_split(index: DatasetIndex, split: str, cfg: Config, *, progress: bool = True,
                log: Log = print) -> tuple[Tracks, Path]:
    """Detect and track objects in every video of one split (``cfg.objects``); save the tracks
    to the cache (``cfg.data.cache_dir``) and return them with their path."""
    records = index.split(split)
    if not records:
        raise UserError(f"{index.root}: the {split} split has no videos to track")
    objects = cfg.objects
    detector = make_object_detector(objects)
    spec = detection_spec(index, split, objects, colour=objects.detector != "motion")
    store = FrameStore(records, spec, cfg.data.cache_dir, progress=progress)
    # the cache holds RGB; detectors take frames as OpenCV reads them (BGR)
    videos = {r.video_id: (a if spec.channels == 1 else a[..., ::-1]) for r, a in zip(store.videos, store.arrays)}
    t0 = time.perf_counter()
    tracks = track_dataset(videos, detector, objects.tracker, progress=progress)
    seconds = time.perf_counter() - t0
    tracks.settings.update({"split": split, "dataset": index.dataset, "detection_size": [spec.height, spec.width],
                            "seconds": round(seconds, 2)})
    path = tracks.save(tracks_path(index, split, cfg.data.cache_dir))
    frames = int(store.lengths.sum())
    log(f"tracks: {tracks.num_boxes()} boxes in {frames} {split} frames ({frames / max(seconds, 1e-9):.0f} "
        f"frames/s) -> {path}")
    return tracks, path


def import_tracks(index: DatasetIndex, split: str, json_file: str | Path, cfg: Config) -> tuple[Tracks, Path]:
    """Import the reference code's tracked-box JSON for one split into the cache."""
    from .reference_json import import_reference_json

    store = FrameStore(index.split(split), detection_spec(index, split, cfg.objects, False), cfg.data.cache_dir)
    counts = {r.video_id: int(n) for r, n in zip(store.videos, store.lengths)}
    tracks = import_reference_json(json_file, counts)
    tracks.settings.update({"split": split, "dataset": index.dataset})
    return tracks, tracks.save(tracks_path(index, split, cfg.data.cache_dir))


def training_tracks(cfg: Config, index: DatasetIndex, store: FrameStore, tracks_file: str | Path | None = None,
                    progress: bool = True, log: Log = print) -> list[VideoTracks | None]:
    """The tracks the pseudo anomalies are pasted into, one per training video.

    Looks in order at ``tracks_file`` (``--tracks``), the cache of ``ddlvad track``, and the
    ground-truth ``training/tracks.npz`` that ``ddlvad synth`` writes; when none fits, runs
    detection and tracking first and says so. ``recon`` mode and ``data.masks=random`` need none.
    """
    if cfg.ddl.mode == "recon" or cfg.data.masks == "random":
        return [None] * len(store)
    counts = {r.video_id: int(n) for r, n in zip(store.videos, store.lengths)}
    if tracks_file:
        tracks = Tracks.load(tracks_file)
        tracks.check_against(counts, f"--tracks {tracks_file}")
    else:
        tracks = None
        for path in (tracks_path(index, "training", cfg.data.cache_dir), index.root / "training" / "tracks.npz"):
            if path.is_file():
                candidate = Tracks.load(path)
                try:
                    candidate.check_against(counts, path)
                except UserError as exc:
                    log(f"tracks: ignoring {path}: {exc}")
                    continue
                tracks, tracks_file = candidate, path
                break
        if tracks is None:
            log("tracks: none found for the training videos; running detection and tracking first (ddlvad track)")
            tracks, tracks_file = track_split(index, "training", cfg, progress=progress, log=log)
    source = tracks.settings.get("source") or tracks.settings.get("detector", {}).get("name", "?")
    log(f"tracks: {tracks_file} ({tracks.num_boxes()} boxes; {source})")
    return [tracks.videos[r.video_id] for r in store.videos]


def preview_tracks(index: DatasetIndex, split: str, tracks: Tracks, out: str | Path, cfg: Config,
                   max_videos: int = 12, frames_per_video: int = 4) -> list[Path]:
    """A PNG montage per video (evenly spaced frames with boxes and track ids) in ``out``."""
    import cv2

    from .preview import draw_tracks, montage

    out = writable_dir(out, "--preview")
    spec = detection_spec(index, split, cfg.objects, colour=True)
    written = []
    for record in index.split(split)[:max_videos]:
        frames = FrameStore([record], spec, cfg.data.cache_dir).arrays[0]
        vt = tracks.videos.get(record.video_id)
        picks = np.linspace(0, len(frames) - 1, frames_per_video).round().astype(int)
        tiles = [draw_tracks(np.ascontiguousarray(frames[i][..., ::-1]),  # RGB -> BGR
                             vt.tracks_at(int(i)) if vt else {}) for i in picks]
        path = out / f"{split}_{safe_name(record.video_id)}.png"
        cv2.imwrite(str(path), montage(tiles))
        written.append(path)
    return written
