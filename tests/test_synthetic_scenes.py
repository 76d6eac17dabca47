"""The named synthetic scenes (``ddlvad synth --scene``): the layout the loaders read, labels
that match the masks, anomalies only in test videos, determinism, the walkway's bytes
unchanged, one property per scene that makes it what it claims, and the development suite
(bench/experiments/suite.py) planning and running one row."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ddlvad.data.layouts import index_dataset
from ddlvad.data.scenes import ANOMALIES, SCENES
from ddlvad.data.synthetic import SCENE_NAMES, SceneSpec, synthesize
from ddlvad.data.tracks import Tracks

ROOT = Path(__file__).resolve().parents[1]
H, W = 160, 240
FRAMES = 40
"""Frames per video of the scenes written here (the defaults have 120)."""
VIDEOS = {"perspective": (1, 5), "crowd": (2, 4), "lighting": (1, 3), "distant": (1, 5), "fast": (1, 4)}
"""(training, testing) videos per scene: every anomaly kind once, after the normal test video 01."""

# The walkway as ddlvad 0.1 wrote it (computed with the code before the named scenes came, by
# tree_hash below); its JPEG bytes are those of this OpenCV build's libjpeg.
WALKWAY_SMALL = "8050f271cd7ed8985d69b8602ddb81ac573cfa35a906b0ec5f752f05e6b9485b"
"""seed 0, SceneSpec(train_videos=1, test_videos=2, frames=12)."""
WALKWAY_DEFAULT = "bdbde691506db92d799f25dff96fb86ff8007e30ad623f29b41d0bdbf6c1a660"
"""seed 0, the default SceneSpec (what `ddlvad synth OUT` and the demo write; ~6 s)."""


def tree_hash(root: Path) -> str:
    """sha256 over every file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class _Scenes(dict):
    """Ground scenes at 40 frames a video, seed 0, written when first asked for: name -> (root, description)."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, name: str) -> tuple[Path, dict]:
        train, test = VIDEOS[name]
        spec = SCENES[name].replace(train_videos=train, test_videos=test, frames=FRAMES)
        self[name] = (self.base / name, synthesize(self.base / name, seed=0, spec=spec))
        return self[name]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    return _Scenes(tmp_path_factory.mktemp("scenes"))


DEFAULT_RUN = {"perspective"}
"""The scene whose generic checks run by default; the others' are slow tests (each scene takes
5-13 s to write), their scene-specific property tests run by default."""
EVERY_SCENE = [name if name in DEFAULT_RUN else pytest.param(name, marks=pytest.mark.slow) for name in VIDEOS]


def boxes(root: Path, description: dict) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The true boxes (pixels) of every normal and every anomalous object: lists of arrays
    ``(n, 5)``: frame, x1, y1, x2, y2. Objects that turn abnormal (offpath, loiter) count as
    anomalous throughout."""
    normal, abnormal = [], []
    for split in ("training", "testing"):
        tracks = Tracks.load(root / split / "tracks.npz")
        for vid, video in tracks.videos.items():
            anomalies = {e["track"] for e in description["testing"].get(vid, {}).get("anomalies", [])} \
                if split == "testing" else set()
            for track in np.unique(video.rows[:, 1]):
                rows = video.rows[video.rows[:, 1] == track]
                b = np.column_stack([rows[:, 0], rows[:, 2] * W, rows[:, 3] * H, rows[:, 4] * W, rows[:, 5] * H])
                (abnormal if track in anomalies else normal).append(b)
    return normal, abnormal


def inside(b: np.ndarray) -> np.ndarray:
    """Rows of ``b`` whose box lies wholly inside the frame."""
    return (b[:, 1] > 1) & (b[:, 2] > 1) & (b[:, 3] < W - 1) & (b[:, 4] < H - 1)


# ---------------------------------------------------------------- every scene
@pytest.mark.parametrize("name", EVERY_SCENE)
def test_a_scene_is_a_folder_dataset_with_labels_equal_to_its_masks(scenes, name):
    root, description = scenes[name]
    train, test = VIDEOS[name]
    index = index_dataset(root)
    assert index.dataset == "folder" and len(index.training) == train and len(index.testing) == test
    assert all(len(r.frame_files) == FRAMES and r.labels is None and r.masks is None for r in index.training)
    assert not (root / "training" / "labels").exists() and not (root / "training" / "masks").exists()
    frame = cv2.imread(str(index.testing[0].frame_files[0]), cv2.IMREAD_UNCHANGED)
    assert frame.shape == (H, W) and frame.dtype == np.uint8
    for record in index.testing:
        masks = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(record.masks.iterdir())])
        assert masks.shape == (FRAMES, H, W)
        assert np.array_equal(record.labels, (masks > 0).any(axis=(1, 2)).astype(np.uint8))
        info = description["testing"][record.video_id]
        assert info["abnormal_frames"] == int(record.labels.sum())


@pytest.mark.parametrize("name", EVERY_SCENE)
def test_anomalies_only_in_test_videos_and_every_kind_shows(scenes, name):
    """Test video 01 is normal; each other one holds its anomaly, labelled in some frames, and
    the labelled frames are those its mask is visible in."""
    root, description = scenes[name]
    videos = description["testing"]
    assert videos["01"] == {"abnormal_frames": 0, "anomalies": []}
    kinds = [e["kind"] for v, info in videos.items() if v != "01" for e in info["anomalies"]]
    assert sorted(kinds) == sorted(SCENES[name].anomalies) and set(kinds) <= set(ANOMALIES)
    for vid, info in videos.items():
        if vid != "01":
            assert info["abnormal_frames"] > 0, (name, vid, info)
            ev = info["anomalies"][0]
            assert ev["start"] <= ev["first_frame"] <= ev["last_frame"] < FRAMES
    assert "training" not in description  # nothing abnormal was drawn into training videos


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    spec = SCENES["fast"].replace(train_videos=1, test_videos=2, frames=12)
    for folder, seed in (("a", 0), ("b", 0), ("c", 1)):
        synthesize(tmp_path / folder, seed=seed, spec=spec)
    assert tree_hash(tmp_path / "a") == tree_hash(tmp_path / "b")
    assert tree_hash(tmp_path / "a") != tree_hash(tmp_path / "c")


def test_the_walkway_writes_the_bytes_it_always_wrote(tmp_path):
    synthesize(tmp_path / "small", seed=0, spec=SceneSpec(train_videos=1, test_videos=2, frames=12))
    assert tree_hash(tmp_path / "small") == WALKWAY_SMALL
    synthesize(tmp_path / "default", seed=0, scene="walkway")  # the demo's data
    assert tree_hash(tmp_path / "default") == WALKWAY_DEFAULT


# ---------------------------------------------------------------- what each scene claims
def test_perspective_far_objects_are_small_and_the_anomalies_keep_far(scenes):
    """Box height grows linearly with the row a normal object stands on (12 px at the top
    row, 64 px at the bottom); the anomalies are mostly far while near people are large."""
    normal, abnormal = boxes(*scenes["perspective"])
    b = np.concatenate([n[inside(n)] for n in normal])
    heights, feet = b[:, 4] - b[:, 2], b[:, 4]
    assert np.corrcoef(heights, feet)[0, 1] > 0.95
    slope, top = np.polyfit(feet, heights, 1)
    assert 9 < top < 16 and 55 < top + slope * H < 72  # as tall as a 1.6-1.9 m person: 12 px -> 64 px
    far = [np.median(a[inside(a), 4]) < 0.5 * H for a in abnormal if inside(a).any()]
    assert sum(far) >= 0.6 * len(far) and len(far) >= 3
    near_people = np.median(heights[feet > 0.75 * H])
    assert np.median([np.median(a[inside(a), 4] - a[inside(a), 2]) for a in abnormal if inside(a).any()]) < near_people


def test_crowd_density_goes_from_quiet_to_dense_in_training_too(scenes):
    root, _ = scenes["crowd"]
    counts = {}
    for split in ("training", "testing"):
        for vid, video in Tracks.load(root / split / "tracks.npz").videos.items():
            counts[split, vid] = np.bincount(video.rows[:, 0].astype(int), minlength=FRAMES)
    assert max(c.max() for (split, _), c in counts.items() if split == "training") >= 20
    assert min(c.min() for c in counts.values()) <= 6


def test_lighting_drifts_while_normal_frames_stay_labelled_normal(scenes):
    root, description = scenes["lighting"]
    for folder in [root / "training" / "frames" / "01", root / "testing" / "frames" / "01"]:
        brightness = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).mean() for p in sorted(folder.iterdir())]
        assert max(brightness) - min(brightness) > 20, folder
    assert not np.load(root / "testing" / "labels" / "01.npy").any()
    assert description["spec"]["jpeg_quality"][1] <= 50  # blocky


def test_distant_anomalies_are_far_yet_span_a_16x16_patch(scenes):
    normal, abnormal = boxes(*scenes["distant"])
    assert len(abnormal) == 4
    for a in abnormal:  # (a car coming in from the side is not wholly in view within 40 frames)
        assert (a[:, 4] - a[:, 2]).max() >= 16  # at least one 16x16 patch tall at 160x240
        assert np.median(a[:, 4]) < 0.45 * H  # far: standing in the top 45 % of the frame
    feet = np.concatenate([n[inside(n), 4] for n in normal])
    assert (feet > 0.6 * H).mean() > 0.3  # walkers near the camera too


def test_fast_movers_look_like_walkers_but_move_3x_faster(scenes):
    """Speed in body heights per frame (depth-free: both scale as 1 / depth) of every anomaly
    is at least 3x the median of the walkers', and they are about as tall."""
    def speeds(objects):
        out, heights = [], []
        for b in objects:
            ok = inside(b)
            step = ok[1:] & ok[:-1] & (np.diff(b[:, 0]) == 1)
            if step.sum() >= 3:
                h = b[1:, 4] - b[1:, 2]
                out.append(np.median(np.abs(np.diff(b[:, 1] + b[:, 3]) / 2 / h)[step]))
                heights.append(np.median(h[step]))
        return np.array(out), np.array(heights)

    normal, abnormal = boxes(*scenes["fast"])
    walk, walk_h = speeds(normal)
    fast, fast_h = speeds(abnormal)
    assert len(fast) == 3 and (fast >= 3 * np.median(walk)).all()
    assert (fast_h < 1.3 * walk_h.max()).all() and (fast_h > 0.7 * walk_h.min()).all()


# ---------------------------------------------------------------- the command line
def test_an_unknown_scene_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run([sys.executable, "-m", "ddlvad", "synth", str(tmp_path / "out"), "--scene", "nope"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "--scene nope" in done.stderr
    assert all(name in done.stderr for name in SCENE_NAMES) and not (tmp_path / "out").exists()


def test_synth_help_lists_every_scene(capsys):
    from ddlvad.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["synth", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in SCENE_NAMES)


# ---------------------------------------------------------------- the development suite
def run_suite(*args, cwd=ROOT, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, "-m", "bench.experiments.suite", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_suite_dry_run_plans_every_dataset_and_runs_nothing(tmp_path):
    out = tmp_path / "suite.json"
    done = run_suite("--dry-run", "--seeds", "0,1", "--minutes", "2", "--set", "train.lr=0.004", "--out", str(out),
                     "--synth-cache", str(tmp_path / "synth"), "--runs", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    for name in ("ped2", "avenue-sample", *SCENE_NAMES):
        assert f"{name} seed 0" in text and f"{name} seed 1" in text
    assert "ddlvad train" in text and "--minutes 2" in text and "--set train.lr=0.004" in text
    assert "ddlvad synth" in text and "--scene perspective" in text
    assert not out.exists() and not (tmp_path / "synth").exists() and not (tmp_path / "runs").exists()


def test_suite_unknown_name_in_only_is_refused(tmp_path):
    done = run_suite("--dry-run", "--only", "nope", "--out", str(tmp_path / "s.json"))
    assert done.returncode == 2 and "nope" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_suite_runs_one_tiny_row_writes_it_and_resumes(tmp_path):
    """One real row (tiny preset, a small ``fast`` scene put into the suite's scene cache
    first), then the same command again: the row is kept, nothing is trained."""
    cache = tmp_path / "synth"
    synthesize(cache / "fast-s0", seed=0, spec=SCENES["fast"].replace(train_videos=1, test_videos=2, frames=24))
    out = tmp_path / "suite.json"
    args = ("--preset", "tiny", "--only", "fast", "--seeds", "0", "--out", str(out), "--synth-cache", str(cache),
            "--runs", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"))
    done = run_suite(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["status"] == "ok", rows
    row = rows[0]
    assert row["dataset"] == "fast" and row["seed"] == 0 and row["steps"] == 6
    assert 0 <= row["auc_micro"] <= 1 and 0 <= row["auc_macro"] <= 1 and row["pixel_auc"] is not None
    assert row["machine"]["simd"] and row["machine"]["threads"] >= 1
    table = done.stdout.strip().splitlines()
    assert table[-1].startswith("fast") and "micro" in done.stdout
    again = run_suite(*args)
    assert again.returncode == 0 and "already in" in again.stdout
    assert json.loads(out.read_text())["rows"] == rows
