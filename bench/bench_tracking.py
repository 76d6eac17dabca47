"""Speed and quality of the default object pipeline (motion detector + OC-SORT).

Prints frames/s of detection and of tracking on real Ped2 and Avenue frames (at most
``--frames`` per source), the recall/precision/IDF1 on the synthetic scene of
tests/test_objects.py, and saves a PNG montage of Ped2 frames with their tracks.
Asserts nothing.

    PYTHONPATH=src python bench/bench_tracking.py [--preview bench/track_preview_ped2.png]
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from ddlvad.data.tracks import VideoTracks  # noqa: E402
from ddlvad.objects.motion import MotionDetector  # noqa: E402
from ddlvad.objects.preview import draw_tracks, montage  # noqa: E402
from ddlvad.objects.tracking import track_video  # noqa: E402
from test_objects import make_scene, mot_scores  # noqa: E402  (the test's synthetic scene)

PED2 = "/work/shared/data/ped2/testing/frames/01/*.jpg"
AVENUE = "/work/shared/data/avenue-sample/testing_videos/21.avi"


def read_ped2(limit: int) -> np.ndarray:
    return np.stack([cv2.imread(f) for f in sorted(glob.glob(PED2))[:limit]])


def read_video(path: str, limit: int) -> np.ndarray:
    cap, frames = cv2.VideoCapture(path), []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)


def measure(name: str, frames: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    t0 = time.perf_counter()
    dets = MotionDetector().detect_video(frames)
    t1 = time.perf_counter()
    rows = track_video(dets, frames.shape[1:3])
    t2 = time.perf_counter()
    n = len(frames)
    print(f"{name:8s} {n:4d} frames {frames.shape[2]}x{frames.shape[1]}: detect {n / (t1 - t0):7.1f} frames/s, "
          f"track {n / (t2 - t1):7.1f} frames/s, {np.mean([len(d) for d in dets]):.1f} boxes/frame, "
          f"{len(rows) / n:.1f} tracked/frame, {len(np.unique(rows[:, 1]))} tracks")
    return dets, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per real source")
    ap.add_argument("--preview", default=str(ROOT / "bench" / "track_preview_ped2.png"))
    args = ap.parse_args()

    ped2 = read_ped2(args.frames)
    _, rows = measure("ped2", ped2)
    measure("avenue", read_video(AVENUE, args.frames))

    frames, truth = make_scene()
    rows_s = track_video(MotionDetector().detect_video(frames), frames.shape[1:3])
    s = mot_scores(rows_s, truth, frames.shape[1:3])
    print(f"synthetic scene ({len(frames)} frames, {len(truth)} objects, IoU 0.5): "
          + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))

    vt = VideoTracks(len(ped2), rows)
    pick = np.linspace(10, len(ped2) - 1, 4).round().astype(int)
    Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.preview, montage([draw_tracks(ped2[i], vt.tracks_at(int(i))) for i in pick]))
    print(f"preview (ped2 frames {pick.tolist()}): {args.preview}")


if __name__ == "__main__":
    main()
