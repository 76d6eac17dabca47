"""Scoring frames with a trained model (docs/method.md §6): the one scorer.

The path from frames to scores, top to bottom, each step in one place:

1. :func:`sliding_windows` cuts a stream of frames into batches of T-frame windows;
2. :func:`window_errors` turns a batch of windows into error maps ``e(X_t, f(X))`` (and the
   reconstructions), with flip averaging as an option: used by :class:`Scorer`, by the
   validation signal (:mod:`ddlvad.validation`), by the exported model (:mod:`ddlvad.exporter`)
   and by the reference path :func:`score_video_naive`;
3. :func:`worst_patches` (and :func:`frame_scores`, its score alone): a frame's score is the
   largest mean of its error map over ``patch x patch`` patches, on the aligned grid and
   (``score.shifted_grid``) the grid shifted by ``patch / 2``;
4. :func:`anomaly_map`: the map regions and pixel metrics are read from, computed once per
   scored frame by :class:`Scorer` (:attr:`ScoredFrame.anomaly_map`).

:class:`Scorer` joins them and serves evaluation, detection on files and live streams and
threshold calibration.

The first and last ``(T-1)/2`` frames of a video have no full window: their score is NaN.
The encoder sees frames one at a time, so each frame's encoder outputs are computed once and
shared by the T windows that contain it (docs/method.md §3).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import ScoreConfig
from .loss import pixel_error

Item = TypeVar("Item")


# ---------------------------------------------------------------------- the patch score
def patch_grids(error: torch.Tensor, score: ScoreConfig) -> list[tuple[int, torch.Tensor]]:
    """``(B, H, W)`` error maps -> ``[(offset, means (B, gh, gw))]``, one entry per patch grid.

    The aligned grid covers whole patches from the top-left corner; the shifted grid is the
    same on the map cropped by ``patch // 2`` on each side (when a whole patch still fits).
    """
    p = score.patch
    x = error.unsqueeze(1)                                                   # (B, 1, H, W)
    grids = [(0, F.avg_pool2d(x, p, stride=p).squeeze(1))]                   # (B, H//p, W//p)
    if score.shifted_grid:
        o = p // 2
        inner = x[:, :, o:x.shape[2] - o, o:x.shape[3] - o]
        if inner.shape[2] >= p and inner.shape[3] >= p:
            grids.append((o, F.avg_pool2d(inner, p, stride=p).squeeze(1)))
    return grids


def worst_patches(error: torch.Tensor, score: ScoreConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` error maps -> each map's largest patch mean ``(B,)`` (the frame score) and
    that patch as ``(B, 4)`` int64 boxes ``(x, y, w, h)`` in error-map pixels (ties: the
    aligned grid, then the first patch in row order). Traceable (no data-dependent indexing)."""
    best: torch.Tensor | None = None
    corner: torch.Tensor | None = None
    for offset, means in patch_grids(error, score):
        value, flat = means.flatten(1).max(1)                                # (B,), (B,)
        gw = means.shape[2]
        xy = torch.stack([offset + (flat % gw) * score.patch,
                          offset + torch.div(flat, gw, rounding_mode="floor") * score.patch], 1)  # (B, 2)
        if best is None or corner is None:
            best, corner = value, xy
        else:
            take = value > best
            best = torch.where(take, value, best)
            corner = torch.where(take[:, None], xy, corner)
    assert best is not None and corner is not None
    return best, torch.cat([corner, torch.full_like(corner, score.patch)], 1)


def anomaly_map(error: torch.Tensor, score: ScoreConfig) -> torch.Tensor:
    """``(B, H, W)`` error maps -> ``(B, H, W)`` anomaly maps: each pixel gets the largest mean
    of a ``patch x patch`` window (any position, stride 1) that contains it.

    It is the map regions and pixel-level metrics are read from: a pixel is anomalous at
    threshold ``t`` when some patch around it has a mean error above ``t``, so its connected
    components are unions of anomalous patches, and its maximum is the frame's worst patch at
    stride 1 (at least the frame score, whose patches lie on the two grids only).
    """
    p = score.patch
    x = error.unsqueeze(1)                                                   # (B, 1, H, W)
    means = F.avg_pool2d(x, p, stride=1)                                     # (B, 1, H-p+1, W-p+1)
    covered = F.max_pool2d(F.pad(means, (p - 1, p - 1, p - 1, p - 1), value=float("-inf")), p, stride=1)
    return covered.squeeze(1)                                                # (B, H, W)


def frame_scores(error: torch.Tensor, score: ScoreConfig) -> torch.Tensor:
    """``(B, H, W)`` error maps -> frame scores ``(B,)``: the worst patch mean (see :func:`worst_patches`)."""
    return worst_patches(error, score)[0]


# ---------------------------------------------------------------------- the error maps
def window_errors(model: nn.Module, frames: torch.Tensor, stride: int = 1, flip: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Error maps and reconstructions of the T-frame windows of ``frames`` that start every
    ``stride`` frames: ``((B, H, W) error e(X_t, f(X)), (B, C, H, W) reconstruction f(X))``.

    ``frames``: ``(N, C, H, W)`` float in [0, 1] on the model's device. ``stride=1``: the
    overlapping windows of consecutive frames, ``B = N - T + 1`` (each frame is encoded once and
    its encoder outputs are shared by the T windows that contain it, docs/method.md §3);
    ``stride=T``: ``B = N / T`` separate clips laid end to end (:func:`clip_errors`). The model
    should be in eval mode. With ``flip`` (beyond the paper, docs/method.md#scoring-options) the error is
    the mean of the maps of the frames and of their mirror images (mirrored back); the
    reconstruction stays that of the frames as given.
    """
    feats = model.encode_frames(frames)                                          # per level (N, ch, h, w)
    mirrored = model.encode_frames(frames.flip(-1)) if flip else None
    return errors_from_features(model, frames, feats, stride, mirrored)


def errors_from_features(model: nn.Module, frames: torch.Tensor, feats: list[torch.Tensor], stride: int,
                         mirrored: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`window_errors` from the frames' encoder outputs ``feats`` (per level ``(N, ch, h, w)``,
    as ``model.encode_frames(frames)`` gives them; ``mirrored``: those of ``frames.flip(-1)``, for
    flip averaging). The windows, the decoder and the error of every path go through here;
    :class:`LiveScorer` keeps encoder outputs across calls and comes in here too."""
    error, recon = _decode_errors(model, frames, feats, stride)
    if mirrored is not None:
        flipped, _ = _decode_errors(model, frames.flip(-1), mirrored, stride)
        error = (error + flipped.flip(-1)) / 2
    return error, recon


def _decode_errors(model: nn.Module, frames: torch.Tensor, feats: list[torch.Tensor], stride: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    T = int(model.frames)
    if (frames.shape[0] - T) % stride:
        raise ValueError(f"{frames.shape[0]} frames do not split into windows of {T} every {stride}")

    def nth(x: torch.Tensor, k: int) -> torch.Tensor:  # frame k of every window; ends counted from the
        return x[k:(k - T + 1) or None:stride]          # back, so a traced export keeps B dynamic

    windows = [torch.stack([nth(f, k) for k in range(T)], dim=2) for f in feats]  # (B, ch, T, h, w)
    recon = model.decode_windows(windows)                                        # (B, C, H, W)
    return pixel_error(nth(frames, T // 2), recon), recon


def clip_errors(model: nn.Module, clips: torch.Tensor, flip: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`window_errors` of separate clips ``(B, C, T, H, W)``: ``((B, H, W), (B, C, H, W))``."""
    frames = rearrange(clips, "b c t h w -> (b t) c h w")           # (B*T, C, H, W), clips end to end
    return window_errors(model, frames, stride=clips.shape[2], flip=flip)


# ---------------------------------------------------------------------- the sliding window
@dataclass
class WindowBatch(Generic[Item]):
    """Consecutive windows of a stream, or one edge frame that no window is centred on."""

    start: int
    """Source index of the first centre (of the edge frame when ``edge``)."""
    count: int
    """Number of windows, centred at ``start .. start + count - 1``; 0 for an edge frame."""
    items: list[Item]
    """``count + T - 1`` consecutive items from ``start - (T-1)/2`` (the edge frame alone when ``edge``)."""

    @property
    def edge(self) -> bool:
        return self.count == 0


def sliding_windows(items: Iterable[Item], frames: int, batch: int) -> Iterator[WindowBatch[Item]]:
    """Cut a stream of items (frames) into batches of ``batch`` T-frame windows, in source order.

    Holds at most ``batch + T - 1`` items: a batch is yielded as soon as the last frame of its
    last window has arrived, and each edge frame (first and last ``(T-1)/2``) as soon as it is
    known to be one. Memory does not grow with the length of the stream.
    """
    h = frames // 2
    held: list[Item] = []   # items first .. n-1
    first = 0               # source index of held[0]
    n = 0                   # items read so far
    centre = h              # next frame to score
    for item in items:
        held.append(item)
        n += 1
        if n <= h:  # leading edge frame: no window will ever be centred on it
            yield WindowBatch(n - 1, 0, [item])
        while n - h - centre >= batch:  # `batch` windows have all their frames
            yield WindowBatch(centre, batch, held[centre - h - first: centre + batch + h - first])
            centre += batch
            drop = centre - h - first  # items no later window needs
            del held[:drop]
            first += drop
    if n - h > centre:
        yield WindowBatch(centre, n - h - centre, held[centre - h - first: n - first])
        centre = n - h
    for index in range(max(centre, h), n):  # trailing edge frames
        yield WindowBatch(index, 0, [held[index - first]])


# ---------------------------------------------------------------------- the scorer
@dataclass
class ScoredFrame:
    """One frame of a scored stream."""

    index: int
    """Index of the frame in the source, from 0."""
    score: float
    """Worst patch mean of the error map; NaN for the ``(T-1)/2`` edge frames at each end."""
    error: torch.Tensor | None
    """``(H, W)`` float32 error ``e(X_t, f(X))`` at the model's resolution; None for edge frames."""
    box: tuple[int, int, int, int] | None
    """The worst patch ``(x, y, w, h)`` in error-map pixels; None for edge frames."""
    item: Any
    """What the stream gave for this frame (e.g. the source image)."""
    anomaly_map: torch.Tensor | None = None
    """``(H, W)`` float32 :func:`anomaly_map` of :attr:`error`; None for edge frames and when the
    stream was asked for scores only (``maps=False``)."""


class Scorer:
    """A trained model and its ``score`` settings: frames in, scored frames out.

    ``batch_size``: windows per forward pass (default ``score.batch_size``). ``weights``: an
    ``(H, W)`` map every error map is multiplied by before scoring (``score.position``,
    :func:`position_weights`; None: the error as it is). The model is put in eval mode while
    scoring and returned to its previous mode afterwards.
    """

    def __init__(self, model: nn.Module, score: ScoreConfig, batch_size: int | None = None,
                 weights: torch.Tensor | None = None) -> None:
        self.model = model
        self.cfg = score
        self.batch_size = batch_size or score.batch_size
        self.weights = weights

    @property
    def frames(self) -> int:
        """Window length T."""
        return int(self.model.frames)

    def stream(self, items: Iterable[Any], prepare: Callable[[Any, int], np.ndarray] | None = None,
               batch_size: int | None = None, maps: bool = True) -> Iterator[ScoredFrame]:
        """A :class:`ScoredFrame` per item, in order, as soon as its window is complete.

        ``prepare(item, index)`` turns an item into a ``(H, W, C)`` uint8 frame in the model's
        spec (default: the item is one already). ``maps``: also compute each scored frame's
        :func:`anomaly_map` (once, for the whole batch).
        """
        prepare = prepare or (lambda item, index: item)
        prepared = ((prepare(item, i), item) for i, item in enumerate(items))
        was_training = self.model.training
        self.model.eval()
        try:
            for part in sliding_windows(prepared, self.frames, batch_size or self.batch_size):
                if part.edge:
                    yield ScoredFrame(part.start, math.nan, None, None, part.items[0][1])
                    continue
                error = self.errors(np.stack([frame for frame, _ in part.items]))       # (count, H, W)
                scores, boxes = worst_patches(error, self.cfg)
                heat = anomaly_map(error, self.cfg) if maps else None                     # (count, H, W)
                h = self.frames // 2
                for k in range(part.count):
                    yield ScoredFrame(part.start + k, float(scores[k]), error[k], tuple(int(v) for v in boxes[k]),
                                      part.items[k + h][1], None if heat is None else heat[k])
        finally:
            self.model.train(was_training)

    @torch.inference_mode()
    def errors(self, frames: np.ndarray) -> torch.Tensor:
        """Error maps ``(N - T + 1, H, W)`` (on the CPU) of every full window of consecutive
        uint8 frames ``(N, H, W, C)``: :func:`window_errors`, with ``score.flip``."""
        x = to_tensor(frames).to(_device(self.model))                 # (N, C, H, W)
        error = window_errors(self.model, x, 1, self.cfg.flip)[0].cpu()
        return error if self.weights is None else error * self.weights

    def score_video(self, frames: np.ndarray) -> np.ndarray:
        """Scores ``(N,)`` float64 of uint8 frames ``(N, H, W, C)``; NaN for the edge frames."""
        return np.array([r.score for r in self.stream(frames, maps=False)], dtype=np.float64)


class LiveScorer:
    """Several live streams that share one model, scored a frame at a time as frames arrive (the
    cameras of ``ddlvad watch``).

    Each frame is encoded once, in one encoder pass with the other streams' new frames, and its
    encoder outputs are kept for the T windows that contain it (docs/method.md §3); the windows
    of all the streams that have one complete are decoded in one pass (:func:`errors_from_features`).
    A stream's result for a new frame is the :class:`ScoredFrame` of the window that it completes,
    centred ``(T-1)/2`` frames earlier. :meth:`reset` forgets a stream's frames (after a
    reconnect, so that no window spans the gap). ``keep``: per stream an optional ``(H, W)`` 0/1
    float mask multiplied into the error before scoring (``ddlvad watch``'s ignore polygons).
    """

    def __init__(self, model: nn.Module, score: ScoreConfig, weights: torch.Tensor | None = None) -> None:
        self.model = model.eval()
        self.cfg = score
        self.weights = weights
        """As :class:`Scorer`'s (``score.position``)."""
        self.history: dict[Any, deque[tuple[int, Any, torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None]]] = {}

    @property
    def frames(self) -> int:
        return int(self.model.frames)

    def reset(self, stream: Any) -> None:
        self.history.pop(stream, None)

    @torch.inference_mode()
    def step(self, new: dict[Any, tuple[int, np.ndarray, Any]], keep: dict[Any, torch.Tensor | None] | None = None
             ) -> dict[Any, ScoredFrame]:
        """``new``: per stream ``(frame index, (H, W, C) uint8 frame in the model's spec, item)``.
        Returns the scored frame of each stream whose new frame completes a window."""
        if not new:
            return {}
        T, keep = self.frames, keep or {}
        streams = list(new)
        x = to_tensor(np.stack([new[s][1] for s in streams])).to(_device(self.model))      # (K, C, H, W)
        feats = self.model.encode_frames(x)                                                 # per level (K, ...)
        mirrored = self.model.encode_frames(x.flip(-1)) if self.cfg.flip else None
        for k, s in enumerate(streams):
            held = self.history.setdefault(s, deque(maxlen=T))
            held.append((new[s][0], new[s][2], x[k], [f[k] for f in feats],
                         None if mirrored is None else [f[k] for f in mirrored]))
        ready = [s for s in streams if len(self.history[s]) == T]
        if not ready:
            return {}
        frames = torch.stack([e[2] for s in ready for e in self.history[s]])               # (R*T, C, H, W)
        levels = range(len(feats))
        window_feats = [torch.stack([e[3][lv] for s in ready for e in self.history[s]]) for lv in levels]
        window_mirrored = None if mirrored is None else \
            [torch.stack([e[4][lv] for s in ready for e in self.history[s]]) for lv in levels]
        error, _ = errors_from_features(self.model, frames, window_feats, T, window_mirrored)  # (R, H, W)
        error = error.cpu()
        if self.weights is not None:
            error = error * self.weights
        for i, s in enumerate(ready):
            if keep.get(s) is not None:
                error[i] *= keep[s]
        scores, boxes = worst_patches(error, self.cfg)
        heat = anomaly_map(error, self.cfg)
        out = {}
        for i, s in enumerate(ready):
            index, item = self.history[s][T // 2][:2]
            out[s] = ScoredFrame(index, float(scores[i]), error[i], tuple(int(v) for v in boxes[i]), item, heat[i])
        return out


def calibrate_thresholds(scorer: Scorer, videos: Sequence[np.ndarray]) -> dict:
    """The detection thresholds of a model from normal frames: up to ``score.threshold_frames``
    frames, the first of each video in ``videos`` (uint8 ``(N, H, W, C)``). ``value``: the
    ``score.threshold_percentile`` of their frame scores; ``region``: that of the maxima of
    their anomaly maps (a pixel above it belongs to an anomalous region)."""
    sc = scorer.cfg
    per_video = max(scorer.frames + 1, sc.threshold_frames // max(len(videos), 1))
    scores, peaks = [], []
    for frames in videos:
        for r in scorer.stream(np.asarray(frames[:per_video])):
            if r.anomaly_map is not None:
                scores.append(r.score)
                peaks.append(float(r.anomaly_map.max()))
    if not scores:
        return {"value": None, "region": None, "percentile": sc.threshold_percentile, "frames": 0}
    return {"value": float(np.percentile(scores, sc.threshold_percentile)),
            "region": float(np.percentile(peaks, sc.threshold_percentile)),
            "percentile": sc.threshold_percentile, "frames": len(scores), "source": "training frames"}


def position_weights(scorer: Scorer, videos: Sequence[np.ndarray]) -> torch.Tensor:
    """``score.position=mean`` (beyond the paper, docs/method.md#position): ``(H, W)`` weights that
    bring every place of the frame to the same normal error level. The mean error map of normal
    frames (the calibration frames of :func:`calibrate_thresholds`, scored without weights) is
    smoothed over ``patch x patch`` windows; each place's weight is the frame's overall mean
    error over that place's (so a place at the usual level keeps its errors, one where the model
    always errs twice as much has them halved). Label-free."""
    plain = Scorer(scorer.model, scorer.cfg, scorer.batch_size)
    per_video = max(plain.frames + 1, scorer.cfg.threshold_frames // max(len(videos), 1))
    total, count = None, 0
    for frames in videos:
        for r in plain.stream(np.asarray(frames[:per_video]), maps=False):
            if r.error is not None:
                total = r.error.double() if total is None else total + r.error
                count += 1
    if total is None:
        raise ValueError("no normal frame to measure the error of each place on")
    p = scorer.cfg.patch
    mean = (total / count).float()[None, None]                                    # (1, 1, H, W)
    local = F.avg_pool2d(F.pad(mean, (p // 2, p - 1 - p // 2, p // 2, p - 1 - p // 2), mode="replicate"), p, stride=1)
    overall = float(mean.mean())
    return (overall / local.clamp_min(1e-3 * overall))[0, 0]                     # (H, W)


def score_video(model: nn.Module, frames: np.ndarray, score: ScoreConfig, batch_size: int | None = None
                ) -> np.ndarray:
    """``Scorer(model, score, batch_size).score_video(frames)``."""
    return Scorer(model, score, batch_size).score_video(frames)


@torch.inference_mode()
def score_video_naive(model: nn.Module, frames: np.ndarray, score: ScoreConfig, batch_size: int = 16) -> np.ndarray:
    """The straightforward way: every window as a separate clip (the encoder runs T times per
    frame, no streaming), through the same :func:`window_errors`. The reference that tests and
    benchmarks hold :class:`Scorer`'s sliding windows and encoder reuse against."""
    was_training = model.training
    model.eval()
    h = model.frames // 2
    scores = np.full(len(frames), np.nan, dtype=np.float64)
    x = to_tensor(frames).to(_device(model))
    for start in range(h, len(frames) - h, batch_size):
        centres = np.arange(start, min(start + batch_size, len(frames) - h))
        clips = torch.cat([x[c - h:c + h + 1] for c in centres])                   # (B*T, C, H, W), end to end
        error, _ = window_errors(model, clips, stride=model.frames, flip=score.flip)
        scores[centres] = frame_scores(error, score).cpu().numpy()
    model.train(was_training)
    return scores


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, C, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float().div_(255.0)  # copy: memmaps are read-only


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
