"""Pseudo anomalies (METHOD.md section 2, Eqs. 1-2) and the trainable anomaly weight.

The generator has its own home, apart from the model and the loss: the training step reads
``generator -> model -> loss``.
"""

from __future__ import annotations

import torch
from torch import nn


class AnomalyWeight(nn.Module):
    """The anomaly weight ``s = sigmoid(l)`` with one scalar logit ``l``.

    ``trainable=False`` freezes ``l`` (the ``sdl`` ablation: s fixed at sigmoid(init_logit)).
    ``l`` is a registered parameter, so it is saved in the state dict with the network.
    """

    def __init__(self, init_logit: float = 0.0, trainable: bool = True):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(float(init_logit)), requires_grad=trainable)

    def forward(self) -> torch.Tensor:
        return torch.sigmoid(self.logit)


def pseudo_anomaly(clip: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                   generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Paste weighted uniform noise into the object mask.

    clip: ``(B, C, T, H, W)`` in [0, 1]; mask: ``(B, 1, T, H, W)`` of 0/1 (broadcast over
    channels); weight: scalar ``s`` in (0, 1); ``noise``: ``A`` of the clip's shape, drawn
    here from ``generator`` when not given. Returns ``X_A`` of the clip's shape.
    """
    if noise is None:
        noise = torch.rand(clip.shape, generator=generator, dtype=clip.dtype, device=clip.device)  # A ~ U[0, 1)
    blended = (1 - weight) * clip + weight * noise     # Eq. 1: Xbar_A = (1 - s) X + s A
    return (1 - mask) * clip + mask * blended          # Eq. 2: X_A = (1 - M) X + M Xbar_A
