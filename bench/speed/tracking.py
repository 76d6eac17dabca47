"""Speed and quality of the default object pipeline (motion detector + OC-SORT).

Prints frames/s of detection and of tracking on real Ped2 and Avenue frames (at most
``--frames`` per source; a source that is not there is skipped), the recall, precision,
IDF1, ID switches and MOTA (IoU 0.5) on the training videos of the package's synthetic
scene (``ddlvad.data.synthetic``, whose ``training/tracks.npz`` holds the true box of every
object), and saves a montage of Ped2 frames with their tracks. Asserts nothing.

    python -m bench.speed.tracking [--preview bench/figures/track_preview_ped2.png]
    python -m bench.speed.tracking --frames 40 --scene-videos 1 --scene-frames 60   # a quick check

The synthetic truth includes every object in view, also those that overlap or are only
partly in the frame (the motion detector merges touching objects into one box), so the
scores are those of a realistic scene, lower than the tests' scene of separate objects.
"""

from __future__ import annotations

import argparse
import glob
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import REPO, SHARED_DATA, machine
from ddlvad.data.synthetic import SceneSpec, synthesize
from ddlvad.data.tracks import Tracks, VideoTracks
from ddlvad.objects.motion import MotionDetector
from ddlvad.objects.preview import draw_tracks, montage
from ddlvad.objects.tracking import mot_scores, track_video

PED2 = SHARED_DATA / "ped2" / "testing" / "frames" / "01"
AVENUE = SHARED_DATA / "avenue-sample" / "testing_videos" / "21.avi"


def read_folder(folder: Path, limit: int) -> np.ndarray | None:
    files = sorted(glob.glob(str(folder / "*.jpg")))[:limit]
    return np.stack([cv2.imread(f) for f in files]) if files else None


def read_video(path: Path, limit: int) -> np.ndarray | None:
    cap, frames = cv2.VideoCapture(str(path)), []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames) if frames else None


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


def pixel_truth(video: VideoTracks, size: tuple[int, int]) -> dict[int, np.ndarray]:
    """Track id -> ``(n, 4)`` pixel boxes (NaN where absent) of normalised Tracks rows."""
    h, w = size
    truth: dict[int, np.ndarray] = {}
    for frame, track, *box in video.rows[:, :6]:
        truth.setdefault(int(track), np.full((video.num_frames, 4), np.nan))[int(frame)] = np.array(box) * [w, h, w, h]
    return truth


def synthetic_quality(videos: int, frames: int, seed: int) -> None:
    """Track the training videos of the synthetic scene and score them against its true
    boxes, all videos as one sequence (frames and ids offset per video)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = SceneSpec(train_videos=videos, test_videos=0, frames=frames)
        synthesize(tmp, seed=seed, spec=spec)
        truth_tracks = Tracks.load(Path(tmp) / "training" / "tracks.npz")
        size = (spec.height, spec.width)
        all_rows, truth, offset, seconds = [], {}, 0, 0.0
        for vid, video in sorted(truth_tracks.videos.items()):
            files = sorted((Path(tmp) / "training" / "frames" / vid).glob("*.jpg"))
            grey = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])  # as `ddlvad track` reads them
            t0 = time.perf_counter()
            rows = track_video(MotionDetector().detect_video(grey), size)
            seconds += time.perf_counter() - t0
            rows[:, 0] += offset
            rows[:, 1] += 10**6 * int(vid)
            all_rows.append(rows)
            for track, boxes in pixel_truth(video, size).items():
                whole = np.full((videos * frames, 4), np.nan)
                whole[offset:offset + len(boxes)] = boxes
                truth[10**6 * int(vid) + track] = whole
            offset += video.num_frames
    s = mot_scores(np.concatenate(all_rows), truth, size)
    print(f"synthetic scene (seed {seed}, {videos} training videos x {frames} frames {spec.width}x{spec.height}, "
          f"{len(truth)} objects, IoU 0.5; detect + track {offset / seconds:.1f} frames/s): "
          + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="frames per real source")
    ap.add_argument("--ped2", default=str(PED2), help="a folder of Ped2 frames")
    ap.add_argument("--avenue", default=str(AVENUE), help="an Avenue video file")
    ap.add_argument("--scene-videos", type=int, default=8, help="training videos of the synthetic scene")
    ap.add_argument("--scene-frames", type=int, default=120, help="frames per synthetic video")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    ap.add_argument("--preview", default=str(REPO / "bench" / "track_preview_ped2.png"))
    args = ap.parse_args()
    print(f"machine: {machine()}")

    ped2 = read_folder(Path(args.ped2), args.frames)
    rows = None
    if ped2 is None:
        print(f"ped2: no frames in {args.ped2}, skipped")
    else:
        _, rows = measure("ped2", ped2)
    avenue = read_video(Path(args.avenue), args.frames)
    if avenue is None:
        print(f"avenue: no video at {args.avenue}, skipped")
    else:
        measure("avenue", avenue)

    synthetic_quality(args.scene_videos, args.scene_frames, args.seed)

    if ped2 is not None:
        vt = VideoTracks(len(ped2), rows)
        pick = np.linspace(min(10, len(ped2) - 1), len(ped2) - 1, 4).round().astype(int)
        Path(args.preview).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(args.preview, montage([draw_tracks(ped2[i], vt.tracks_at(int(i))) for i in pick]))
        print(f"preview (ped2 frames {pick.tolist()}): {args.preview}")


if __name__ == "__main__":
    main()
