"""What the layout probe measures on this machine, per preset, and what it would choose.

For every preset of ``--presets``, times each candidate convolution layout
(:data:`ddlvad.conv_layout.CANDIDATES`: NCHW with the folded projection, NHWC with and without
it) with :func:`ddlvad.conv_layout.probe` for ``train`` (forward + backward) and ``score`` (one
scoring pass), on :func:`ddlvad.conv_layout.probe_batch` windows, and prints the seconds per
layout, the fastest of them, and the layout :func:`ddlvad.conv_layout.choose` picks in a second
probe (a different answer there means a near tie). ``choose`` probes only among the layouts
the preset leaves open (``tiny`` fixes NCHW + fold, so nothing is probed for it) and runs
with an empty temporary cache, so the answer is this run's and the user's cache is not
written. Asserts nothing. Run it twice to see both kinds of machine, natively and with the
SIMD level of an AVX2 machine (the answer depends on it: bench/RESULTS.md):

    python -m bench.speed.layout_probe --presets tiny,cpu,paper
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.speed.layout_probe --presets tiny,cpu,paper
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from bench.common import layout_name, machine
from ddlvad import Config
from ddlvad.conv_layout import CANDIDATES, PURPOSES, choose, probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", default="tiny,cpu,paper")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds per layout (the fastest is kept)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"machine: {machine()}")
    print(f"device {device}; seconds of one probe step per layout (fastest of {args.rounds} rounds)")
    names = [layout_name(c) for c in CANDIDATES]
    print(f"{'preset':7} {'purpose':7} {'size':>11} " + " ".join(f"{n:>13}" for n in names)
          + "  fastest        second probe")
    for preset in args.presets.split(","):
        cfg = Config.preset(preset)
        d, m = cfg.data, cfg.model
        fixed = m.channels_last is not None and m.fold_projection is not None
        for purpose in PURPOSES:
            seconds = probe(cfg, purpose, list(CANDIDATES), device, args.rounds)
            with tempfile.TemporaryDirectory() as cache:
                picked = choose(cfg, purpose, device, cache_dir=cache, rounds=args.rounds)
            print(f"{preset:7} {purpose:7} {f'{d.height}x{d.width}x{d.channels}':>11} "
                  + " ".join(f"{seconds[c]:>13.4f}" for c in CANDIDATES)
                  + f"  {layout_name(min(CANDIDATES, key=seconds.get)):14} {layout_name(picked)}"
                  + f"{' (fixed by the preset)' if fixed else ''}", flush=True)


if __name__ == "__main__":
    main()
