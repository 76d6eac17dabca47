"""T-frame windows and object masks, built in batches straight from cached uint8 frames.

A window is identified by ``(video, centre)``; every frame except the first and last
``(T-1)//2`` of a video is a centre (METHOD.md section 5). :class:`WindowIndex` maps a
global window number to ``(video, centre)`` in O(1) with two flat arrays, so an epoch is
O(N) in the number of frames (the reference code's ``list.index`` made it O(N^2)).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .tracks import VideoTracks


class WindowIndex:
    """All windows of a list of videos: ``index[i] -> (video, centre)``."""

    def __init__(self, lengths: Sequence[int], frames: int):
        self.frames = frames
        self.half = frames // 2
        counts = [max(int(n) - 2 * self.half, 0) for n in lengths]
        self.video = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        self.centre = np.concatenate(
            [np.arange(self.half, self.half + c, dtype=np.int64) for c in counts] or [np.zeros(0, np.int64)])

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> tuple[int, int]:
        return int(self.video[i]), int(self.centre[i])

    def frame_indices(self, centre: int) -> range:
        return range(centre - self.half, centre + self.half + 1)


def epoch_order(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled window order of one epoch, a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, 0, epoch]).permutation(num_windows)


def gather_clips(arrays: Sequence[np.ndarray], index: WindowIndex, windows: np.ndarray) -> torch.Tensor:
    """Stack windows of uint8 frames ``(N, H, W, C)`` into a float clip batch ``(B, C, T, H, W)`` in [0, 1]."""
    h = index.half
    stacked = np.stack([arrays[index.video[w]][index.centre[w] - h: index.centre[w] + h + 1]
                        for w in windows])                      # (B, T, H, W, C) uint8
    clip = torch.from_numpy(stacked).permute(0, 4, 1, 2, 3)   # (B, C, T, H, W)
    return clip.float().div_(255.0).contiguous()


def box_to_pixels(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Normalised ``(x1, y1, x2, y2)`` -> pixel slice bounds covering the box (at least 1 px)."""
    x1 = int(np.clip(np.floor(box[0] * width), 0, width - 1))
    y1 = int(np.clip(np.floor(box[1] * height), 0, height - 1))
    x2 = int(np.clip(np.ceil(box[2] * width), x1 + 1, width))
    y2 = int(np.clip(np.ceil(box[3] * height), y1 + 1, height))
    return x1, y1, x2, y2


def object_masks(tracks: Sequence[VideoTracks | None], index: WindowIndex, windows: np.ndarray,
                 height: int, width: int, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
    """METHOD.md section 2: per window, one track present in all T frames, chosen uniformly
    at random; ``M = 1`` inside its box in each frame. ``(B, 1, T, H, W)``; a window with no
    common track (or a video without tracks) gets an empty mask. ``rngs[b]`` draws window b's
    choice, so a window's mask does not depend on which other windows share its batch."""
    mask = torch.zeros(len(windows), 1, index.frames, height, width)
    for b, w in enumerate(windows):
        vt = tracks[index.video[w]]
        if vt is None:
            continue
        frames = index.frame_indices(int(index.centre[w]))
        common = vt.common_tracks(frames)
        if not common:
            continue
        track = common[rngs[b].integers(len(common))]
        for t, box in enumerate(vt.boxes(track, frames)):
            x1, y1, x2, y2 = box_to_pixels(box, height, width)
            mask[b, 0, t, y1:y2, x1:x2] = 1.0
    return mask


def random_masks(frames: int, height: int, width: int, rngs: Sequence[np.random.Generator],
                 min_side: float = 0.1, max_side: float = 0.3) -> torch.Tensor:
    """A random box per window (sides uniform in [min_side, max_side] of the frame), the same
    in all T frames: the object-free control for the ablation. ``(B, 1, T, H, W)``."""
    mask = torch.zeros(len(rngs), 1, frames, height, width)
    for b, rng in enumerate(rngs):
        bh = max(1, int(round(rng.uniform(min_side, max_side) * height)))
        bw = max(1, int(round(rng.uniform(min_side, max_side) * width)))
        y = int(rng.integers(0, height - bh + 1))
        x = int(rng.integers(0, width - bw + 1))
        mask[b, 0, :, y:y + bh, x:x + bw] = 1.0
    return mask
