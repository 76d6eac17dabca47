"""Frame scores from a trained model (METHOD.md section 6).

A frame's score is the largest mean of ``e(X_t, f(X))`` over ``patch x patch`` patches on
the aligned grid and (optionally) the grid shifted by ``patch / 2``. Videos are scored with
a sliding window; the per-frame encoder outputs are computed once and shared by the T
windows that contain each frame (the encoder sees frames independently).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .loss import pixel_error


def _grid_means(error: torch.Tensor, patch: int, shifted_grid: bool) -> list[tuple[int, torch.Tensor]]:
    """``(B, H, W)`` error maps -> ``[(offset, means (B, gh, gw))]``, one entry per patch grid.

    The aligned grid covers whole patches from the top-left corner; the shifted grid is the
    same on the map cropped by ``patch // 2`` on each side (when a whole patch still fits).
    """
    x = error.unsqueeze(1)                                                   # (B, 1, H, W)
    grids = [(0, F.avg_pool2d(x, patch, stride=patch).squeeze(1))]           # (B, H//p, W//p)
    if shifted_grid:
        o = patch // 2
        inner = x[:, :, o:x.shape[2] - o, o:x.shape[3] - o]
        if inner.shape[2] >= patch and inner.shape[3] >= patch:
            grids.append((o, F.avg_pool2d(inner, patch, stride=patch).squeeze(1)))
    return grids


def patch_scores(error: torch.Tensor, patch: int = 16, shifted_grid: bool = True) -> torch.Tensor:
    """``(B, H, W)`` error maps -> ``(B,)`` worst patch means (see :func:`_grid_means`)."""
    grids = _grid_means(error, patch, shifted_grid)
    best = grids[0][1].flatten(1).amax(1)
    for _, means in grids[1:]:
        best = torch.maximum(best, means.flatten(1).amax(1))
    return best


def worst_patches(error: torch.Tensor, patch: int = 16, shifted_grid: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, H, W)`` error maps -> the scores ``(B,)`` of :func:`patch_scores` and the worst
    patch of each map as ``(B, 4)`` int64 boxes ``(x, y, w, h)`` in error-map pixels."""
    best: torch.Tensor | None = None
    boxes = torch.zeros(error.shape[0], 4, dtype=torch.int64)
    boxes[:, 2:] = patch
    for offset, means in _grid_means(error, patch, shifted_grid):
        value, flat = means.flatten(1).max(1)                                # (B,), (B,)
        gw = means.shape[2]
        take = torch.ones_like(value, dtype=torch.bool) if best is None else value > best
        best = value if best is None else torch.where(take, value, best)
        boxes[take, 0] = offset + (flat[take] % gw) * patch
        boxes[take, 1] = offset + torch.div(flat[take], gw, rounding_mode="floor") * patch
    assert best is not None
    return best, boxes


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, C)`` -> float ``(N, C, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.array(frames)).permute(0, 3, 1, 2).float().div_(255.0)  # copy: memmaps are read-only


@torch.inference_mode()
def reconstruct_windows(model: nn.Module, frames: np.ndarray, centres: np.ndarray) -> torch.Tensor:
    """Reconstructions ``(B, C, H, W)`` of the windows centred at consecutive ``centres``
    (``centres[k] = centres[0] + k``) of uint8 ``frames (N, H, W, C)``."""
    T = model.frames
    h = T // 2
    first, count = int(centres[0]), len(centres)
    x = to_tensor(frames[first - h: first + count + h]).to(_device(model))  # (count + T - 1, C, H, W)
    feats = model.encode_frames(x)                               # per level (count+T-1, ch, h, w)
    windows = [torch.stack([f[k:k + count] for k in range(T)], dim=2) for f in feats]  # (count, ch, T, h, w)
    return model.decode_windows(windows)


def iter_video(model: nn.Module, frames: np.ndarray, batch_size: int = 16
               ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Yield ``(centres, targets, reconstructions)`` over all windows of one video."""
    h = model.frames // 2
    n = len(frames)
    for start in range(h, n - h, batch_size):
        centres = np.arange(start, min(start + batch_size, n - h))
        recon = reconstruct_windows(model, frames, centres)
        yield centres, to_tensor(frames[centres]).to(recon.device), recon


@torch.inference_mode()
def score_video(model: nn.Module, frames: np.ndarray, patch: int = 16, shifted_grid: bool = True,
                batch_size: int = 16) -> np.ndarray:
    """Scores ``(N,)`` of uint8 frames ``(N, H, W, C)``; NaN for the ``(T-1)/2`` edge frames
    at each end, which have no full window."""
    was_training = model.training
    model.eval()
    scores = np.full(len(frames), np.nan, dtype=np.float64)
    for centres, target, recon in iter_video(model, frames, batch_size):
        scores[centres] = patch_scores(pixel_error(target, recon), patch, shifted_grid).cpu().numpy()
    model.train(was_training)
    return scores


@torch.inference_mode()
def score_video_naive(model: nn.Module, frames: np.ndarray, patch: int = 16, shifted_grid: bool = True,
                      batch_size: int = 16) -> np.ndarray:
    """The straightforward way: every window through the full model (no encoder reuse).
    Kept as the reference for equivalence tests and benchmarks."""
    was_training = model.training
    model.eval()
    T = model.frames
    h = T // 2
    scores = np.full(len(frames), np.nan, dtype=np.float64)
    x = to_tensor(frames).to(_device(model))
    for start in range(h, len(frames) - h, batch_size):
        centres = np.arange(start, min(start + batch_size, len(frames) - h))
        clips = torch.stack([x[c - h:c + h + 1] for c in centres]).permute(0, 2, 1, 3, 4)  # (B, C, T, H, W)
        recon = model(clips)
        scores[centres] = patch_scores(pixel_error(x[centres], recon), patch, shifted_grid).cpu().numpy()
    model.train(was_training)
    return scores
