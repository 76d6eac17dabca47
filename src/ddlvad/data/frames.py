"""Decode every video once, resize it, and keep it as a memory-mapped ``uint8`` array.

Frames are ``(N, H, W, C)`` ``uint8`` arrays: N frames, H x W pixels after resizing,
C = 1 (grey) or 3 (RGB order; grey sources are repeated). The cache holds one ``.npy``
per (video, :class:`FrameSpec`) under ``<cache>/frames/``; its name is a hash of the
absolute source path, the names, sizes and modification times of the source files, the
spec and :data:`FORMAT_VERSION`, so a changed source gets a new file (and the old one is
removed). The cache never writes into the dataset folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import scaled_size
from ..errors import UserError
from ..files import atomic_writer
from .layouts import DatasetIndex, VideoRecord
from .video import frame_count, open_capture, read_frames, read_image

FORMAT_VERSION = 1
"""Bump when the decoded content changes for the same inputs (colour order, resizing)."""


@dataclass(frozen=True)
class FrameSpec:
    """Size and colour of decoded frames."""

    height: int
    """Rows after resizing, pixels."""
    width: int
    """Columns after resizing, pixels."""
    channels: int
    """1 (grey) or 3 (RGB)."""

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise UserError(f"frame size {self.height}x{self.width} (data.height x data.width): must be positive")
        if self.channels not in (1, 3):
            raise UserError(f"data.channels={self.channels}: use 1 (grey) or 3 (colour)")

    @classmethod
    def from_config(cls, data) -> FrameSpec:
        """The spec of a :class:`ddlvad.config.DataConfig`."""
        return cls(int(data.height), int(data.width), int(data.channels))

    @classmethod
    def for_scoring(cls, cfg) -> FrameSpec:
        """The spec at which a :class:`ddlvad.config.Config`'s frames are scored: the training
        size times ``score.scale`` (docs/method.md#scoring-options); the training size when it is 1."""
        height, width = scaled_size(cfg.data.height, cfg.data.width, cfg.score.scale)
        return cls(height, width, int(cfg.data.channels))


def default_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` if given, else ``$DDLVAD_CACHE``, else ``$XDG_CACHE_HOME/ddlvad``
    (``~/.cache/ddlvad`` when XDG_CACHE_HOME is unset)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get("DDLVAD_CACHE"):
        return Path(os.environ["DDLVAD_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ddlvad"


# ================================================================ decoding
def decode_video(record: VideoRecord, spec: FrameSpec) -> np.ndarray:
    """Decode all frames of ``record`` to ``(N, spec.height, spec.width, spec.channels)`` uint8.

    Shrinking uses ``cv2.INTER_AREA``, enlarging ``cv2.INTER_LINEAR``. Raises
    :class:`UserError` for an empty video, an unreadable frame or frames of mixed sizes;
    warns when a video file yields fewer frames than its header announces.
    """
    if record.frame_files is not None:
        frames = _decode_folder(record, spec)
    else:
        frames = _decode_file(record, spec)
    _check_labels(record, len(frames))
    return frames


def _decode_folder(record: VideoRecord, spec: FrameSpec) -> np.ndarray:
    files = record.frame_files or ()
    if not files:
        raise UserError(f"{record.name} has no frame images: remove the empty folder {record.source}")
    out = np.empty((len(files), spec.height, spec.width, spec.channels), dtype=np.uint8)
    first_size: tuple[int, int] | None = None
    for index, path in enumerate(files):
        image = read_image(path, f"frame {index} of {record.name}")
        first_size = _check_size(record, image, first_size, f"frame {index} ({path.name})")
        out[index] = convert_frame(image, spec, f"{path}")
    return out


def _decode_file(record: VideoRecord, spec: FrameSpec) -> np.ndarray:
    capture = open_capture(str(record.source))
    try:
        announced = frame_count(capture) or 0
        frames: list[np.ndarray] = []
        first_size: tuple[int, int] | None = None
        for image in read_frames(capture):
            first_size = _check_size(record, image, first_size, f"frame {len(frames)}")
            frames.append(convert_frame(image, spec, f"{record.source}"))
    finally:
        capture.release()
    if not frames:
        raise UserError(f"video file {record.source} holds no readable frames: replace it")
    if announced > len(frames):
        warnings.warn(f"video file {record.source} announces {announced} frames but only {len(frames)} "
                      f"could be decoded (truncated?); using those", stacklevel=3)
    return np.stack(frames)


def _check_size(record: VideoRecord, image: np.ndarray, first: tuple[int, int] | None,
                where: str) -> tuple[int, int]:
    size = (int(image.shape[0]), int(image.shape[1]))
    if first is not None and size != first:
        raise UserError(f"{record.name}: {where} is {size[1]}x{size[0]} but frame 0 is {first[1]}x{first[0]}; "
                        f"all frames of a video must have one size")
    return size


def convert_frame(image: np.ndarray, spec: FrameSpec, where: str = "frame") -> np.ndarray:
    """One OpenCV image (HxW, HxWx3 BGR or HxWx4 BGRA; 8 or 16 bit) -> ``(H', W', C)`` uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise UserError(f"image {where} has pixel type {image.dtype}: use 8- or 16-bit images")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        grey = image
        colour = None
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        code_grey = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        code_rgb = cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGB
        grey = cv2.cvtColor(image, code_grey) if spec.channels == 1 else None
        colour = cv2.cvtColor(image, code_rgb) if spec.channels == 3 else None
    else:
        raise UserError(f"image {where} has shape {image.shape}: expected grey, BGR or BGRA")
    picture = grey if spec.channels == 1 or colour is None else colour
    picture = _resize(picture, spec)
    if picture.ndim == 2:
        picture = picture[:, :, None]
    if spec.channels == 3 and picture.shape[2] == 1:
        picture = np.repeat(picture, 3, axis=2)  # (H, W, 1) -> (H, W, 3)
    return picture


def _resize(image: np.ndarray, spec: FrameSpec) -> np.ndarray:
    height, width = image.shape[:2]
    if (height, width) == (spec.height, spec.width):
        return image
    shrinking = spec.height <= height and spec.width <= width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (spec.width, spec.height), interpolation=interpolation)


def _check_labels(record: VideoRecord, count: int) -> None:
    if record.labels is not None and len(record.labels) != count:
        raise UserError(f"labels of {record.name} have {len(record.labels)} frames but the video has "
                        f"{count} decoded frames: use matching labels and video")


# ================================================================ cache
def cache_key(record: VideoRecord, spec: FrameSpec) -> str:
    """Hex digest of everything the decoded array depends on (see the module docstring)."""
    source = record.source.resolve()
    try:
        if record.frame_files is not None:
            files = [(p.name, st.st_size, st.st_mtime_ns) for p in record.frame_files for st in [p.stat()]]
        else:
            st = source.stat()
            files = [(source.name, st.st_size, st.st_mtime_ns)]
    except FileNotFoundError as exc:
        raise UserError(f"{record.name}: {exc.filename} disappeared; index the dataset again") from None
    payload = json.dumps({"source": str(source), "files": files,
                          "spec": [spec.height, spec.width, spec.channels], "version": FORMAT_VERSION})
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_frames(record: VideoRecord, spec: FrameSpec, cache_dir: str | Path | None = None) -> np.ndarray:
    """The frames of ``record`` as a read-only memory map ``(N, H, W, C)`` uint8.

    Decodes (see :func:`decode_video`) and writes the cache file atomically when it is
    missing or its source changed; the stale file of the same video is removed.
    """
    cache = default_cache_dir(cache_dir).resolve()
    source = record.source.resolve()
    if record.frame_files is not None and cache.is_relative_to(source):
        raise UserError(f"cache folder {cache} lies inside the dataset folder {source}: choose another "
                        f"--cache-dir (or DDLVAD_CACHE)")
    key = cache_key(record, spec)
    folder = cache / "frames" / hashlib.sha256(str(source).encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{record.split}-{record.video_id}")
    path = folder / f"{stem}-{spec.height}x{spec.width}x{spec.channels}-{key[:20]}.npy"
    if not path.exists():
        frames = decode_video(record, spec)
        _write_atomically(path, frames, cache)
        prefix = f"{stem}-{spec.height}x{spec.width}x{spec.channels}-"
        for old in folder.glob(prefix + "*.npy"):
            if old != path:
                old.unlink(missing_ok=True)
    try:
        frames = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise UserError(f"cache file {path} is damaged ({exc}): delete it and run again") from None
    _check_labels(record, len(frames))
    return frames


def _write_atomically(path: Path, frames: np.ndarray, cache: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the frame cache in {cache} ({exc.strerror}): set --cache-dir or "
                        f"DDLVAD_CACHE to a writable folder") from None
    with atomic_writer(path, "wb", what="--cache-dir (or DDLVAD_CACHE)") as handle:
        np.save(handle, frames)


class FrameStore:
    """The frames of every video of a split, decoded (or read from the cache) once.

    ``arrays[i]`` is the ``(N_i, H, W, C)`` uint8 memory map of ``videos[i]``;
    ``lengths[i] = N_i`` (int64).
    """

    def __init__(self, records: list[VideoRecord], spec: FrameSpec, cache_dir: str | Path | None = None,
                 progress: bool = False) -> None:
        self.videos: list[VideoRecord] = list(records)
        self.spec = spec
        self.cache_dir = default_cache_dir(cache_dir)
        iterator = self.videos
        if progress:
            from tqdm import tqdm

            iterator = tqdm(self.videos, desc="decoding frames", unit="video")
        self.arrays: list[np.ndarray] = [cached_frames(r, spec, self.cache_dir) for r in iterator]
        self.lengths: np.ndarray = np.array([len(a) for a in self.arrays], dtype=np.int64)

    @classmethod
    def of_split(cls, index: DatasetIndex, split: str, spec: FrameSpec, cache_dir: str | Path | None = None,
                 progress: bool = False) -> FrameStore:
        """The frames of every video of one split of ``index``."""
        records = index.split(split)
        if not records:
            raise UserError(f"{index.root}: the {split} split has no videos")
        return cls(records, spec, cache_dir, progress=progress)

    def __len__(self) -> int:
        return len(self.videos)

    def labels(self) -> list[np.ndarray | None]:
        """Per-video ``uint8`` labels (None where unknown), aligned with ``arrays``."""
        return [r.labels for r in self.videos]
