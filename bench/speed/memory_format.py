"""Does the channels-last memory format speed up training and scoring on this CPU?

    python -m bench.speed.memory_format [--presets cpu,paper]

For each preset, three trainers with the same seed (so the same initial weights) train on the
same random frames, all with the folded encoder projection (``model.fold_projection=true``):
one with every Conv2d weight in the default (contiguous) layout, one in
``torch.channels_last`` as ``model.channels_last=true`` makes them (oneDNN then runs those
convolutions in NHWC; the Conv3d weights stay as they are), and one channels-last with
PyTorch's own BatchNorm2d instead of ddlvad's (which computes exact batch statistics for
NHWC input: what that costs). Timed rounds alternate between them so that drift of the
machine hits all. Also scores one clip with the first trainer's weights in both formats.
Prints samples/s, frames/s, the ratios and the largest difference of the losses and scores
(same math, different memory order: float rounding only). Asserts nothing. A preset that
trains at two sizes (the ``cpu`` preset) gets a line per size (:func:`bench.common.preset_sizes`).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np

from bench.common import (
    machine,
    preset_sizes,
    random_training_data,
    timed_rounds,
    with_pytorch_batchnorm,
)
from ddlvad.models import ConvLayout, apply_layout
from ddlvad.score import score_video
from ddlvad.trainer import Trainer

ARMS = ("default", "channels_last", "channels_last_pytorch_bn")
NCHW, NHWC = ConvLayout(channels_last=False, fold=True), ConvLayout(channels_last=True, fold=True)

SETTINGS = {"tiny": (10, None, 64), "cpu": (4, None, 64), "paper": (1, 1, 8)}
"""preset -> (timed steps per round, batch (None: the preset's), scored frames)."""


def run(preset: str, cfg, rounds: int) -> None:
    """Time the three arms on ``cfg``, one of ``preset``'s sizes."""
    steps, batch, frames = SETTINGS[preset]
    if batch:
        cfg.train.batch_size = batch
    cfg.train.steps = 10**6
    cfg.model.channels_last, cfg.model.fold_projection = False, True  # no layout probe: the arms set their own
    d = cfg.data
    data = random_training_data(cfg, frames)
    video = data.frames[0]
    arms = {name: Trainer(cfg, data, "/tmp/ddlvad-bench-unused", progress=False) for name in ARMS}
    apply_layout(arms["default"].model, NCHW)
    apply_layout(arms["channels_last"].model, NHWC)
    apply_layout(with_pytorch_batchnorm(arms["channels_last_pytorch_bn"].model), NHWC)
    first = {name: tr.train_step(0) for name, tr in arms.items()}  # also the warm-up
    loss_diff = abs(first["default"]["loss"] - first["channels_last"]["loss"])
    seconds = timed_rounds(arms, rounds, steps)
    samples = rounds * steps * cfg.train.batch_size
    clip = video[:frames]
    sc = cfg.score
    fps, scores = {}, {}
    trained = arms["default"].model.eval()  # the same weights in both formats
    other = apply_layout(copy.deepcopy(trained), NHWC)
    for name, model in (("default", trained), ("channels_last", other)):
        score_video(model, clip[: d.frames + 1], sc)  # warm-up
        t0 = time.perf_counter()
        scores[name] = score_video(model, clip, sc)
        fps[name] = len(clip) / (time.perf_counter() - t0)
    ok = np.isfinite(scores["default"])
    score_diff = float(np.max(np.abs(scores["default"][ok] - scores["channels_last"][ok])))
    train = {k: samples / v for k, v in seconds.items()}
    print(f"{preset:6} batch {cfg.train.batch_size:>2} {d.height}x{d.width}x{d.channels}: train samples/s "
          f"default {train['default']:.3f}, channels_last {train['channels_last']:.3f} "
          f"(x{train['channels_last'] / train['default']:.2f}; with PyTorch's BatchNorm "
          f"x{train['channels_last_pytorch_bn'] / train['default']:.2f}); score frames/s default {fps['default']:.2f}, "
          f"channels_last {fps['channels_last']:.2f} (x{fps['channels_last'] / fps['default']:.2f}); "
          f"|loss diff| {loss_diff:.1e}, max |score diff| {score_diff:.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="cpu,paper")
    ap.add_argument("--rounds", type=int, default=2, help="alternating timed rounds per arm")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    for preset in args.presets.split(","):
        for cfg in preset_sizes(preset):
            run(preset, cfg, args.rounds)


if __name__ == "__main__":
    main()
