"""Writers of tiny datasets in each real on-disk layout, so that the real loaders run on
them unchanged (used by the ``data_tiny`` fixture in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.io import savemat

H, W = 24, 32  # tiny frame size (rows, columns)


@dataclass
class TinyDataset:
    """One written dataset and what the loaders must find in it."""

    root: Path
    dataset: str
    layout: str
    training: dict[str, int]
    """video id -> frame count."""
    testing: dict[str, int]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    """video id -> expected 0/1 labels of testing videos."""
    scenes: list[str] = field(default_factory=list)


def noise(n: int, seed: int, grey: bool = False, h: int = H, w: int = W) -> np.ndarray:
    """``(n, h, w[, 3])`` uint8 noise frames (BGR order, as OpenCV writes them)."""
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if grey else (n, h, w, 3)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def write_frames(folder: Path, frames: np.ndarray, ext: str = ".jpg", pattern: str = "{:03d}") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        assert cv2.imwrite(str(folder / (pattern.format(i) + ext)), frame)


def write_video(path: Path, frames: np.ndarray, fourcc: str = "MJPG", fps: float = 10.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (frames.shape[2], frames.shape[1]))
    assert writer.isOpened(), path
    for frame in frames:
        writer.write(frame)
    writer.release()


def binary(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint8)


def _cell(items: list[np.ndarray]) -> np.ndarray:
    """A 1xN MATLAB cell array for scipy.io.savemat."""
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


# ---------------------------------------------------------------- one writer per layout
def make_ucsd(root: Path) -> TinyDataset:
    base = root / "UCSDped2"
    for i, n in ((1, 3), (2, 4)):
        write_frames(base / "Train" / f"Train{i:03d}", noise(n, i, grey=True), ".tif", "{:03d}")
    for i, n in ((1, 4), (2, 5)):
        write_frames(base / "Test" / f"Test{i:03d}", noise(n, 10 + i, grey=True), ".tif", "{:03d}")
    # Pixel masks and clutter that must be ignored.
    write_frames(base / "Test" / "Test001_gt", noise(4, 99, grey=True), ".bmp")
    (base / "Train" / "Train001" / "._001.tif").write_bytes(b"\x00\x05\x16\x07")
    (base / "Train" / "Train001" / "Thumbs.db").write_bytes(b"junk")
    (base / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile = {};\n"
        "TestVideoFile{end+1}.gt_frame = [2:3];\n"
        "TestVideoFile{end+1}.gt_frame = [1:2, 5:5];\n")
    return TinyDataset(root, "ped2", "ucsd-release", {"01": 3, "02": 4}, {"01": 4, "02": 5},
                       {"01": binary(0, 1, 1, 0), "02": binary(1, 1, 0, 0, 1)})


def make_ped_frames(root: Path) -> TinyDataset:
    for vid, n in (("01", 3), ("02", 4)):
        write_frames(root / "training" / "frames" / vid, noise(n, int(vid)))
    for vid, n in (("01", 4), ("02", 5)):
        write_frames(root / "testing" / "frames" / vid, noise(n, 20 + int(vid)))
    (root / "labels").mkdir()
    # Same structure as the real ped2.mat: gt = 1xN cell of 2xK uint8 [first; last] (1-based).
    gt = _cell([np.array([[2], [4]], dtype=np.uint8), np.array([[1, 4], [1, 5]], dtype=np.uint8)])
    savemat(root / "labels" / "ped2.mat", {"gt": gt})
    return TinyDataset(root, "ped2", "frames", {"01": 3, "02": 4}, {"01": 4, "02": 5},
                       {"01": binary(0, 1, 1, 1), "02": binary(1, 0, 0, 1, 1)})


def make_avenue_release(root: Path) -> TinyDataset:
    for vid, n in (("01", 3), ("02", 4)):
        write_video(root / "training_videos" / f"{vid}.avi", noise(n, 30 + int(vid)))
    for vid, n in (("01", 4), ("02", 5)):
        write_video(root / "testing_videos" / f"{vid}.avi", noise(n, 40 + int(vid)))
    labels = {"01": binary(0, 0, 1, 1), "02": binary(1, 0, 0, 0, 1), "03": binary(1, 1)}  # 03 absent
    masks = root / "ground_truth_demo" / "testing_label_mask"
    masks.mkdir(parents=True)
    for vid, lab in labels.items():
        frames = []
        for value in lab:
            mask = np.zeros((H, W), dtype=np.uint8)
            mask[3:5, 7:9] = value
            frames.append(mask)
        savemat(masks / f"{int(vid)}_label.mat", {"volLabel": _cell(frames)})
    return TinyDataset(root, "avenue", "avenue-release", {"01": 3, "02": 4}, {"01": 4, "02": 5},
                       {"01": labels["01"], "02": labels["02"]})


def make_avenue_frames(root: Path) -> TinyDataset:
    for vid, n in (("01", 3), ("02", 4)):
        write_frames(root / "training" / "frames" / vid, noise(n, 50 + int(vid)), pattern="{:04d}")
    for vid, n in (("01", 4), ("02", 5)):
        write_frames(root / "testing" / "frames" / vid, noise(n, 60 + int(vid)), pattern="{:04d}")
    labels = {"01": binary(1, 1, 0, 0), "02": binary(0, 0, 0, 1, 1), "03": binary(1)}
    # Same structure as the real avenue.mat: one 1xN int32 vector per key.
    savemat(root / "avenue.mat", {k: v.astype(np.int32)[None, :] for k, v in labels.items()})
    return TinyDataset(root, "avenue", "avenue-frames", {"01": 3, "02": 4}, {"01": 4, "02": 5},
                       {"01": labels["01"], "02": labels["02"]})


def make_shanghaitech(root: Path) -> TinyDataset:
    for vid, n in (("01_001", 3), ("02_001", 4)):
        write_video(root / "training" / "videos" / f"{vid}.avi", noise(n, 70 + n))
    labels = {"01_0014": binary(0, 1, 1, 0), "02_0001": binary(0, 0, 0, 1, 1)}
    masks = root / "testing" / "test_frame_mask"
    masks.mkdir(parents=True)
    for vid, lab in labels.items():
        write_frames(root / "testing" / "frames" / vid, noise(len(lab), 80 + len(lab)))
        np.save(masks / f"{vid}.npy", lab.astype(np.int64))
    return TinyDataset(root, "shanghaitech", "shanghaitech", {"01_001": 3, "02_001": 4},
                       {"01_0014": 4, "02_0001": 5}, labels, scenes=["01", "02"])


def make_folder_frames(root: Path) -> TinyDataset:
    """The synthetic generator's layout: frames/<video>/<frame>.jpg, labels/<video>.npy."""
    write_frames(root / "training" / "frames" / "walk", noise(3, 90), ".png", "{}")
    write_frames(root / "training" / "frames" / "run", noise(4, 91), ".png", "{}")
    labels = {"a": binary(0, 1, 0, 0), "b": binary(1, 1, 1, 0, 0)}
    for vid, lab in labels.items():
        write_frames(root / "testing" / "frames" / vid, noise(len(lab), 92 + len(lab)), ".png", "{}")
    (root / "testing" / "labels").mkdir()
    for vid, lab in labels.items():
        np.save(root / "testing" / "labels" / f"{vid}.npy", lab)
    (root / "testing" / "boxes").mkdir()
    (root / "testing" / "boxes" / "a.json").write_text("[]")
    return TinyDataset(root, "folder", "folder", {"run": 4, "walk": 3}, {"a": 4, "b": 5}, labels)


def make_folder_videos(root: Path) -> TinyDataset:
    write_video(root / "training" / "cam1.mp4", noise(3, 100), "mp4v")
    write_video(root / "training" / "cam2.avi", noise(4, 101))
    write_video(root / "testing" / "p.mp4", noise(4, 102), "mp4v")
    write_video(root / "testing" / "q.avi", noise(5, 103))
    labels = {"p": binary(0, 0, 1, 1), "q": binary(1, 0, 1, 0, 1)}
    (root / "testing" / "labels").mkdir()
    (root / "testing" / "labels" / "p.txt").write_text("0 0\n1\n1\n")
    (root / "testing" / "labels" / "q.txt").write_text("1\n0\n1\n0\n1\n")
    return TinyDataset(root, "folder", "folder", {"cam1": 3, "cam2": 4}, {"p": 4, "q": 5}, labels)


MAKERS = {
    "ucsd": make_ucsd,
    "ped_frames": make_ped_frames,
    "avenue_release": make_avenue_release,
    "avenue_frames": make_avenue_frames,
    "shanghaitech": make_shanghaitech,
    "folder_frames": make_folder_frames,
    "folder_videos": make_folder_videos,
}
