"""Tracked object boxes: the file format, validation, and the common tracks of a window.

A :class:`Tracks` holds, for every video id, the rows ``(frame, track_id, x1, y1, x2, y2,
score)`` with the box normalised to [0, 1] by the frame width/height. Frames are 0-based
indices into the video, never file paths. It is saved as one ``.npz`` file: an array
``v/<video_id>`` (n, 7) float64 per video, and a ``meta`` JSON string with the format
version, each video's frame count and the settings that produced the boxes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..files import atomic_writer, writable_dir

FORMAT = "ddlvad-tracks"
VERSION = 1
COLUMNS = ("frame", "track", "x1", "y1", "x2", "y2", "score")


class VideoTracks:
    """The boxes of one video, indexed by frame for O(1) look-ups.

    ``rows``: (n, 7) array of ``frame, track, x1, y1, x2, y2, score``, boxes in [0, 1].
    """

    def __init__(self, num_frames: int, rows: np.ndarray):
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, 7)
        self.num_frames = int(num_frames)
        self.rows = rows
        self._by_frame: list[dict[int, np.ndarray]] = [{} for _ in range(self.num_frames)]
        for row in rows:
            frame = int(row[0])
            if not 0 <= frame < self.num_frames:
                raise ValueError(f"frame {frame} outside 0..{self.num_frames - 1}")
            self._by_frame[frame][int(row[1])] = row[2:6]

    def tracks_at(self, frame: int) -> dict[int, np.ndarray]:
        """``{track_id: box (4,)}`` of one frame."""
        return self._by_frame[frame]

    def common_tracks(self, frames: Sequence[int]) -> list[int]:
        """Track ids present in every one of ``frames`` (sorted)."""
        common: set[int] | None = None
        for f in frames:
            ids = set(self._by_frame[f])
            common = ids if common is None else common & ids
            if not common:
                return []
        return sorted(common or ())

    def boxes(self, track: int, frames: Sequence[int]) -> np.ndarray:
        """(len(frames), 4) normalised boxes of ``track`` in ``frames`` (must be present)."""
        return np.stack([self._by_frame[f][track] for f in frames])

    def part(self, start: int, stop: int) -> VideoTracks:
        """The tracks of frames ``start .. stop - 1``, renumbered from 0."""
        rows = self.rows[(self.rows[:, 0] >= start) & (self.rows[:, 0] < stop)].copy()
        rows[:, 0] -= start
        return VideoTracks(stop - start, rows)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Tracks:
    """Tracked boxes of a set of videos, with the settings that made them."""

    videos: dict[str, VideoTracks] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def add(self, video_id: str, num_frames: int, rows: np.ndarray) -> None:
        self.videos[video_id] = VideoTracks(num_frames, rows)

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file, fsync, rename)."""
        path = Path(path)
        writable_dir(path.parent, "--cache-dir")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "columns": list(COLUMNS),
            "frames": {vid: vt.num_frames for vid, vt in self.videos.items()},
            "settings": self.settings,
        }
        arrays = {f"v/{vid}": vt.rows for vid, vt in self.videos.items()}
        with atomic_writer(path, "wb", what="--cache-dir") as fh:
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Tracks:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"tracks file {path} not found: run `ddlvad track` first")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("format") != FORMAT:
                    raise ValueError("not a ddlvad tracks file")
                tracks = cls(settings=meta.get("settings", {}))
                for vid, n in meta["frames"].items():
                    tracks.add(vid, n, data[f"v/{vid}"])
        except UserError:
            raise
        except Exception as exc:  # corrupt zip, missing keys, bad rows
            raise UserError(f"tracks file {path} is unreadable ({exc}); delete it and run `ddlvad track` again") from None
        return tracks

    def check_against(self, frame_counts: dict[str, int], source: str | Path = "tracks") -> None:
        """Raise :class:`UserError` unless every video has tracks made for its frame count."""
        missing = [v for v in frame_counts if v not in self.videos]
        if missing:
            raise UserError(f"{source}: no tracks for video(s) {', '.join(missing[:5])}; "
                            f"run `ddlvad track` again (add --force)")
        for vid, n in frame_counts.items():
            if self.videos[vid].num_frames != n:
                raise UserError(f"{source}: video {vid} has {n} frames but its tracks were made for "
                                f"{self.videos[vid].num_frames}; run `ddlvad track --force`")

    def num_boxes(self) -> int:
        return sum(len(v) for v in self.videos.values())


def boxes_to_rows(frame: int, boxes: dict[int, Sequence[float]], score: float = 1.0) -> list[list[float]]:
    """Rows for one frame from ``{track_id: (x1, y1, x2, y2)}`` normalised boxes."""
    return [[frame, tid, *map(float, box[:4]), float(box[4]) if len(box) > 4 else score]
            for tid, box in boxes.items()]
