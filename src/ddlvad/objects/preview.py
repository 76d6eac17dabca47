"""Draw tracked boxes on frames: one image, a PNG montage, or an mp4 preview.

Functions return images; only :func:`write_preview` writes a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..data.tracks import VideoTracks
from ..errors import UserError


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A stable, saturated BGR colour per track id (golden-ratio hue steps)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.uint8([[[hue, 220, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _to_bgr(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 1:
        return cv2.cvtColor(frame[:, :, 0], cv2.COLOR_GRAY2BGR)
    return frame.copy()


def draw_tracks(frame: np.ndarray, rows_of_frame: np.ndarray | dict[int, np.ndarray],
                thickness: int = 1, label: bool = True) -> np.ndarray:
    """A BGR copy of ``frame`` with each box and its track id drawn in the track's colour.

    ``frame``: uint8 ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)`` (BGR).
    ``rows_of_frame``: Tracks rows ``(k, 7)`` (``frame, track, x1, y1, x2, y2, score``) or
    ``{track_id: box (4,)}`` as returned by :meth:`VideoTracks.tracks_at`; boxes are
    normalised to [0, 1].
    """
    img = _to_bgr(frame)
    h, w = img.shape[:2]
    if isinstance(rows_of_frame, dict):
        items = [(int(t), np.asarray(b, float)) for t, b in rows_of_frame.items()]
    else:
        rows = np.asarray(rows_of_frame, float).reshape(-1, 7)
        items = [(int(r[1]), r[2:6]) for r in rows]
    scale = max(0.3, min(h, w) / 600)
    for tid, box in items:
        x1, y1, x2, y2 = (box * [w, h, w, h]).round().astype(int)
        colour = track_colour(tid)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), colour, thickness)
        if label:
            cv2.putText(img, str(tid), (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1,
                        cv2.LINE_AA)
    return img


def montage(frames_list: Sequence[np.ndarray], columns: int = 2) -> np.ndarray:
    """Tile equally sized images into a grid (row-major, black padding). Returns BGR uint8."""
    if not frames_list:
        raise ValueError("montage needs at least one image")
    tiles = [_to_bgr(f) for f in frames_list]
    h, w = tiles[0].shape[:2]
    if any(t.shape[:2] != (h, w) for t in tiles):
        raise ValueError("montage: all images must have the same size")
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    grid = np.zeros((rows * h, columns * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return grid


def write_preview(frames: np.ndarray, video_tracks: VideoTracks, out_path: str | Path,
                  fps: float = 10.0, montage_frames: int = 4) -> Path:
    """Draw ``video_tracks`` on ``frames`` (uint8 ``(N, H, W[, C])``) and write ``out_path``.

    ``.mp4``/``.avi``: every frame, codec 'mp4v' (MJPG for .avi). ``.png``/``.jpg``: a
    montage of ``montage_frames`` evenly spaced frames.
    """
    out_path = Path(out_path)
    frames = np.asarray(frames)
    if len(frames) != video_tracks.num_frames:
        raise ValueError(f"{len(frames)} frames but the tracks were made for {video_tracks.num_frames}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    suffix = out_path.suffix.lower()
    if suffix in (".png", ".jpg", ".jpeg"):
        pick = np.linspace(0, len(frames) - 1, min(montage_frames, len(frames))).round().astype(int)
        img = montage([draw_tracks(frames[i], video_tracks.tracks_at(int(i))) for i in pick])
        if not cv2.imwrite(str(out_path), img):
            raise UserError(f"could not write preview image {out_path}")
        return out_path
    if suffix not in (".mp4", ".avi"):
        raise UserError(f"preview {out_path}: use a .mp4, .avi, .png or .jpg file name")
    h, w = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(out_path), fourcc, fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"could not open {out_path} for writing (codec not available?)")
    try:
        for i, frame in enumerate(frames):
            writer.write(draw_tracks(frame, video_tracks.tracks_at(i)))
    finally:
        writer.release()
    return out_path
