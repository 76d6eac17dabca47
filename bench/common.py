"""What the benchmark scripts share: the machine line, random training data, timing, the
straightforward ("naive") network, PyTorch's BatchNorm swapped back in, and MOT scores,
and a preset's frame sizes one at a time.

Every script that prints a measured figure prints :func:`machine` with it.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ddlvad import Config
from ddlvad.data.clips import TrainingData
from ddlvad.data.tracks import VideoTracks
from ddlvad.machine import describe
from ddlvad.models import BatchNorm2d, ConvLayout, apply_layout

REPO = Path(__file__).resolve().parents[1]
"""The repository root (the folder the scripts are run from)."""
SHARED_DATA = REPO.parent / "shared" / "data"
"""Where the real datasets live beside the checkout (``ped2``, ``avenue-sample``)."""


# ---------------------------------------------------------------- the machine
def machine() -> str:
    """One line naming what the figures were measured on (:func:`ddlvad.machine.describe`)."""
    return describe()


# ---------------------------------------------------------------- training data and timing
def preset_sizes(preset: str) -> list[Config]:
    """``preset`` at each frame size it trains at, as configs of one fixed size
    (``train.start_scale`` 1), in training order: a preset with progressive resizing (the
    ``cpu`` preset: 128x192, then 160x240; docs/method.md#progressive) gives its start size, then
    its full size; any other preset gives itself. Speed is measured one size at a time."""
    full = Config.preset(preset)  # a new object, and at_start() a copy of it: both are ours to change
    sizes = [full.at_start(), full] if full.train.start_scale != 1 else [full]
    for cfg in sizes:
        cfg.train.start_scale = 1.0
    return sizes


def random_training_data(cfg, frames: int) -> TrainingData:
    """One video of random frames of the config's size (at least ``frames``, and enough for a
    batch of windows) with one tracked box in every frame: speed does not depend on content."""
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


# ---------------------------------------------------------------- straightforward network
class SamePaddedMiddle(nn.Module):
    """The straightforward temporal layer: full 'same' Conv3d, then the middle time slice."""

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        self.conv = conv

    def forward(self, x):
        t = x.shape[2] // 2
        y = F.conv3d(x, self.conv.weight, self.conv.bias, padding=(t, 1, 1))
        return y[:, :, t:t + 1]


def make_naive(model: nn.Module) -> nn.Module:
    """The same network computed the straightforward way (in place; returns ``model``):
    contiguous (NCHW) weights, pixel unshuffle followed by the 1x1 projection (no fold), and
    the paper's 'same'-padded Conv3d followed by slicing."""
    apply_layout(model, ConvLayout(channels_last=False, fold=False))
    if hasattr(model, "temporal"):
        model.temporal = nn.ModuleList(SamePaddedMiddle(c) for c in model.temporal)
    return model


def with_pytorch_batchnorm(model: nn.Module) -> nn.Module:
    """Swap ddlvad's BatchNorm2d (exact statistics for channels-last input) back to PyTorch's."""
    for module in model.modules():
        if isinstance(module, BatchNorm2d):
            module.__class__ = torch.nn.BatchNorm2d
    return model


def layout_name(layout: ConvLayout) -> str:
    """``nchw``, ``nhwc``, with ``-unfolded`` when the encoder projection is not folded."""
    return f"{'nhwc' if layout.channels_last else 'nchw'}{'' if layout.fold else '-unfolded'}"


def untrained_run(folder: Path, cfg: Config, threshold: float | None = None) -> Path:
    """A run folder holding an untrained model of ``cfg`` (seeded by ``train.seed``), in the
    checkpoint format training writes (only the keys ``load_model`` reads: version, config,
    model, threshold): speed does not depend on the weights."""
    from ddlvad import __version__, build_model
    from ddlvad.checkpoint import CHECKPOINT, save_atomic

    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg)
    state = {"version": __version__, "config": cfg.to_dict(), "model": model.state_dict(), "step": 0,
             "threshold": {"value": threshold, "region": threshold, "percentile": None, "frames": 0,
                           "source": "bench: given" if threshold is not None else "bench: none"}}
    folder.mkdir(parents=True, exist_ok=True)
    save_atomic(state, folder / CHECKPOINT)
    return folder
