"""Find the videos and frame labels of a dataset root: pure functions that return records.

Supported layouts (``DatasetIndex.layout``), detected by :func:`detect_dataset`:

``ucsd-release`` (ped1, ped2)
    ``ROOT/UCSDped2/Train/Train001/001.tif``, ``ROOT/UCSDped2/Test/Test001/...``, labels in
    ``UCSDped2/Test/UCSDped2.m``. ROOT may also be the ``UCSDped2`` folder itself.
    ``Test004_gt`` folders are the pixel masks of ``Test004``. Video ids: ``Test001`` -> ``"01"``.
``frames`` (ped1, ped2)
    ``ROOT/training/frames/01/000.jpg``, ``ROOT/testing/frames/...``; labels from
    ``ped2.mat``, ``UCSDped2.m`` or ``ped2_frame_labels.npz`` in ROOT or ROOT/labels; pixel
    masks from ``ROOT/testing/masks/01/`` (one image per frame) where present.
``avenue-release``
    ``training_videos/01.avi``, ``testing_videos/01.avi``; labels from the pixel masks in
    ``ground_truth_demo/testing_label_mask/N_label.mat`` (or ``testing_label_mask/``), else
    from ``avenue.mat``.
``avenue-frames``
    ``training/frames/01/0000.jpg``, ``testing/frames/...`` with ``avenue.mat`` in ROOT or
    ROOT/labels.
``shanghaitech``
    ``training/videos/01_001.avi`` (or ``training/frames/01_001/``), ``testing/frames/01_0014/``,
    labels ``testing/test_frame_mask/01_0014.npy``. Scene = the id's prefix before ``_``. The
    published track annotations of RBDC/TBDC (``01_0014.txt``, Georgescu et al.) are found by
    :func:`find_track_annotations` in the first of :data:`TRACK_ANNOTATION_FOLDERS`.
``folder``
    ``ROOT/{training,testing}/`` holding frame folders or video files, directly or under
    ``frames/`` or ``videos/``; optional labels ``ROOT/testing/labels/<video>.npy|.txt`` and
    pixel masks ``ROOT/testing/masks/<video>/<frame>.png`` (non-zero = abnormal).

Telling ped1 from ped2 in the ``frames`` layout (first rule that decides wins):
1. a label file named ``ped1*``/``UCSDped1*`` or ``ped2*``/``UCSDped2*`` in ROOT or ROOT/labels
   decides ped1/ped2;
2. else ``avenue.mat`` in ROOT or ROOT/labels makes it ``avenue-frames``;
3. else a ``testing/labels`` folder makes it the generic ``folder`` layout;
4. else ``ped1`` or ``ped2`` in the root folder's name (case-insensitive) decides;
5. else the size of the first test (else training) frame: 238x158 -> ped1, 360x240 -> ped2;
6. else it is the generic ``folder`` layout.

Only the videos present are indexed; labels of absent videos are ignored. Label arrays of
frame folders are checked against the number of frame files here; those of video files
are checked against the decoded frame count in :mod:`ddlvad.data.frames`.

One concern, in one module though it is long: finding the videos and labels of each benchmark's
on-disk layouts (UCSD, Avenue, ShanghaiTech, plain folders); each layout is a short function.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import UserError
from . import labels as lab

DATASETS = ("ped2", "ped1", "avenue", "shanghaitech", "folder")
SPLITS = ("training", "testing")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".webm")
# Sub-folders of a split that hold annotations, never frames of a video.
_NOT_VIDEOS = {"labels", "boxes", "tracks", "masks", "test_frame_mask", "test_pixel_mask", "gt"}
_PED_SIZES = {(158, 238): "ped1", (240, 360): "ped2"}  # (height, width) of the originals
TRACK_ANNOTATION_FOLDERS = ("testing/test_track_annotations", "testing/tracks", "tracks")
"""Where :func:`find_track_annotations` looks for ShanghaiTech's published track annotations,
relative to the dataset root, in this order."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of one split."""

    video_id: str
    """Stable id: ``"01"`` (UCSD, Avenue), ``"01_0014"`` (ShanghaiTech), folder/file stem."""
    split: str
    """``"training"`` or ``"testing"``."""
    source: Path
    """A folder of frame images, or a video file."""
    frame_files: tuple[Path, ...] | None
    """The frame images in natural order when ``source`` is a folder, else None."""
    scene: str | None = None
    """ShanghaiTech scene (``"01"``); None for other datasets."""
    labels: np.ndarray | None = field(default=None, compare=False)
    """``uint8`` 0/1 per frame (1 = abnormal) for testing videos with known labels, else None."""
    masks: Path | None = field(default=None, compare=False)
    """Where the video's pixel masks are (a folder of mask images, or Avenue's ``N_label.mat``;
    read with :func:`ddlvad.data.labels.load_pixel_masks`), else None."""

    @property
    def name(self) -> str:
        """How error messages name this video: ``testing video 01 (path)``."""
        return f"{self.split} video {self.video_id} ({self.source})"


@dataclass
class DatasetIndex:
    """All indexed videos of a dataset root."""

    dataset: str
    """One of :data:`DATASETS`."""
    layout: str
    """On-disk layout, see the module docstring."""
    root: Path
    training: list[VideoRecord]
    testing: list[VideoRecord]

    def scenes(self) -> list[str]:
        """Sorted ShanghaiTech scenes present in either split (empty for other datasets)."""
        return sorted({r.scene for r in self.training + self.testing if r.scene is not None})

    def split(self, name: str) -> list[VideoRecord]:
        """The records of split ``name`` (``training`` or ``testing``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}")
        return self.training if name == "training" else self.testing


# ================================================================ detection
def detect_dataset(root: str | Path) -> str:
    """Name the dataset stored at ``root`` (one of :data:`DATASETS`); see the module docstring."""
    return _detect_layout(_existing_root(root))[0]


def _detect_layout(root: Path) -> tuple[str, str]:
    """``(dataset, layout)`` of an existing root."""
    ucsd = _ucsd_folder(root)
    if ucsd is not None:
        return ucsd[1], "ucsd-release"
    if (root / "training_videos").is_dir() or (root / "testing_videos").is_dir():
        return "avenue", "avenue-release"
    if (root / "testing" / "test_frame_mask").is_dir():
        return "shanghaitech", "shanghaitech"
    if (root / "training" / "frames").is_dir() or (root / "testing" / "frames").is_dir():
        ped = _ped_label_variant(root)
        if ped is not None:
            return ped, "frames"
        if _find_file(root, ["avenue.mat"]) is not None:
            return "avenue", "avenue-frames"
        if (root / "testing" / "labels").is_dir():
            return "folder", "folder"
        ped = _ped_name_or_size_variant(root)
        return (ped, "frames") if ped is not None else ("folder", "folder")
    if any(_split_has_videos(root / split) for split in SPLITS):
        return "folder", "folder"
    raise UserError(f"no dataset recognised in {root}: expected UCSDped1/UCSDped2 folders, Avenue's "
                    f"training_videos/testing_videos, or training/ and testing/ folders of videos "
                    f"(give --dataset to force one of {', '.join(DATASETS)})")


def _ucsd_folder(root: Path) -> tuple[Path, str] | None:
    """``(UCSDpedN folder, "pedN")`` when ``root`` is or contains a UCSD release folder."""
    for candidate in (root, root / "UCSDped2", root / "UCSDped1"):
        m = re.fullmatch(r"ucsdped([12])", candidate.name, re.IGNORECASE)
        if m and candidate.is_dir() and ((candidate / "Train").is_dir() or (candidate / "Test").is_dir()):
            return candidate, f"ped{m.group(1)}"
    return None


def _ped_label_variant(root: Path) -> str | None:
    """``ped1``/``ped2`` from the name of a label file in ROOT or ROOT/labels."""
    for folder in (root, root / "labels"):
        if folder.is_dir():
            for path in folder.iterdir():
                m = re.match(r"(?:ucsd)?ped([12])", path.name, re.IGNORECASE)
                if m and path.suffix.lower() in (".mat", ".m", ".npz"):
                    return f"ped{m.group(1)}"
    return None


def _ped_name_or_size_variant(root: Path) -> str | None:
    """``ped1``/``ped2`` from the root folder's name, else from the first frame's size."""
    m = re.search(r"ped([12])", root.name, re.IGNORECASE)
    if m:
        return f"ped{m.group(1)}"
    for split in ("testing", "training"):
        frames = root / split / "frames"
        folders = _subdirs(frames) if frames.is_dir() else []
        images = image_files(folders[0]) if folders else ()
        if images:
            return _PED_SIZES.get(_image_size(images[0]))
    return None


# ================================================================ indexing
def index_dataset(root: str | Path, dataset: str | None = None, scene: str | None = None,
                  splits: Iterable[str] = SPLITS) -> DatasetIndex:
    """Index the videos (and test labels) of ``root``.

    ``dataset`` forces a dataset instead of detecting it; ``scene`` keeps one ShanghaiTech
    scene in both splits; only the ``splits`` asked for are indexed (others stay empty), and
    each of them must exist. Raises :class:`UserError` for every bad input.
    """
    root = _existing_root(root)
    splits = tuple(splits)
    for split in splits:
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: choose from {', '.join(SPLITS)}")
    if dataset is not None and dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r} (--dataset): choose one of {', '.join(DATASETS)}")
    detected, layout = _detect_layout(root) if dataset is None else _layout_for(root, dataset)
    dataset = dataset or detected
    builder = {
        "ucsd-release": _index_ucsd,
        "frames": _index_ped_frames,
        "avenue-release": _index_avenue_release,
        "avenue-frames": _index_avenue_frames,
        "shanghaitech": _index_shanghaitech,
        "folder": _index_folder,
    }[layout]
    per_split = builder(root, splits)
    index = DatasetIndex(dataset, layout, root, per_split.get("training", []), per_split.get("testing", []))
    if scene is not None:
        index = _select_scene(index, scene)
    for split in splits:
        if not index.split(split):
            raise UserError(f"no {split} videos found in {root} ({layout} layout of {dataset}): check "
                            f"the folder (or --dataset)")
    return index


def _layout_for(root: Path, dataset: str) -> tuple[str, str]:
    """The layout of ``root`` when the user forces ``dataset``."""
    if dataset in ("ped1", "ped2"):
        if _ucsd_folder(root) is not None:
            return dataset, "ucsd-release"
        return dataset, "frames"
    if dataset == "avenue":
        release = (root / "training_videos").is_dir() or (root / "testing_videos").is_dir()
        return dataset, "avenue-release" if release else "avenue-frames"
    return dataset, dataset  # shanghaitech, folder


def _select_scene(index: DatasetIndex, scene: str) -> DatasetIndex:
    available = index.scenes()
    if index.dataset != "shanghaitech":
        raise UserError(f"--scene {scene!r} applies to ShanghaiTech only, but {index.root} is {index.dataset}")
    if scene not in available:
        raise UserError(f"scene {scene!r} (--scene) has no videos in {index.root}: available scenes are "
                        f"{', '.join(available) or 'none'}")
    keep = lambda records: [r for r in records if r.scene == scene]  # noqa: E731
    return DatasetIndex(index.dataset, index.layout, index.root, keep(index.training), keep(index.testing))


# ---------------------------------------------------------------- UCSD release
def _index_ucsd(root: Path, splits: tuple[str, ...]) -> dict[str, list[VideoRecord]]:
    found = _ucsd_folder(root)
    if found is None:
        raise UserError(f"{root} is not a UCSD release folder: expected UCSDped2/Train and UCSDped2/Test")
    folder, _ = found
    out: dict[str, list[VideoRecord]] = {}
    for split, sub in (("training", "Train"), ("testing", "Test")):
        if split not in splits:
            continue
        base = _required_dir(folder / sub, split)
        dirs = [d for d in _subdirs(base) if re.fullmatch(sub + r"\d+", d.name)]  # skips Test004_gt
        records = [_frame_record(f"{int(d.name[len(sub):]):02d}", split, d) for d in dirs]
        if split == "testing":  # pixel masks: Test004_gt beside Test004
            records = [replace(r, masks=r.source.with_name(r.source.name + "_gt"))
                       if r.source.with_name(r.source.name + "_gt").is_dir() else r for r in records]
            label_file = _find_file(base, [f"{folder.name}.m"]) or next(iter(sorted(base.glob("*.m"))), None)
            if label_file is not None:
                ranges = lab.parse_ucsd_m(label_file)
                records = _attach_ranges(records, ranges, label_file)
        out[split] = records
    return out


# ---------------------------------------------------------------- ped frames layout
def _index_ped_frames(root: Path, splits: tuple[str, ...]) -> dict[str, list[VideoRecord]]:
    out = _frame_split_records(root, splits)
    if "testing" in out:
        out["testing"] = _attach_mask_folders(root, _attach_ped_labels(root, out["testing"]))
    return out


def _attach_ped_labels(root: Path, records: list[VideoRecord]) -> list[VideoRecord]:
    """Labels from the first of ``pedN.mat``, ``UCSDpedN.m``, ``pedN_frame_labels.npz``."""
    for folder in (root, root / "labels"):
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if re.match(r"(?:ucsd)?ped[12]", p.name, re.IGNORECASE))
        for path in files:
            if path.suffix.lower() == ".mat":
                return _attach_ranges(records, lab.load_ped_mat(path), path)
        for path in files:
            if path.suffix.lower() == ".m":
                return _attach_ranges(records, lab.parse_ucsd_m(path), path)
        for path in files:
            if path.suffix.lower() == ".npz":
                return _attach_arrays(records, lab.load_npz_labels(path), path)
    return records


def _attach_ranges(records: list[VideoRecord], ranges: list[lab.Ranges], label_file: Path) -> list[VideoRecord]:
    """Give test video ``NN`` the ``NN``-th entry (1-based) of a range list."""
    out = []
    for record in records:
        number = int(record.video_id)
        if not 1 <= number <= len(ranges):
            raise UserError(f"label file {label_file} has {len(ranges)} videos, but {record.name} "
                            f"is number {number}: use the label file of this dataset")
        assert record.frame_files is not None
        labels = lab.ranges_to_labels(ranges[number - 1], len(record.frame_files), record.name)
        out.append(_with_labels(record, labels, label_file))
    return out


# ---------------------------------------------------------------- Avenue
def _index_avenue_release(root: Path, splits: tuple[str, ...]) -> dict[str, list[VideoRecord]]:
    out: dict[str, list[VideoRecord]] = {}
    for split in splits:
        folder = _required_dir(root / f"{split}_videos", split)
        out[split] = [_video_record(_avenue_id(p.stem), split, p) for p in _videos(folder)]
    if "testing" in out:
        out["testing"] = _attach_avenue_labels(root, out["testing"])
    return out


def _index_avenue_frames(root: Path, splits: tuple[str, ...]) -> dict[str, list[VideoRecord]]:
    out = _frame_split_records(root, splits, id_of=_avenue_id)
    if "testing" in out:
        out["testing"] = _attach_avenue_labels(root, out["testing"])
    return out


def _attach_avenue_labels(root: Path, records: list[VideoRecord]) -> list[VideoRecord]:
    """Pixel masks (official) when present, else ``avenue.mat``; only for videos present."""
    for masks in (root / "ground_truth_demo" / "testing_label_mask", root / "testing_label_mask"):
        if masks.is_dir():
            arrays = lab.load_avenue_masks(masks, [r.video_id for r in records])
            records = [replace(r, masks=masks / f"{int(r.video_id)}_label.mat") if r.video_id in arrays else r
                       for r in records]
            return _attach_arrays(records, arrays, masks)
    mat = _find_file(root, ["avenue.mat"])
    if mat is not None:
        return _attach_arrays(records, lab.load_avenue_mat(mat), mat)
    return records


def _avenue_id(stem: str) -> str:
    return f"{int(stem):02d}" if stem.isdigit() else stem


# ---------------------------------------------------------------- ShanghaiTech
def _index_shanghaitech(root: Path, splits: tuple[str, ...]) -> dict[str, list[VideoRecord]]:
    out: dict[str, list[VideoRecord]] = {}
    for split in splits:
        base = _required_dir(root / split, split)
        records = _split_records(base, split)
        if not records and not any((base / s).is_dir() for s in ("frames", "videos")):
            raise UserError(f"{base} holds neither frames/ nor videos/: expected the ShanghaiTech layout "
                            f"({split}/videos/01_001.avi or {split}/frames/01_0014/000.jpg)")
        out[split] = [_with_scene(r) for r in records]
    if "testing" in out:
        masks = root / "testing" / "test_frame_mask"
        if masks.is_dir():
            out["testing"] = _attach_arrays(out["testing"], lab.load_label_folder(masks), masks)
    return out


def find_track_annotations(index: DatasetIndex) -> Path | None:
    """The folder of published track annotations (``<video id>.txt``, read with
    :func:`ddlvad.data.labels.read_track_folder`) of a ShanghaiTech root: the first of
    :data:`TRACK_ANNOTATION_FOLDERS` that holds the file of a testing video; None when none does
    or the dataset is not ShanghaiTech (other datasets publish no such tracks: give the folder)."""
    if index.dataset != "shanghaitech":
        return None
    for name in TRACK_ANNOTATION_FOLDERS:
        folder = index.root / name
        if folder.is_dir() and any((folder / f"{r.video_id}.txt").is_file() for r in index.testing):
            return folder
    return None


def _with_scene(record: VideoRecord) -> VideoRecord:
    scene = record.video_id.split("_", 1)[0] if "_" in record.video_id else None
    return replace(record, scene=scene)


# ---------------------------------------------------------------- folder
def _attach_mask_folders(root: Path, records: list[VideoRecord]) -> list[VideoRecord]:
    """Pixel masks from ``ROOT/testing/masks/<video>/`` (one image per frame), where present."""
    folder = root / "testing" / "masks"
    return [replace(r, masks=folder / r.video_id) if (folder / r.video_id).is_dir() else r for r in records]


def _index_folder(root: Path, splits: tuple[str, ...]) -> dict[str, list[VideoRecord]]:
    out: dict[str, list[VideoRecord]] = {}
    for split in splits:
        out[split] = _split_records(_required_dir(root / split, split), split)
    if "testing" in out:
        out["testing"] = _attach_mask_folders(root, out["testing"])
    labels_dir = root / "testing" / "labels"
    if "testing" in out and labels_dir.is_dir():
        labels = lab.load_label_folder(labels_dir)
        known = {r.video_id for r in out["testing"]}
        for vid in sorted(set(labels) - known):
            empty = [d for d in (root / "testing" / vid, root / "testing" / "frames" / vid) if d.is_dir()]
            if empty:
                raise UserError(f"testing video {vid} ({empty[0]}) has no frame images: add its frames or "
                                f"remove it and its labels")
            raise UserError(f"{labels_dir}: labels for {vid!r} but no testing video of that name: remove the "
                            f"label file or add the video")
        out["testing"] = _attach_arrays(out["testing"], labels, labels_dir)
    return out


# ================================================================ shared helpers
def _frame_split_records(root: Path, splits: tuple[str, ...], id_of=lambda s: s) -> dict[str, list[VideoRecord]]:
    """``ROOT/<split>/frames/<video>/<frame>`` for each split."""
    out = {}
    for split in splits:
        frames = _required_dir(root / split / "frames", split)
        out[split] = [_frame_record(id_of(d.name), split, d) for d in _subdirs(frames) if image_files(d)]
    return out


def _split_records(base: Path, split: str) -> list[VideoRecord]:
    """Videos of one split folder: frame folders and video files, directly or under
    ``frames/`` / ``videos/``; annotation folders (``labels/``, ``boxes/``, ...) are skipped."""
    records: list[VideoRecord] = []
    for folder in (base, base / "frames", base / "videos"):
        if not folder.is_dir():
            continue
        for d in _subdirs(folder):
            if d.name.lower() in _NOT_VIDEOS or (folder == base and d.name in ("frames", "videos")):
                continue
            if image_files(d):
                records.append(_frame_record(d.name, split, d))
        records.extend(_video_record(p.stem, split, p) for p in _videos(folder))
    ids = [r.video_id for r in records]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise UserError(f"{base}: video id {duplicates[0]!r} appears twice (as a frame folder and a video "
                        f"file, or in two sub-folders): keep one")
    return sorted(records, key=lambda r: natural_key(r.video_id))


def _split_has_videos(base: Path) -> bool:
    return base.is_dir() and bool(_split_records(base, base.name))


def _attach_arrays(records: list[VideoRecord], arrays: Mapping[str, np.ndarray], source: Path) -> list[VideoRecord]:
    """Give each record the array keyed by its id (records without one keep None)."""
    return [_with_labels(r, arrays[r.video_id], source) if r.video_id in arrays else r for r in records]


def _with_labels(record: VideoRecord, labels: np.ndarray, source: Path) -> VideoRecord:
    """Attach labels, checking their length against the frame files when known."""
    if record.frame_files is not None and len(labels) != len(record.frame_files):
        raise UserError(f"labels of {record.name} from {source} have {len(labels)} frames but the video "
                        f"has {len(record.frame_files)} frames: use matching labels and frames")
    return replace(record, labels=np.ascontiguousarray(labels, dtype=np.uint8))


def _frame_record(video_id: str, split: str, folder: Path) -> VideoRecord:
    return VideoRecord(video_id, split, folder, image_files(folder), None, None)


def _video_record(video_id: str, split: str, path: Path) -> VideoRecord:
    return VideoRecord(video_id, split, path, None, None, None)


def natural_key(text: str) -> list:
    """Sort key that orders ``2.jpg`` before ``10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _visible(path: Path) -> bool:
    """False for hidden files, macOS ``._*`` forks and ``Thumbs.db``."""
    return not path.name.startswith(".") and path.name.lower() != "thumbs.db"


def _subdirs(folder: Path) -> list[Path]:
    return sorted((d for d in folder.iterdir() if d.is_dir() and _visible(d)), key=lambda d: natural_key(d.name))


def image_files(folder: Path) -> tuple[Path, ...]:
    """The visible image files (:data:`IMAGE_EXTS`) directly in ``folder``, in natural order."""
    files = (p for p in folder.iterdir() if _visible(p) and p.suffix.lower() in IMAGE_EXTS and p.is_file())
    return tuple(sorted(files, key=lambda p: natural_key(p.name)))


def _videos(folder: Path) -> list[Path]:
    files = (p for p in folder.iterdir() if _visible(p) and p.suffix.lower() in VIDEO_EXTS and p.is_file())
    return sorted(files, key=lambda p: natural_key(p.name))


def _find_file(root: Path, names: list[str]) -> Path | None:
    """The first of ``names`` found in ``root`` or ``root/labels`` (case-insensitive)."""
    wanted = [n.lower() for n in names]
    for folder in (root, root / "labels"):
        if folder.is_dir():
            for name in wanted:
                for path in folder.iterdir():
                    if path.name.lower() == name and path.is_file():
                        return path
    return None


def _image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of one image file."""
    from .video import read_image  # video.py builds on this module

    image = read_image(path, f"image {path.name}")
    return int(image.shape[0]), int(image.shape[1])


def _existing_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"data root {path} does not exist or is not a folder (--data)")
    return path.resolve()


def _required_dir(path: Path, split: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{split} split missing: expected the folder {path}")
    return path
