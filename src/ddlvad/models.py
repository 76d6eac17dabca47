"""The reconstruction networks of METHOD.md section 3: ConvBlock, UNet and C3DSU.

Shapes: a clip is ``(B, C, T, H, W)`` in [0, 1]; every model returns the reconstructed
middle frame ``(B, C, H, W)`` in [0, 1]. H and W must be multiples of 16.

This module knows nothing about data, training or evaluation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import Config
from .errors import UserError

# Kernel sizes of the parallel branches of one ConvBlock.
BRANCH_KERNELS = {"reference": (3, 5, 7), "paper": (3, 3, 3, 3)}


class ConvBlock(nn.Module):
    """Parallel 'same' convolutions -> BN -> ReLU -> Dropout -> resample x2 -> 1x1 conv [-> BN -> ReLU].

    ``down=True``: each branch has ``out`` channels and space-to-depth halves H, W
    (channels x4). ``down=False``: each branch has ``4 * out`` channels and depth-to-space
    doubles H, W (channels / 4). ``last=True`` omits the final BN/ReLU (decoder output).
    """

    def __init__(self, cin: int, cout: int, *, down: bool, kind: str = "reference",
                 dropout: float = 0.0, last: bool = False):
        super().__init__()
        kernels = BRANCH_KERNELS[kind]
        branch = cout if down else 4 * cout
        self.branches = nn.ModuleList(nn.Conv2d(cin, branch, k, padding=k // 2) for k in kernels)
        mid = branch * len(kernels)
        self.bn = nn.BatchNorm2d(mid)
        self.drop = nn.Dropout(dropout)
        self.resample = nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2)
        resampled = mid * 4 if down else mid // 4
        self.project = nn.Conv2d(resampled, cout, 1)
        self.out = nn.Identity() if last else nn.Sequential(nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([conv(x) for conv in self.branches], dim=1)  # (B, k*branch, H, W)
        x = self.drop(F.relu(self.bn(x), inplace=True))
        x = self.resample(x)  # down: (B, 4*k*branch, H/2, W/2); up: (B, k*branch/4, 2H, 2W)
        return self.out(self.project(x))


class Encoder(nn.Module):
    """2-D encoder: widths L/8, L/4, L/2, L at H/2, H/4, H/8, H/16."""

    def __init__(self, channels: int, latent: int, kind: str, dropout: float):
        super().__init__()
        widths = [latent // 8, latent // 4, latent // 2, latent]
        cins = [channels] + widths[:-1]
        self.widths = widths
        self.blocks = nn.ModuleList(
            ConvBlock(ci, co, down=True, kind=kind, dropout=dropout) for ci, co in zip(cins, widths))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats  # [(B, L/8, H/2, W/2), ..., (B, L, H/16, W/16)]


class Decoder(nn.Module):
    """2-D decoder with skip connections to the three upper encoder levels, sigmoid output."""

    def __init__(self, channels: int, latent: int, kind: str, dropout: float):
        super().__init__()
        L = latent
        self.blocks = nn.ModuleList([
            ConvBlock(L, L // 2, down=False, kind=kind, dropout=dropout),
            ConvBlock(L, L // 4, down=False, kind=kind, dropout=dropout),
            ConvBlock(L // 2, L // 8, down=False, kind=kind, dropout=dropout),
            ConvBlock(L // 4, channels, down=False, kind=kind, dropout=dropout, last=True),
        ])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        s1, s2, s3, x = feats
        x = self.blocks[0](x)                               # (B, L/2, H/8, W/8)
        x = self.blocks[1](torch.cat([x, s3], dim=1))       # (B, L/4, H/4, W/4)
        x = self.blocks[2](torch.cat([x, s2], dim=1))       # (B, L/8, H/2, W/2)
        x = self.blocks[3](torch.cat([x, s1], dim=1))       # (B, C, H, W)
        return torch.sigmoid(x)


class UNet(nn.Module):
    """2-D UNet on one frame (T = 1): ``(B, C, 1, H, W) -> (B, C, H, W)``."""

    def __init__(self, channels: int, latent: int, kind: str = "reference", dropout: float = 0.0):
        super().__init__()
        self.encoder = Encoder(channels, latent, kind, dropout)
        self.decoder = Decoder(channels, latent, kind, dropout)
        self.frames = 1

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(clip[:, :, clip.shape[2] // 2]))

    # The sliding-window interface shared with C3DSU (see score.py).
    def encode_frames(self, frames: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(frames)

    def decode_windows(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats``: per level ``(B, ch, T, h, w)`` -> middle frames ``(B, C, H, W)``."""
        return self.decoder([f[:, :, f.shape[2] // 2] for f in feats])


class C3DSU(nn.Module):
    """Conv3DSkipUNet: per-frame 2-D encoder, a Conv3d (T, 3, 3) on every skip level and the
    bottleneck, the middle time slice into the 2-D decoder.

    The Conv3d has 'same' padding in the paper; only its middle time slice is used, and with
    kernel T that slice reads exactly the T input frames, so we compute it directly with no
    temporal padding: the same output, T times less work (see bench/bench_speed.py).
    """

    def __init__(self, channels: int, latent: int, frames: int = 3, kind: str = "reference",
                 dropout: float = 0.0):
        super().__init__()
        self.frames = frames
        self.encoder = Encoder(channels, latent, kind, dropout)
        self.temporal = nn.ModuleList(
            nn.Conv3d(w, w, (frames, 3, 3), padding=(0, 1, 1)) for w in self.encoder.widths)
        self.decoder = Decoder(channels, latent, kind, dropout)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, _, t, _, _ = clip.shape
        if t != self.frames:
            raise ValueError(f"C3DSU built for T={self.frames} frames got a clip of {t}")
        feats = self.encode_frames(rearrange(clip, "b c t h w -> (b t) c h w"))
        feats = [rearrange(f, "(b t) c h w -> b c t h w", b=b) for f in feats]
        return self.decode_windows(feats)

    def encode_frames(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Encoder outputs of independent frames ``(N, C, H, W)``; reusable across windows."""
        return self.encoder(frames)

    def decode_windows(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """``feats``: per level ``(B, ch, T, h, w)`` -> reconstructed middle frames ``(B, C, H, W)``."""
        mids = [conv(f).squeeze(2) for conv, f in zip(self.temporal, feats)]  # (B, ch, h, w)
        return self.decoder(mids)


def check_frame_size(height: int, width: int) -> None:
    if height % 16 or width % 16 or height < 16 or width < 16:
        raise UserError(f"frame size {height}x{width}: height and width must be multiples of 16 "
                        f"(set data.height / data.width)")


def build_model(cfg: Config) -> nn.Module:
    """The network described by ``cfg.model`` for ``cfg.data`` frames (validated first)."""
    cfg.validate()
    m, d = cfg.model, cfg.data
    check_frame_size(d.height, d.width)
    if m.arch == "unet":
        model = UNet(d.channels, m.latent, m.block, m.dropout)
    else:
        model = C3DSU(d.channels, m.latent, d.frames, m.block, m.dropout)
    return set_conv_layout(model, torch.channels_last if m.channels_last else torch.contiguous_format)


def set_conv_layout(model: nn.Module, layout: torch.memory_format) -> nn.Module:
    """Store every Conv2d weight in ``layout`` (in place; returns ``model``).

    With channels-last weights oneDNN runs the 2-D convolutions (and the BatchNorm, pixel
    shuffles and concatenations between them) in NHWC: the same computation up to float
    rounding, and on a 2-core CPU 1.37x the training speed of the ``cpu`` preset and 1.21x
    that of ``paper`` (bench/bench_memory_format.py; ``model.channels_last``). The Conv3d
    weights keep the default layout.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=layout)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
