"""How far is one training step's gradient from a float64 reference, per memory layout?

    python -m bench.speed.numerics [--preset cpu] [--warmup 20]

First one training-mode BatchNorm on its own (48 x 48 x 64 x 96 values, NCHW and NHWC):
error of its output against float64, PyTorch's kernel and ddlvad's BatchNorm2d. Then a
trainer on random frames of the preset's size takes ``--warmup`` ordinary steps (default
layout, NCHW with the folded projection); from that state, one more step's gradients (same
batch, noise and boxes) are computed four ways: in float64 (the reference), in float32 with
the default layout, channels-last with ddlvad's BatchNorm2d (exact batch statistics), and
channels-last with PyTorch's BatchNorm2d.
Prints the median and the largest relative error over the parameter tensors. Left out: the
biases of convolutions followed by a BatchNorm (their true gradient is zero, so what they get
is rounding noise, in every layout). Asserts nothing.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from torch import nn

from bench.common import machine, preset_sizes, random_training_data, with_pytorch_batchnorm
from ddlvad.models import BatchNorm2d, ConvLayout, apply_layout
from ddlvad.pseudo_anomaly import PseudoAnomaly
from ddlvad.trainer import Trainer

NCHW, NHWC = ConvLayout(channels_last=False, fold=True), ConvLayout(channels_last=True, fold=True)


class Float64Inputs(nn.Module):
    """Feeds a float64 network from the float32 training step."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, clip, anomaly=None):
        if anomaly is not None:
            anomaly = PseudoAnomaly(anomaly.mask, anomaly.noise.double())
        return self.net(clip.double(), anomaly)


def gradients(trainer: Trainer, state: dict, step: int) -> dict[str, torch.Tensor]:
    """The gradients of training step ``step`` from ``state``, without the optimiser update."""
    trainer.net.load_state_dict(state)
    trainer.optimizer.zero_grad(set_to_none=True)
    update, trainer.optimizer.step = trainer.optimizer.step, lambda *a, **k: None
    try:
        trainer.train_step(step)
    finally:
        trainer.optimizer.step = update
    return {n: p.grad.double() for n, p in trainer.net.named_parameters() if p.grad is not None}


def cancelled_by_batchnorm(name: str) -> bool:
    return name.endswith(".bias") and (".branches." in name or ".project." in name) \
        and "decoder.blocks.3.project" not in name  # the last projection has no BatchNorm after it


def batchnorm_errors() -> None:
    torch.manual_seed(0)
    x64 = torch.randn(48, 48, 64, 96, dtype=torch.float64) * 0.5 + 2.0
    ref = torch.nn.BatchNorm2d(48).double()(x64)
    print("one training-mode BatchNorm, 48x48x64x96 values: relative error of the output against float64")
    for layout, tag in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "NHWC")):
        x = x64.float().contiguous(memory_format=layout)
        for name, bn in (("PyTorch", nn.BatchNorm2d(48)), ("ddlvad", BatchNorm2d(48))):
            y = bn(x).double()
            print(f"  {tag} {name:8} {((y - ref).norm() / ref.norm()).item():.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--warmup", type=int, default=20, help="ordinary training steps first")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    batchnorm_errors()
    cfg = preset_sizes(args.preset)[-1]  # its full frame size
    cfg.train.steps = 10**6
    cfg.model.channels_last, cfg.model.fold_projection = False, True  # no layout probe: the runs set their own
    trainer = Trainer(cfg, random_training_data(cfg, 64), "/tmp/ddlvad-bench-unused", progress=False)
    for s in range(args.warmup):
        trainer.train_step(s)
    state = copy.deepcopy(trainer.net.state_dict())
    plain_engine = trainer.engine

    trainer.net.double()
    trainer.engine = Float64Inputs(trainer.net)
    reference = gradients(trainer, {k: v.double() if v.is_floating_point() else v for k, v in state.items()},
                          args.warmup)
    trainer.net.float()
    trainer.engine = plain_engine

    runs = {"default layout": lambda m: apply_layout(m, NCHW),
            "channels-last, ddlvad BatchNorm2d": lambda m: apply_layout(m, NHWC),
            "channels-last, PyTorch BatchNorm2d": lambda m: apply_layout(with_pytorch_batchnorm(m), NHWC)}
    print(f"preset {args.preset}, after {args.warmup} steps; relative error "
          f"of each parameter's gradient against float64 (median / largest over "
          f"{sum(not cancelled_by_batchnorm(n) for n in reference)} tensors)")
    for name, prepare in runs.items():
        prepare(trainer.model)
        grads = gradients(trainer, state, args.warmup)
        errors = np.array([((grads[n] - ref).norm() / ref.norm().clamp_min(1e-300)).item()
                           for n, ref in reference.items() if not cancelled_by_batchnorm(n)])
        print(f"  {name:36} median {np.median(errors):.1e}  largest {errors.max():.1e}", flush=True)


if __name__ == "__main__":
    main()
