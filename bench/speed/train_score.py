"""Training and scoring speed, and peak memory, per preset; fast vs straightforward paths.

Prints figures, asserts nothing. Each preset runs in its own process so that its peak
resident memory (ru_maxrss) is its own. Two equivalences are timed in the same process:

- training: the package's defaults (C3DSU's temporal Conv3d computed for the middle slice
  only, and the layout :mod:`ddlvad.conv_layout` chooses on this machine: the encoder's pixel
  unshuffle + 1x1 projection as one strided convolution or not, channels-last Conv2d
  weights with exact BatchNorm statistics or NCHW; ``tiny`` fixes NCHW + fold; the
  ``layout`` column says which) vs the straightforward implementation of the same math
  (the paper's 'same'-padded Conv3d followed by slicing, unshuffle then 1x1 convolution,
  NCHW weights); timed rounds alternate between the two;
- scoring: per-frame encoder outputs reused by the T windows that contain the frame
  (ours) vs every window through the whole network (straightforward).

    python -m bench.speed.train_score                        # tiny, cpu, paper (paper: a few steps)
    python -m bench.speed.train_score --presets cpu --steps 20

A preset that trains at two sizes (the ``cpu`` preset's progressive resizing: 128x192, then
160x240) gets a row per size (:func:`bench.common.preset_sizes`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from bench.common import (
    REPO,
    layout_name,
    machine,
    make_naive,
    preset_sizes,
    random_training_data,
    timed_rounds,
)
from ddlvad.score import score_video, score_video_naive
from ddlvad.trainer import Trainer


def measure(preset: str, size: int, steps: int, batch: int | None, frames: int) -> dict:
    """The figures of ``preset`` at its ``size``-th frame size (:func:`preset_sizes`)."""
    cfg = preset_sizes(preset)[size]
    if batch:
        cfg.train.batch_size = batch
    cfg.train.steps = steps + 1
    d = cfg.data
    data = random_training_data(cfg, frames)
    video = data.frames[0]
    out = {"preset": preset, "batch": cfg.train.batch_size, "size": f"{d.height}x{d.width}x{d.channels}",
           "latent": cfg.model.latent, "threads": torch.get_num_threads()}

    trainer = Trainer(cfg, data, "/tmp/ddlvad-bench-unused", progress=False)
    out["layout"] = layout_name(trainer.conv_layout)
    naive = Trainer(cfg, data, "/tmp/ddlvad-bench-unused", progress=False)
    make_naive(naive.model)
    arms = {"": trainer, "_naive": naive}
    for tr in arms.values():
        tr.train_step(0)  # warm-up
    per_round = max(1, steps // ROUNDS)
    seconds = timed_rounds(arms, ROUNDS, per_round)
    for name, sec in seconds.items():
        out[f"train_samples_per_s{name}"] = ROUNDS * per_round * cfg.train.batch_size / sec
    out["train_speedup"] = out["train_samples_per_s"] / out["train_samples_per_s_naive"]
    model = trainer.model.eval()
    clip = video[:frames]
    sc = cfg.score
    score_video(model, clip[: d.frames + 1], sc)  # warm-up
    t0 = time.perf_counter()
    fast = score_video(model, clip, sc)
    out["score_frames_per_s"] = len(clip) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    slow = score_video_naive(make_naive(model), clip, sc, sc.batch_size)
    out["score_frames_per_s_naive"] = len(clip) / (time.perf_counter() - t0)
    out["score_speedup"] = out["score_frames_per_s"] / out["score_frames_per_s_naive"]
    ok = np.isfinite(fast)
    out["score_max_abs_diff"] = float(np.max(np.abs(fast[ok] - slow[ok])))
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


DEFAULTS = {"tiny": (20, None, 64), "cpu": (10, None, 64), "paper": (4, 1, 12)}
"""preset -> (timed training steps per arm, batch (None: the preset's), scored frames)."""
ROUNDS = 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="tiny,cpu,paper")
    ap.add_argument("--steps", type=int, help="timed training steps (default per preset)")
    ap.add_argument("--batch", type=int, help="training batch (default: the preset's; paper: 1)")
    ap.add_argument("--frames", type=int, help="frames of the scored clip")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        steps, batch, frames = DEFAULTS.get(args.one, (10, None, 64))
        print(json.dumps(measure(args.one, args.size, args.steps or steps, args.batch or batch,
                                 args.frames or frames)))
        return
    print(f"machine: {machine()}")
    print(f"{'preset':7} {'batch':>5} {'size':>11} {'layout':>13} {'train samples/s':>16} {'(naive)':>8} {'x':>5} "
          f"{'score frames/s':>15} {'(naive)':>8} {'x':>5} {'peak MB':>8}")
    for preset, size in [(p, i) for p in args.presets.split(",") for i in range(len(preset_sizes(p)))]:
        cmd = [sys.executable, "-m", __spec__.name, "--one", preset, "--size", str(size)]
        for flag in ("steps", "batch", "frames"):
            if getattr(args, flag):
                cmd += [f"--{flag}", str(getattr(args, flag))]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{preset:7} {r['batch']:>5} {r['size']:>11} {r['layout']:>13} {r['train_samples_per_s']:>16.2f} "
              f"{r['train_samples_per_s_naive']:>8.2f} {r['train_speedup']:>5.2f} {r['score_frames_per_s']:>15.2f} "
              f"{r['score_frames_per_s_naive']:>8.2f} {r['score_speedup']:>5.2f} {r['peak_rss_mb']:>8.0f}"
              f"   (max |score diff| {r['score_max_abs_diff']:.1e})", flush=True)


if __name__ == "__main__":
    main()
