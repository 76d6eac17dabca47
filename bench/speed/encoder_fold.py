"""The encoder's space-to-depth + 1x1 projection: one strided convolution (the fold) or two ops?

    python -m bench.speed.encoder_fold [--rounds 2]

Times forward + backward of the four encoder blocks' resample-and-project step of the `paper`
size (widths 64..512 at 256..32 px, batch 2) both ways, in NCHW and in NHWC, and prints the
speed-up of the fold per layout (the fastest of ``--rounds`` after a warm-up). Asserts nothing.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import machine
from ddlvad.models import ConvBlock, set_conv_layout

BLOCKS = [(3, 64, 256), (64, 128, 128), (128, 256, 64), (256, 512, 32)]
"""(in channels, out channels, input side) of the `paper` encoder's blocks."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    torch.manual_seed(0)
    for layout, name in ((torch.contiguous_format, "NCHW"), (torch.channels_last, "NHWC")):
        total = {"fold": 0.0, "unfold": 0.0}
        for cin, cout, side in BLOCKS:
            block = set_conv_layout(ConvBlock(cin, cout, down=True), layout)
            x = torch.randn(2, cout * 3, side, side).contiguous(memory_format=layout).requires_grad_()
            ways = {"fold": block.resample_project, "unfold": lambda v, b=block: b.project(b.resample(v))}
            for way, fn in ways.items():
                best = float("inf")
                for _ in range(args.rounds + 1):  # the first is the warm-up
                    t0 = time.perf_counter()
                    fn(x).sum().backward()
                    best = min(best, time.perf_counter() - t0)
                total[way] += best
        print(f"{name}: fold {total['fold']:.3f} s, unshuffle + 1x1 {total['unfold']:.3f} s, "
              f"fold speed-up x{total['unfold'] / total['fold']:.2f}", flush=True)


if __name__ == "__main__":
    main()
