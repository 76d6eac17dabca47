"""The pseudo-anomaly generator (docs/method.md §2): where, what and how much, in one object.

*Where*: the box of one tracked object present in all T frames of a window (or a random box,
``data.masks=random``), as a mask ``M``. *What*: uniform noise ``A ~ U[0, 1)``. *How much*:
the anomaly weight ``s = sigmoid(l)``, learned in ``ddl`` mode (Eqs. 1-2).

Every random draw of a window comes from its own numpy generator keyed by ``(seed, step,
position in the global batch)`` (:func:`window_rngs`), so a window's mask and noise do not
depend on the other windows of its batch, on the number of processes, or on whether the run
was resumed. The generator is a module (its one parameter is ``l``), so that
DistributedDataParallel averages ``l`` like any weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .config import Config
from .data.clips import WindowIndex
from .data.tracks import VideoTracks

RANDOM_BOX_SIDES = (0.1, 0.3)
"""Sides of a random box (``data.masks=random``), as fractions of the frame, drawn uniformly."""


class AnomalyWeight(nn.Module):
    """The anomaly weight ``s = sigmoid(l)`` with one scalar logit ``l`` (docs/method.md §2.3).

    ``trainable=False`` freezes ``l`` (the ``sdl`` ablation: s fixed at sigmoid(init_logit)).
    ``l`` is a registered parameter, so it is saved in the state dict with the network.
    """

    def __init__(self, init_logit: float = 0.0, trainable: bool = True):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(float(init_logit)), requires_grad=trainable)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)


def blend(clip: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Paste weighted noise into the mask: ``X_A`` of the clip's shape.

    clip ``X``: ``(B, C, T, H, W)`` in [0, 1]; mask ``M``: ``(B, 1, T, H, W)`` of 0/1 (broadcast
    over channels); weight ``s``: scalar in (0, 1); noise ``A``: the clip's shape.
    """
    blended = (1 - weight) * clip + weight * noise     # Eq. 1: Xbar_A = (1 - s) X + s A
    return (1 - mask) * clip + mask * blended          # Eq. 2: X_A = (1 - M) X + M Xbar_A


@dataclass
class PseudoAnomaly:
    """The random part of one batch's pseudo anomalies."""

    mask: torch.Tensor
    """``M``: ``(B, 1, T, H, W)`` of 0/1; a window without a usable object has an empty mask."""
    noise: torch.Tensor
    """``A``: ``(B, C, T, H, W)`` uniform in [0, 1)."""

    @property
    def masked_pixels(self) -> float:
        return float(self.mask.sum())

    def to(self, device: torch.device) -> PseudoAnomaly:
        return PseudoAnomaly(self.mask.to(device), self.noise.to(device))


class PseudoAnomalyGenerator(nn.Module):
    """Draws masks and noise for a batch of windows and blends them in with the learned weight.

    ``cfg``: the run's config (``ddl`` for the weight, ``data`` for the frame size and the mask
    source); ``tracks``: per training video its tracks (None: no object); ``index``: the
    windows of those videos.
    """

    def __init__(self, cfg: Config, tracks: Sequence[VideoTracks | None], index: WindowIndex):
        super().__init__()
        self.weight = AnomalyWeight(cfg.ddl.init_logit, trainable=cfg.ddl.mode == "ddl")
        self.active = cfg.ddl.mode != "recon"
        self.source = cfg.data.masks
        self.size = (cfg.data.height, cfg.data.width)
        self.tracks = list(tracks)
        self.index = index

    def draw(self, windows: np.ndarray, rngs: Sequence[np.random.Generator], clip_shape: torch.Size
             ) -> PseudoAnomaly | None:
        """Mask and noise of ``windows`` (window ``b`` drawn from ``rngs[b]``: first its mask,
        then its noise); None in ``recon`` mode, which has no pseudo anomalies."""
        if not self.active:
            return None
        h, w = self.size
        if self.source == "tracks":
            mask = object_masks(self.tracks, self.index, windows, h, w, rngs)
        else:
            mask = random_masks(self.index.frames, h, w, rngs)
        return PseudoAnomaly(mask, uniform_noise(clip_shape, rngs))

    def forward(self, clip: torch.Tensor, anomaly: PseudoAnomaly) -> torch.Tensor:
        """``X_A`` (Eqs. 1-2) with the current weight ``s``."""
        return blend(clip, anomaly.mask, self.weight(), anomaly.noise)


# ---------------------------------------------------------------------- the draws
def window_rngs(seed: int, step: int, positions) -> list[np.random.Generator]:
    """One generator per window of a batch, keyed by (seed, step, position in the global batch)."""
    return [np.random.default_rng([seed, 1, step, int(p)]) for p in positions]


def uniform_noise(shape: torch.Size, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
    """``A ~ U[0, 1)`` of ``shape`` ``(B, ...)``, float32, sample b drawn from ``rngs[b]``
    (independently per channel, frame and pixel: docs/method.md §2.4)."""
    per_sample = tuple(shape[1:])
    return torch.from_numpy(np.stack([r.random(per_sample, dtype=np.float32) for r in rngs]))


def box_to_pixels(box: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Normalised ``(x1, y1, x2, y2)`` -> pixel slice bounds covering the box (at least 1 px)."""
    x1 = int(np.clip(np.floor(box[0] * width), 0, width - 1))
    y1 = int(np.clip(np.floor(box[1] * height), 0, height - 1))
    x2 = int(np.clip(np.ceil(box[2] * width), x1 + 1, width))
    y2 = int(np.clip(np.ceil(box[3] * height), y1 + 1, height))
    return x1, y1, x2, y2


def object_masks(tracks: Sequence[VideoTracks | None], index: WindowIndex, windows: np.ndarray,
                 height: int, width: int, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
    """docs/method.md §2.2: per window, one track present in all T frames, chosen uniformly
    at random; ``M = 1`` inside its box in each frame. ``(B, 1, T, H, W)``; a window with no
    common track (or a video without tracks) gets an empty mask. ``rngs[b]`` draws window b's
    choice."""
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
                 sides: tuple[float, float] = RANDOM_BOX_SIDES) -> torch.Tensor:
    """A random box per window (each side uniform in ``sides`` of the frame), the same in all T
    frames: the object-free control for the ablation. ``(B, 1, T, H, W)``."""
    mask = torch.zeros(len(rngs), 1, frames, height, width)
    for b, rng in enumerate(rngs):
        bh = max(1, int(round(rng.uniform(*sides) * height)))
        bw = max(1, int(round(rng.uniform(*sides) * width)))
        y = int(rng.integers(0, height - bh + 1))
        x = int(rng.integers(0, width - bw + 1))
        mask[b, 0, :, y:y + bh, x:x + bw] = 1.0
    return mask
