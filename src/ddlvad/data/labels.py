"""Parse the official ground-truth files: per-frame 0/1 arrays, pixel masks, annotated tracks.

Every frame-label function returns labels as ``np.ndarray`` of ``uint8`` with one value per
frame, 0 (normal) or 1 (abnormal), indexed from frame 0. Range-style sources (UCSD's ``.m`` and
``ped2.mat``) are returned as 1-based inclusive ``(first, last)`` ranges, because their
length is only known once the frames are counted: :func:`ranges_to_labels` turns them
into arrays. Annotated object tracks (the ground truth of the published RBDC/TBDC) are read by
:func:`read_track_file` / :func:`read_track_folder`. Any file that cannot be parsed raises
:class:`UserError` naming it (and, for text formats, the line).
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError

Ranges = list[tuple[int, int]]
"""1-based inclusive ``(first, last)`` frame ranges of one video (MATLAB convention)."""

_M_LINE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_M_ITEM = re.compile(r"^(\d+)(?::(\d+))?$")


def parse_ucsd_m(path: str | Path) -> list[Ranges]:
    """Read UCSD's ``UCSDped1.m``/``UCSDped2.m``: one list of ranges per test video.

    Each line ``TestVideoFile{end+1}.gt_frame = [61:180];`` (or ``[1:10, 20:30]``, or a lone
    frame ``[7]``) adds one video, in order: entry 0 is ``Test001``.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UserError(f"cannot read label file {path}: {exc.strerror}") from None
    videos: list[Ranges] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("%", 1)[0]  # MATLAB comment
        match = _M_LINE.search(line)
        if not match:
            continue
        ranges: Ranges = []
        body = re.sub(r"\s*:\s*", ":", match.group(1).strip())
        for item in filter(None, re.split(r"[,;\s]+", body)):
            m = _M_ITEM.match(item)
            if not m:
                raise UserError(f"label file {path} line {lineno}: cannot parse frame range {item!r} "
                                f"(expected first:last, 1-based)")
            first = int(m.group(1))
            last = int(m.group(2)) if m.group(2) else first
            ranges.append(_checked_range(path, first, last))
        videos.append(ranges)
    if not videos:
        raise UserError(f"label file {path} holds no 'TestVideoFile{{end+1}}.gt_frame = [a:b];' lines: "
                        f"is it UCSD's ground-truth .m file?")
    return videos


def load_ped_mat(path: str | Path) -> list[Ranges]:
    """Read ``ped1.mat``/``ped2.mat`` (variable ``gt``: a 1xN cell of 2xK arrays, one column
    ``[first; last]`` per abnormal range, 1-based) into one list of ranges per test video."""
    mat = _loadmat(path)
    if "gt" not in mat:
        raise UserError(f"label file {path} has no variable 'gt' (found {_keys(mat)}): "
                        f"expected the ped1.mat/ped2.mat of the UCSD frame layout")
    cells = np.asarray(mat["gt"]).ravel()
    videos: list[Ranges] = []
    for index, cell in enumerate(cells):
        arr = np.asarray(cell)
        if arr.size == 0:
            videos.append([])
            continue
        if arr.ndim != 2 or arr.shape[0] != 2:
            raise UserError(f"label file {path}: gt{{{index + 1}}} has shape {arr.shape}, expected 2xK "
                            f"[first; last] ranges")
        videos.append([_checked_range(path, int(a), int(b)) for a, b in arr.T])
    return videos


def ranges_to_labels(ranges: Ranges, length: int, where: str) -> np.ndarray:
    """Turn 1-based inclusive ranges into a 0-based ``uint8`` array of ``length`` frames.

    ``where`` names the video in the error raised when a range runs past the last frame.
    """
    labels = np.zeros(length, dtype=np.uint8)
    for first, last in ranges:
        if last > length:
            raise UserError(f"labels of {where} mark frames {first}:{last} but the video has "
                            f"{length} frames: the label file does not match these frames")
        labels[first - 1:last] = 1
    return labels


def load_npz_labels(path: str | Path) -> dict[str, np.ndarray]:
    """Read an ``.npz`` of per-frame arrays keyed by video id (``ped2_frame_labels.npz``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: _as_binary(path, data[key], key) for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"cannot read label file {path}: {exc}") from None


def load_avenue_mask(path: str | Path) -> np.ndarray:
    """Frame labels from one Avenue ``N_label.mat``: variable ``volLabel``, a 1xN cell of
    HxW pixel masks; a frame is abnormal (1) when its mask has any pixel set."""
    mat = _loadmat(path)
    if "volLabel" not in mat:
        raise UserError(f"label file {path} has no variable 'volLabel' (found {_keys(mat)}): "
                        f"expected Avenue's testing_label_mask/N_label.mat")
    cells = np.asarray(mat["volLabel"]).ravel()
    return np.array([np.any(np.asarray(mask)) for mask in cells], dtype=np.uint8)


def load_avenue_masks(folder: str | Path, video_ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """Frame labels of every ``N_label.mat`` in ``folder``, keyed ``"01"``, ``"02"``, ...

    ``video_ids`` restricts reading to those videos (each file takes about a second to read).
    """
    folder = Path(folder)
    files = {f"{int(m.group(1)):02d}": p for p in folder.glob("*_label.mat")
             if (m := re.fullmatch(r"(\d+)_label\.mat", p.name))}
    if not files:
        raise UserError(f"no N_label.mat files in {folder}: expected Avenue's testing_label_mask folder")
    wanted = sorted(files) if video_ids is None else [v for v in video_ids if v in files]
    return {video: load_avenue_mask(files[video]) for video in wanted}


def load_pixel_masks(source: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The pixel masks of one video, ``(N, H, W)`` bool (True = abnormal pixel), from a folder
    of mask images (one per frame, natural order, any non-zero value abnormal; UCSD's
    ``Test004_gt``, the folder layout's ``testing/masks/<video>``) or from Avenue's
    ``N_label.mat`` (``volLabel``). With ``shape`` ``(H, W)`` each mask is resized to it
    (nearest neighbour), so a long video needs only the small masks in memory."""
    import cv2

    from .layouts import image_files

    source = Path(source)
    if source.is_dir():
        files = image_files(source)
        if not files:
            raise UserError(f"mask folder {source} holds no images: one mask image per frame expected")
        frames = (cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files)
        names = [str(f) for f in files]
    else:
        mat = _loadmat(source)
        if "volLabel" not in mat:
            raise UserError(f"mask file {source} has no variable 'volLabel' (found {_keys(mat)})")
        cells = np.asarray(mat["volLabel"]).ravel()
        frames = (np.asarray(c) for c in cells)
        names = [f"{source} frame {i}" for i in range(len(cells))]
    out = []
    for name, mask in zip(names, frames):
        if mask is None or mask.ndim != 2:
            raise UserError(f"cannot read the mask {name}: expected a single-channel image")
        mask = np.asarray(mask) > 0
        if shape is not None and mask.shape != tuple(shape):
            mask = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0
        out.append(mask)
    return np.stack(out)


def load_avenue_mat(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``avenue.mat``: one 1xN 0/1 vector per test video, keys ``"01"`` .. ``"21"``."""
    mat = _loadmat(path)
    out = {key: _as_binary(path, value, key) for key, value in mat.items() if not key.startswith("__")}
    if not out:
        raise UserError(f"label file {path} holds no per-video label vectors (keys '01', '02', ...)")
    return out


def load_label_file(path: str | Path) -> np.ndarray:
    """Read one video's labels from ``.npy`` (any integer/bool array) or ``.txt`` (0/1 values
    separated by whitespace or newlines)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif suffix == ".txt":
            values = np.array(path.read_text().split(), dtype=np.float64)
        else:
            raise UserError(f"label file {path}: unsupported extension {suffix!r}, use .npy or .txt")
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot parse label file {path}: {exc} (expected one 0/1 value per frame)") from None
    return _as_binary(path, values)


def load_label_folder(folder: str | Path) -> dict[str, np.ndarray]:
    """Labels of every ``<video>.npy``/``<video>.txt`` in ``folder``, keyed by file stem
    (ShanghaiTech's ``test_frame_mask``, the folder layout's ``testing/labels``)."""
    folder = Path(folder)
    out: dict[str, np.ndarray] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in (".npy", ".txt") and not path.name.startswith("."):
            out[path.stem] = load_label_file(path)
    return out


# ---------------------------------------------------------------- annotated object tracks
TRACK_COLUMNS = "track_id,frame,x_min,y_min,x_max,y_max"
"""The columns of a track annotation line, as the published ShanghaiTech files (Georgescu et al.,
TPAMI 2021, ``lilygeorgescu/AED`` ``annotations/ShanghaiTech/``) write them."""

_INT = re.compile(r"[+-]?[0-9]+")


class AnnotatedBox(NamedTuple):
    """One line of a track annotation file: the box of one anomalous object in one frame.

    ``frame`` is 0-based; ``x_min .. x_max`` and ``y_min .. y_max`` are **inclusive** pixel indices
    of the video's own frames (``x_max = W - 1`` touches the right edge). ``line``: 1-based line.
    """

    track: int
    frame: int
    x_min: int
    y_min: int
    x_max: int
    y_max: int
    line: int


@dataclass(frozen=True)
class TrackAnnotation:
    """The annotated tracks of one video's anomalous objects (one ``VIDEO.txt``): one box per
    object per frame, a track id per object. Track ids are per video (the same id in two videos
    names two tracks) and a track may skip frames (it stays one track)."""

    path: Path
    boxes: tuple[AnnotatedBox, ...]
    """In file order."""

    @property
    def track_ids(self) -> list[int]:
        """The distinct track ids, sorted."""
        return sorted({b.track for b in self.boxes})

    def checked(self, num_frames: int, size: tuple[int, int], video: str) -> tuple[AnnotatedBox, ...]:
        """The boxes, after checking them against the video they annotate: ``num_frames`` frames
        of ``size`` ``(H, W)`` pixels. Raises :class:`UserError` naming the file, the line and
        ``video`` for a frame past the end or a box outside the frame."""
        h, w = size
        for b in self.boxes:
            where = f"track annotation file {self.path} line {b.line}"
            if b.frame >= num_frames:
                raise UserError(f"{where}: frame {b.frame} but {video} has {num_frames} frames (0-based "
                                f"0..{num_frames - 1}): these annotations are not of this video")
            if b.x_max >= w or b.y_max >= h:
                raise UserError(f"{where}: box x {b.x_min}..{b.x_max}, y {b.y_min}..{b.y_max} (inclusive) lies "
                                f"outside the {w}x{h} frames of {video}: annotations made for another frame size?")
        return self.boxes


def read_track_file(path: str | Path) -> TrackAnnotation:
    """Read one track annotation file: a line ``track_id,frame,x_min,y_min,x_max,y_max`` per box,
    integers, frames 0-based, corners inclusive pixel indices (see :class:`AnnotatedBox`). Blank
    lines are skipped; an empty file is a video without annotated anomalies.

    Raises :class:`UserError` naming the file and line for: a count of values other than 6, a value
    that is not an integer, a negative track id, frame or coordinate, ``x_max < x_min`` or
    ``y_max < y_min``, and a second box for the same track and frame.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read track annotation file {path}: {exc}") from None
    boxes: list[AnnotatedBox] = []
    seen: dict[tuple[int, int], int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        where = f"track annotation file {path} line {lineno}"
        values = [v.strip() for v in raw.split(",")]
        if len(values) != 6:
            raise UserError(f"{where}: {len(values)} values, expected 6 ({TRACK_COLUMNS})")
        bad = next((v for v in values if not _INT.fullmatch(v)), None)
        if bad is not None:
            raise UserError(f"{where}: {bad!r} is not an integer ({TRACK_COLUMNS} are integers)")
        box = AnnotatedBox(*map(int, values), lineno)
        if box.track < 0:
            raise UserError(f"{where}: track id {box.track} is negative")
        if box.frame < 0:
            raise UserError(f"{where}: frame {box.frame} is negative (frames are 0-based)")
        if min(box.x_min, box.y_min) < 0:
            raise UserError(f"{where}: negative pixel coordinate in {raw.strip()!r}")
        if box.x_max < box.x_min or box.y_max < box.y_min:
            axis = "x" if box.x_max < box.x_min else "y"
            lo, hi = (box.x_min, box.x_max) if axis == "x" else (box.y_min, box.y_max)
            raise UserError(f"{where}: {axis}_max {hi} < {axis}_min {lo} (corners are {axis}_min <= {axis}_max, "
                            f"inclusive)")
        first = seen.setdefault((box.track, box.frame), lineno)
        if first != lineno:
            raise UserError(f"{where}: track {box.track} already has a box in frame {box.frame} (line {first}): "
                            f"one box per track and frame")
        boxes.append(box)
    return TrackAnnotation(path, tuple(boxes))


def read_track_folder(folder: str | Path, video_ids: Iterable[str]) -> dict[str, TrackAnnotation]:
    """The track annotations ``folder/<video id>.txt`` of the videos ``video_ids`` (ids as
    :mod:`ddlvad.data.layouts` names them, e.g. ``01_0014``), keyed by id; a video without a file
    is left out (it has no annotated anomaly). Other files are ignored. Raises :class:`UserError`
    when ``folder`` is not a folder or holds the file of none of the videos."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"track annotation folder {folder} does not exist or is not a folder")
    ids = list(video_ids)
    out = {vid: read_track_file(folder / f"{vid}.txt") for vid in ids if (folder / f"{vid}.txt").is_file()}
    if not out:
        found = sorted(p.name for p in folder.glob("*.txt"))
        raise UserError(f"track annotation folder {folder} holds no file of a test video: expected "
                        f"VIDEO.txt per test video (e.g. {ids[0] if ids else '01_0014'}.txt), found "
                        f"{', '.join(found[:3]) + (' ...' if len(found) > 3 else '') if found else 'no .txt file'}")
    return out


# ---------------------------------------------------------------- helpers
def _checked_range(path: Path | str, first: int, last: int) -> tuple[int, int]:
    if first < 1 or last < first:
        raise UserError(f"label file {path}: invalid frame range {first}:{last} (1-based, first <= last)")
    return first, last


def _as_binary(path: Path | str, values: np.ndarray, key: str | None = None) -> np.ndarray:
    """Flatten to 1-D ``uint8`` and insist on values in {0, 1}."""
    where = f"{path}" + (f" [{key}]" if key else "")
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf" or (arr.ndim > 1 and sorted(arr.shape)[-2] != 1):
        raise UserError(f"label file {where}: expected a vector of 0/1 per frame, got "
                        f"{arr.dtype} array of shape {arr.shape}")
    arr = arr.ravel()
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise UserError(f"label file {where}: values must be 0 or 1, found {np.unique(arr)[:5].tolist()}")
    return arr.astype(np.uint8)


def _loadmat(path: str | Path) -> dict:
    from scipy.io import loadmat  # scipy is slow to import; only label parsing needs it

    path = Path(path)
    try:
        return loadmat(str(path))
    except FileNotFoundError:
        raise UserError(f"label file {path} not found") from None
    except Exception as exc:  # scipy raises ValueError/TypeError/MatReadError on bad files
        raise UserError(f"cannot parse MATLAB label file {path}: {exc}") from None


def _keys(mat: dict) -> str:
    return ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
