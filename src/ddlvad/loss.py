"""The DDL loss (docs/method.md §4, Eqs. 3-7): reconstruction plus distinction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import DDLConfig


def pixel_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``e(a, b)``: L2 over channels divided by sqrt(C). ``(B, C, H, W) x2 -> (B, H, W)``."""
    return torch.linalg.vector_norm(a - b, dim=1) / math.sqrt(a.shape[1])


def recon_loss(target: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mean over batch and pixels of ``e(X_t, f(X))``."""
    return pixel_error(target, recon).mean()


def distinction_loss(target: torch.Tensor, anomalous: torch.Tensor, recon_anomalous: torch.Tensor,
                     mask: torch.Tensor, form: str, eps: float) -> torch.Tensor:
    """Eqs. 5-7 on the middle frame.

    target ``X_t``, anomalous ``X_A_t``, recon_anomalous ``f(X_A)``: ``(B, C, H, W)``;
    mask ``M_t``: ``(B, H, W)`` of 0/1. ``P = M e(X_t, f(X_A))`` (made small),
    ``N = M e(X_A_t, f(X_A))`` (made large).

    ``form="pixel"`` (reference code): mean over all masked pixels of the batch of
    ``(P + eps M) / (N + eps)``. ``form="norm"`` (paper text): per sample with a non-empty
    mask ``(||P||_2 + eps) / (||N||_2 + eps)``, then the mean over those samples.
    Both give 0 when no pixel is masked.
    """
    P = mask * pixel_error(target, recon_anomalous)
    N = mask * pixel_error(anomalous, recon_anomalous)
    if form == "pixel":
        count = mask.sum()
        if count == 0:
            return P.sum() * 0.0
        return (((P + eps * mask) / (N + eps)) * mask).sum() / count
    if form == "norm":
        has = mask.flatten(1).sum(1) > 0
        if not has.any():
            return P.sum() * 0.0
        ratio = (P.flatten(1).norm(dim=1) + eps) / (N.flatten(1).norm(dim=1) + eps)
        return ratio[has].mean()
    raise ValueError(f"unknown distinction loss form {form!r}")


@dataclass
class LossParts:
    total: torch.Tensor
    recon: torch.Tensor
    dist: torch.Tensor | None

    def as_floats(self) -> dict[str, float]:
        out = {"loss": self.total.item(), "recon": self.recon.item()}
        if self.dist is not None:
            out["dist"] = self.dist.item()
        return out


def ddl_loss(target: torch.Tensor, recon: torch.Tensor, anomalous: torch.Tensor | None = None,
             recon_anomalous: torch.Tensor | None = None, mask: torch.Tensor | None = None,
             ddl: DDLConfig | None = None) -> LossParts:
    """Eq. 3: ``L = L_recon + lambda L_dist`` with ``lambda``, the form and ``eps`` of ``ddl``;
    without the anomalous pair, ``L = L_recon``."""
    rec = recon_loss(target, recon)
    if anomalous is None or ddl is None:
        return LossParts(rec, rec, None)
    dist = distinction_loss(target, anomalous, recon_anomalous, mask, ddl.loss_form, ddl.eps)
    return LossParts(rec + ddl.lam * dist, rec, dist)
