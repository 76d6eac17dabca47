"""Training and scoring speed, and peak memory, per preset; fast vs straightforward paths.

Prints figures, asserts nothing. Each preset runs in its own process so that its peak
resident memory (ru_maxrss) is its own. Two equivalences are timed in the same process:

- training: the package's defaults (C3DSU's temporal Conv3d computed for the middle slice
  only, the encoder's pixel unshuffle + 1x1 projection as one strided convolution,
  channels-last Conv2d weights with exact BatchNorm statistics) vs the straightforward
  implementation of the same math (the paper's 'same'-padded Conv3d followed by slicing,
  unshuffle then 1x1 convolution, NCHW weights); timed rounds alternate between the two;
- scoring: per-frame encoder outputs reused by the T windows that contain the frame
  (ours) vs every window through the whole network (straightforward).

    python bench/bench_speed.py                       # tiny, cpu, paper (paper: a few steps)
    python bench/bench_speed.py --presets cpu --steps 20
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
import torch.nn.functional as F
from torch import nn


class SamePaddedMiddle(nn.Module):
    """The straightforward temporal layer: full 'same' Conv3d, then the middle time slice."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        t = x.shape[2] // 2
        y = F.conv3d(x, self.conv.weight, self.conv.bias, padding=(t, 1, 1))
        return y[:, :, t:t + 1]


def make_naive(model):
    """The same network computed the straightforward way: contiguous (NCHW) weights, the
    paper's 'same'-padded Conv3d, pixel (un)shuffle followed by the 1x1 projection."""
    from ddlvad.models import ConvBlock, set_conv_layout

    set_conv_layout(model, torch.contiguous_format)
    if hasattr(model, "temporal"):
        model.temporal = nn.ModuleList(SamePaddedMiddle(c) for c in model.temporal)
    for block in model.modules():
        if isinstance(block, ConvBlock):
            block.resample_project = lambda x, b=block: b.project(b.resample(x))
    return model


def random_training_data(cfg, frames: int):
    """One video of random frames of the config's size (at least ``frames``, and enough for a
    batch of windows) with one tracked box in every frame: speed does not depend on content."""
    from ddlvad.data.tracks import VideoTracks
    from ddlvad.train import TrainingData

    d = cfg.data
    n = max(frames, cfg.train.batch_size + d.frames)
    video = np.random.default_rng(0).integers(0, 256, (n, d.height, d.width, d.channels), dtype=np.uint8)
    rows = np.array([[f, 1, 0.3, 0.3, 0.6, 0.7, 1.0] for f in range(n)], float)
    return TrainingData([video], [VideoTracks(n, rows)], ["v"])


def timed_rounds(trainers: dict, rounds: int, steps: int) -> dict:
    """Seconds each trainer spends on ``rounds`` x ``steps`` training steps (steps 1, 2, ...),
    the rounds alternating between the trainers so that drift of the machine hits them all."""
    seconds = dict.fromkeys(trainers, 0.0)
    for r in range(rounds):
        for name, trainer in trainers.items():
            t0 = time.perf_counter()
            for s in range(1 + r * steps, 1 + (r + 1) * steps):
                trainer.train_step(s)
            seconds[name] += time.perf_counter() - t0
    return seconds


def measure(preset: str, steps: int, batch: int | None, frames: int) -> dict:
    from ddlvad import Config
    from ddlvad.score import score_video, score_video_naive
    from ddlvad.train import Trainer

    cfg = Config.preset(preset)
    if batch:
        cfg.train.batch_size = batch
    cfg.train.steps = steps + 1
    d = cfg.data
    data = random_training_data(cfg, frames)
    video = data.frames[0]
    out = {"preset": preset, "batch": cfg.train.batch_size, "size": f"{d.height}x{d.width}x{d.channels}",
           "latent": cfg.model.latent, "threads": torch.get_num_threads()}

    trainer = Trainer(cfg, data, "/tmp/ddlvad-bench-unused", progress=False)
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
    score_video(model, clip[: d.frames + 1], sc.patch, sc.shifted_grid, sc.batch_size)  # warm-up
    t0 = time.perf_counter()
    fast = score_video(model, clip, sc.patch, sc.shifted_grid, sc.batch_size)
    out["score_frames_per_s"] = len(clip) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    slow = score_video_naive(make_naive(model), clip, sc.patch, sc.shifted_grid, sc.batch_size)
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
    args = ap.parse_args()
    if args.one:
        steps, batch, frames = DEFAULTS.get(args.one, (10, None, 64))
        print(json.dumps(measure(args.one, args.steps or steps, args.batch or batch, args.frames or frames)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'preset':7} {'batch':>5} {'size':>11} {'train samples/s':>16} {'(naive)':>8} {'x':>5} "
          f"{'score frames/s':>15} {'(naive)':>8} {'x':>5} {'peak MB':>8}")
    for preset in args.presets.split(","):
        cmd = [sys.executable, __file__, "--one", preset]
        for flag in ("steps", "batch", "frames"):
            if getattr(args, flag):
                cmd += [f"--{flag}", str(getattr(args, flag))]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
        print(f"{preset:7} {r['batch']:>5} {r['size']:>11} {r['train_samples_per_s']:>16.2f} "
              f"{r['train_samples_per_s_naive']:>8.2f} {r['train_speedup']:>5.2f} {r['score_frames_per_s']:>15.2f} "
              f"{r['score_frames_per_s_naive']:>8.2f} {r['score_speedup']:>5.2f} {r['peak_rss_mb']:>8.0f}"
              f"   (max |score diff| {r['score_max_abs_diff']:.1e})", flush=True)


if __name__ == "__main__":
    main()
