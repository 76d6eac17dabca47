"""Data path speed: window look-up at ShanghaiTech scale, and decode-once vs decode-every-access.

    python -m bench.speed.data_path [--ped2 ../shared/data/ped2]

1. A synthetic index of 300,000 frames (300 videos x 1,000; ``--videos``): time to build the
   window index and to iterate one shuffled epoch of look-ups (no decoding), against the reference code's
   ``list.index(filename)`` look-up, timed on a sample and extrapolated (it is O(N) per item).
2. Ped2 training frames (128x192 grey): building the memory-mapped cache once, then reading
   random T=3 windows from it, against decoding and resizing the T JPEG files on every
   access (what the reference code does).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import SHARED_DATA, machine
from ddlvad.data.clips import WindowIndex, epoch_order
from ddlvad.data.frames import FrameSpec, FrameStore
from ddlvad.data.layouts import index_dataset


def lookup_bench(videos: int = 300, frames: int = 1000, sample: int = 2000) -> None:
    n = videos * frames
    t0 = time.perf_counter()
    index = WindowIndex([frames] * videos, 3)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    order = epoch_order(len(index), 0, 0)
    checksum = 0
    for w in order:
        _, c = index[w]
        checksum += c
    t_epoch = time.perf_counter() - t0
    print(f"window index over {n:,} frames: build {t_build * 1e3:.1f} ms, one epoch of {len(index):,} "
          f"look-ups {t_epoch:.2f} s ({len(index) / t_epoch / 1e6:.2f} M look-ups/s)")
    # The reference code: a flat list of file names, each item found with list.index (O(N)).
    names = [f"/data/shanghaitech/training/frames/{v:02d}_{v:03d}/{f:04d}.jpg"
             for v in range(videos) for f in range(frames)]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, n, sample)
    t0 = time.perf_counter()
    for p in picks:
        names.index(names[p])
    per_item = (time.perf_counter() - t0) / sample
    print(f"reference list.index look-up: {per_item * 1e3:.2f} ms per item -> one epoch ~ {per_item * n / 3600:.1f} h "
          f"(extrapolated from {sample:,} items); ratio {per_item * n / t_epoch:,.0f}x")


def decode_bench(root: Path, windows: int = 300) -> None:
    spec = FrameSpec(128, 192, 1)
    index = index_dataset(root, "ped2", splits=("training",))
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        store = FrameStore.of_split(index, "training", spec, cache)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        store = FrameStore.of_split(index, "training", spec, cache)
        t_open = time.perf_counter() - t0
        win = WindowIndex(store.lengths, 3)
        picks = np.random.default_rng(0).integers(0, len(win), windows)
        t0 = time.perf_counter()
        for w in picks:
            v, c = win[w]
            np.array(store.arrays[v][c - 1:c + 2])
        t_mmap = (time.perf_counter() - t0) / windows
        t0 = time.perf_counter()
        for w in picks:
            v, c = win[w]
            files = store.videos[v].frame_files
            for f in files[c - 1:c + 2]:
                img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
                cv2.resize(img, (spec.width, spec.height), interpolation=cv2.INTER_AREA)
        t_decode = (time.perf_counter() - t0) / windows
    frames = int(store.lengths.sum())
    print(f"Ped2 training ({frames} frames -> {spec.height}x{spec.width}x{spec.channels}): cache built once in "
          f"{t_build:.1f} s, reopened in {t_open * 1e3:.0f} ms")
    print(f"per T=3 window: memory-mapped cache {t_mmap * 1e6:.0f} us vs decode+resize every access "
          f"{t_decode * 1e3:.2f} ms ({t_decode / t_mmap:.0f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ped2", default=str(SHARED_DATA / "ped2"))
    ap.add_argument("--videos", type=int, default=300, help="videos of the synthetic index (1,000 frames each)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    lookup_bench(args.videos)
    if Path(args.ped2).is_dir():
        decode_bench(Path(args.ped2))
    else:
        print(f"Ped2 not found at {args.ped2}: decode benchmark skipped")


if __name__ == "__main__":
    main()
