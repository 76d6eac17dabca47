"""T-frame windows, built in batches straight from cached uint8 frames.

A window is identified by ``(video, centre)``; every frame except the first and last
``(T-1)//2`` of a video is a centre (docs/method.md §5). :class:`WindowIndex` maps a
global window number to ``(video, centre)`` in O(1) with two flat arrays, so an epoch is
O(N) in the number of frames (the reference code's ``list.index`` made it O(N^2)).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .tracks import VideoTracks


@dataclass
class TrainingData:
    """Cached uint8 frames ``(N, H, W, C)`` of the training videos and their tracks (None: a
    video without objects)."""

    frames: Sequence[np.ndarray]
    tracks: Sequence[VideoTracks | None]
    video_ids: Sequence[str]
    scoring_frames: Callable[[], Sequence[np.ndarray]] | None = None
    """The same videos at the scoring size (``score.scale``, docs/method.md#scoring-options), read only
    when the detection threshold is calibrated; None: ``frames`` (frames are scored as trained)."""

    start_frames: Sequence[np.ndarray] | None = None
    """The same videos at the size training starts at (``train.start_scale``,
    docs/method.md#progressive); None: training starts at the size of ``frames``."""

    def at_start(self) -> TrainingData:
        """These videos at the size training starts at (``start_frames``; themselves without)."""
        if self.start_frames is None:
            return self
        return TrainingData(self.start_frames, self.tracks, self.video_ids, self.scoring_frames)

    def frames_to_score(self) -> Sequence[np.ndarray]:
        """The training videos at the size the model scores them."""
        return self.frames if self.scoring_frames is None else self.scoring_frames()


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


def recalibration_batches(arrays: Sequence[np.ndarray], index: WindowIndex, count: int, batch_size: int, seed: int
                          ) -> Iterator[torch.Tensor]:
    """Batches of ``batch_size`` clips ``(B, C, T, H, W)`` of ``count`` normal windows (at most all of
    them) drawn without replacement as a fixed function of ``seed``: what BatchNorm statistics are
    re-estimated on (:func:`ddlvad.models.recalibrate_batchnorm`), the same after a resume."""
    count = min(count, len(index))
    windows = np.random.default_rng([seed, 0xB4]).choice(len(index), count, replace=False) if count else []
    return (gather_clips(arrays, index, windows[i:i + batch_size]) for i in range(0, count, batch_size))
