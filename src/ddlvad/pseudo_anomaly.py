"""The pseudo-anomaly generator (docs/method.md §2): where, what and how much, in one object.

*Where*: the box of one tracked object present in all T frames of a window (or a random box,
``data.masks=random``), as a mask ``M``. *What*: uniform noise ``A ~ U[0, 1)`` (per pixel,
or per block with ``ddl.noise=blocks``, docs/method.md#block-noise). *How much*: the anomaly weight
``s = sigmoid(l)``, learned in ``ddl`` mode (Eqs. 1-2). Beyond the paper, ``ddl.paste``
replaces the noise of some windows by the object itself, moved to a place where no training
object has been and pasted at full weight (docs/method.md#paste).

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
FOREGROUND_DIFFERENCE = 0.1
"""A pixel of an object's box belongs to the object (``ddl.paste``) where it differs from the
video's median frame by more than this (intensity in [0, 1], largest over channels)."""
MIN_FOREGROUND = 16
"""Fewer object pixels than this in the middle frame: the window keeps its noise."""


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
    """``A``: ``(B, C, T, H, W)`` uniform in [0, 1) (a pasted window: the clip, moved)."""
    pasted: torch.Tensor | None = None
    """``(B,)`` bool: windows whose ``A`` is their moved object, blended at weight 1
    (``ddl.paste``); None: all noise."""

    @property
    def masked_pixels(self) -> float:
        return float(self.mask.sum())

    def to(self, device: torch.device) -> PseudoAnomaly:
        pasted = None if self.pasted is None else self.pasted.to(device)
        return PseudoAnomaly(self.mask.to(device), self.noise.to(device), pasted)


class PseudoAnomalyGenerator(nn.Module):
    """Draws masks and noise for a batch of windows and blends them in with the learned weight.

    ``cfg``: the run's config (``ddl`` for the weight, ``data`` for the frame size and the mask
    source); ``tracks``: per training video its tracks (None: no object); ``index``: the
    windows of those videos. :meth:`for_validation` makes the one the validation signal uses.
    """

    def __init__(self, cfg: Config, tracks: Sequence[VideoTracks | None], index: WindowIndex,
                 frames: Sequence[np.ndarray] | None = None, *, source: str | None = None, moves: bool = True):
        super().__init__()
        self.weight = AnomalyWeight(cfg.ddl.init_logit, trainable=cfg.ddl.mode == "ddl")
        self.active = cfg.ddl.mode != "recon"
        self.source = source or cfg.data.masks
        self.tracks = list(tracks)
        self.index = index
        self.paste = cfg.ddl.paste if self.active and moves else 0.0
        self.cell = cfg.ddl.noise_block
        self.noise_start = cfg.ddl.start_step
        """The first step with noise (before it: reconstruction only, docs/method.md#start-step)."""
        self.paste_start = cfg.ddl.start_step if cfg.ddl.paste_start is None or not self.paste else cfg.ddl.paste_start
        """The first step with moved objects (before ``ddl.start_step``: moved objects only)."""
        self.mover: ObjectMover | None = None
        self.resize(cfg.data.height, cfg.data.width, frames)

    @classmethod
    def for_validation(cls, cfg: Config, tracks: Sequence[VideoTracks | None], index: WindowIndex
                       ) -> PseudoAnomalyGenerator:
        """The generator of the validation's pseudo anomalies (:mod:`ddlvad.validation`): noise in
        the box of a tracked object whatever ``data.masks`` and ``ddl.paste`` say, drawn with
        :meth:`fixed` and blended at a given weight."""
        return cls(cfg, tracks, index, source="tracks", moves=False)

    def resize(self, height: int, width: int, frames: Sequence[np.ndarray] | None = None) -> None:
        """Draw for frames of ``height x width`` (``frames``: the training videos at that size,
        which ``ddl.paste`` moves objects in); the anomaly weight stays (``train.start_scale``)."""
        self.size = (height, width)
        if self.paste:
            if frames is None:
                raise ValueError("ddl.paste needs the training frames")
            self.mover = ObjectMover(frames, self.tracks, height, width)

    def noised(self, step: int) -> bool:
        """Whether step ``step`` has noise pseudo anomalies and the distinction loss (docs/method.md#start-step)."""
        return step >= self.noise_start

    def draw_at(self, step: int, windows: np.ndarray, rngs: Sequence[np.random.Generator],
                clip: torch.Tensor) -> PseudoAnomaly | None:
        """The pseudo anomalies of training step ``step``: :meth:`draw` once the noise has started,
        moved objects only from ``ddl.paste_start``, None before either."""
        if not self.noised(step) and step < self.paste_start:
            return None
        return self.draw(windows, rngs, clip, noise=self.noised(step))

    def draw(self, windows: np.ndarray, rngs: Sequence[np.random.Generator], clip: torch.Tensor,
             noise: bool = True) -> PseudoAnomaly | None:
        """Mask and noise of ``windows`` of ``clip`` (window ``b`` drawn from ``rngs[b]``: first
        its mask, then (``ddl.paste``) whether and where its object moves, then its noise);
        None in ``recon`` mode, which has no pseudo anomalies.

        ``noise=False`` (the steps before ``ddl.start_step``): moved objects only, every window
        whose object can move; the others get an empty mask. None without ``ddl.paste``."""
        if not self.active or not (noise or self.mover is not None):
            return None
        mask = self.masks(windows, rngs)
        if self.mover is None:
            return PseudoAnomaly(mask, self.noise(clip.shape, rngs))
        moves = [self.mover.move(clip[b], mask[b], int(self.index.video[wi]), rng)
                 if not noise or rng.random() < self.paste else None
                 for b, (wi, rng) in enumerate(zip(windows, rngs))]
        values = self.noise(clip.shape, rngs) if noise else torch.zeros_like(clip)  # under empty masks only
        pasted = torch.tensor([m is not None or not noise for m in moves])
        for b, move in enumerate(moves):
            if move is not None:
                mask[b], values[b] = move
            elif not noise:
                mask[b] = 0.0
        return PseudoAnomaly(mask, values, pasted)

    def fixed(self, windows: np.ndarray, rngs: Sequence[np.random.Generator], shape: torch.Size) -> PseudoAnomaly:
        """Noise pseudo anomalies for every one of ``windows`` (clips of ``shape``): each in its
        mask (:meth:`masks`, a random box where the window has no object), no moved objects. The
        validation signal draws them once (:mod:`ddlvad.validation`)."""
        return PseudoAnomaly(self.masks(windows, rngs, fill_empty=True), self.noise(shape, rngs))

    def masks(self, windows: np.ndarray, rngs: Sequence[np.random.Generator], fill_empty: bool = False) -> torch.Tensor:
        """``M`` ``(B, 1, T, H, W)`` of ``windows``: the box of one common track (docs/method.md §2.2) or
        a random box (``data.masks=random``); ``fill_empty``: a random box where a window has no
        common track. Window b's choices come from ``rngs[b]``."""
        h, w = self.size
        if self.source == "tracks":
            mask = object_masks(self.tracks, self.index, windows, h, w, rngs)
        else:
            mask = random_masks(self.index.frames, h, w, rngs)
        empty = mask.flatten(1).sum(1) == 0
        if fill_empty and empty.any():
            mask[empty] = random_masks(self.index.frames, h, w, [r for r, e in zip(rngs, empty) if e])
        return mask

    def noise(self, shape: torch.Size, rngs: Sequence[np.random.Generator]) -> torch.Tensor:
        """``A`` of ``shape`` ``(B, C, T, H, W)`` (docs/method.md §2.4; ``ddl.noise``), window b from ``rngs[b]``."""
        return uniform_noise(shape, rngs, self.cell)

    def forward(self, clip: torch.Tensor, anomaly: PseudoAnomaly, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``X_A`` (Eqs. 1-2) with the current weight ``s`` (1 for a moved object), or with the
        fixed ``weight`` given (the validation's)."""
        if weight is not None:
            return blend(clip, anomaly.mask, weight, anomaly.noise)
        weight = self.weight()
        if anomaly.pasted is not None:
            weight = torch.where(anomaly.pasted, torch.ones_like(weight), weight).view(-1, 1, 1, 1, 1)
        return blend(clip, anomaly.mask, weight, anomaly.noise)


class ObjectMover:
    """``ddl.paste`` (docs/method.md#paste): an object's pixels moved, in all T frames by the
    same offset, to a place where no training object has been.

    The object's pixels are those of its box that differ from the video's median frame by more
    than :data:`FOREGROUND_DIFFERENCE`; "no object has been" is a box of the same size in the
    middle frame that overlaps no tracked box of any training frame.
    """

    def __init__(self, frames: Sequence[np.ndarray], tracks: Sequence[VideoTracks | None],
                 height: int, width: int):
        self.backgrounds = [torch.from_numpy(np.median(f[:: max(1, len(f) // 50)], axis=0).astype(np.float32) / 255)
                            .permute(2, 0, 1) for f in frames]                    # (C, H, W) per video
        occupied = np.zeros((height, width), np.int64)
        for vt in tracks:
            for box in ([] if vt is None else vt.rows[:, 2:6]):
                x1, y1, x2, y2 = box_to_pixels(box, height, width)
                occupied[y1:y2, x1:x2] = 1
        self.integral = np.pad(occupied.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    def free_corners(self, bh: int, bw: int) -> np.ndarray:
        """``(n, 2)`` top-left corners ``(y, x)`` of the ``bh x bw`` boxes inside the frame that
        overlap no training object."""
        ii = self.integral
        inside = ii[bh:, bw:] - ii[:-bh, bw:] - ii[bh:, :-bw] + ii[:-bh, :-bw]
        return np.argwhere(inside == 0)

    def move(self, clip: torch.Tensor, box_mask: torch.Tensor, video: int, rng: np.random.Generator
             ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mask, A)`` of one window ``clip (C, T, H, W)`` whose object's boxes are
        ``box_mask (1, T, H, W)``: the object's pixels at their new place and the clip moved
        there; None when the object has too few pixels or no free place fits it."""
        t = clip.shape[1] // 2
        foreground = ((clip - self.backgrounds[video][:, None]).abs().amax(0, keepdim=True)
                      > FOREGROUND_DIFFERENCE) & (box_mask > 0)                  # (1, T, H, W)
        if int(foreground[0, t].sum()) < MIN_FOREGROUND:
            return None
        ys, xs = torch.nonzero(box_mask[0, t], as_tuple=True)
        y0, x0 = int(ys.min()), int(xs.min())
        corners = self.free_corners(int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1)
        if not len(corners):
            return None
        y, x = corners[rng.integers(len(corners))]
        dy, dx = int(y) - y0, int(x) - x0
        return shift(foreground.float(), dy, dx), shift(clip, dy, dx)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x (..., H, W)`` moved by ``dy`` rows and ``dx`` columns; what leaves the frame is
    dropped, what enters is 0."""
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        x[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


# ---------------------------------------------------------------------- the draws
def window_rngs(seed: int, step: int, positions) -> list[np.random.Generator]:
    """One generator per window of a batch, keyed by (seed, step, position in the global batch)."""
    return [np.random.default_rng([seed, 1, step, int(p)]) for p in positions]


def uniform_noise(shape: torch.Size, rngs: Sequence[np.random.Generator], cell: int = 1) -> torch.Tensor:
    """``A ~ U[0, 1)`` of ``shape`` ``(B, C, T, H, W)``, float32, sample b drawn from ``rngs[b]``
    (independently per channel, frame and pixel: docs/method.md §2.4). ``cell > 1``
    (``ddl.noise=blocks``, docs/method.md#block-noise): one draw per ``cell`` x ``cell`` block of a frame, the
    same distribution at a coarser grain."""
    *lead, h, w = shape[1:]
    draws = np.stack([r.random((*lead, -(-h // cell), -(-w // cell)), dtype=np.float32) for r in rngs])
    if cell > 1:  # each draw fills its block; the last row and column of blocks are cut to the frame
        draws = draws.repeat(cell, -2).repeat(cell, -1)[..., :h, :w]
    return torch.from_numpy(np.ascontiguousarray(draws))


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
