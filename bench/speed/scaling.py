"""How training and scoring time grow with the number of frames (three sizes of one scene).

    python -m bench.speed.scaling [--preset cpu] [--frames 40,80,160] [--json bench/results/scaling.json]
    python -m bench.speed.scaling --preset tiny --frames 12,16 --videos 2,1   # a quick check

For each size, the synthetic scene of ``ddlvad synth`` is written with that many frames per
video (8 training and 6 test videos, ``--videos``), then every stage of a real run is timed on it:
decoding into the frame cache, detection + tracking of the training objects (motion detector
+ OC-SORT), one training epoch of the preset (every window once, DDL mode) and scoring
every test frame, after one discarded warm-up pass on a tiny scene. Prints seconds per
stage, milliseconds per frame, and each stage's growth relative to the smallest size beside
the growth of the frame count (linear scaling means the two columns agree). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from bench.common import machine
from ddlvad import Config
from ddlvad.commands.evaluate import evaluate
from ddlvad.commands.train import train
from ddlvad.data.frames import FrameSpec, FrameStore
from ddlvad.data.layouts import index_dataset
from ddlvad.data.synthetic import SceneSpec, synthesize
from ddlvad.objects.dataset import track_split

STAGES = ("cache", "tracking", "train_epoch", "scoring")


def measure(frames_per_video: int, preset: str, work: Path, videos: tuple[int, int] = (8, 6)) -> dict:
    data = work / f"scene-{frames_per_video}"
    synthesize(data, seed=0, spec=SceneSpec(train_videos=videos[0], test_videos=videos[1], frames=frames_per_video))
    cfg = Config.preset(preset)
    cfg.data.cache_dir = str(work / f"cache-{frames_per_video}")
    cfg.train.epochs, cfg.train.steps = 1, None
    cfg.train.checkpoint_every = 10**9  # only the end-of-epoch checkpoint
    index = index_dataset(data, cfg.data.dataset, cfg.data.scene, splits=("training",))
    quiet = {"progress": False, "log": lambda m: None}
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    store = FrameStore.of_split(index, "training", FrameSpec.from_config(cfg.data), cfg.data.cache_dir, progress=False)
    times["cache"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    track_split(index, "training", cfg, **quiet)
    times["tracking"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = train(cfg, data, work / f"run-{frames_per_video}", force=True, **quiet)
    times["train_epoch"] = time.perf_counter() - t0
    report = evaluate(work / f"run-{frames_per_video}", data, plots=False, **quiet)
    times["scoring"] = report["scoring_seconds"]
    train_frames = int(store.lengths.sum())
    return {"frames_per_video": frames_per_video, "train_frames": train_frames,
            "test_frames": report["frames_scored"], "steps": summary["steps"],
            "seconds": {k: round(v, 2) for k, v in times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--frames", default="40,80,160", help="frames per video of the three sizes")
    ap.add_argument("--videos", default="8,6", help="training and test videos of the scene")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    sizes = [int(x) for x in args.frames.split(",")]
    train_videos, test_videos = (int(x) for x in args.videos.split(","))
    videos = (train_videos, test_videos)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        measure(12, args.preset, Path(tmp), videos)  # warm-up (imports, first kernels, layout probe), not reported
        for n in sizes:
            rows.append(measure(n, args.preset, Path(tmp), videos))
            r = rows[-1]
            print(f"{r['train_frames']} training / {r['test_frames']} test frames: "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items()), flush=True)
    base = rows[0]
    print(f"\npreset {args.preset}; machine: {machine()}")
    print("| training frames | test frames | stage | seconds | ms per frame | growth of time | growth of frames |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for r in rows:
        for stage in STAGES:
            frames_key = "test_frames" if stage == "scoring" else "train_frames"
            sec = r["seconds"][stage]
            print(f"| {r['train_frames']} | {r['test_frames']} | {stage} | {sec:.2f} | "
                  f"{1000 * sec / r[frames_key]:.2f} | {sec / max(base['seconds'][stage], 1e-9):.2f}x | "
                  f"{r[frames_key] / base[frames_key]:.2f}x |")
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": args.preset, "machine": machine(), "torch": torch.__version__,
                                               "threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
