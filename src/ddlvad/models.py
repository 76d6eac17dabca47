"""The reconstruction networks of docs/method.md §3: ConvBlock, UNet and C3DSU.

Shapes: a clip is ``(B, C, T, H, W)`` in [0, 1]; every model returns the reconstructed
middle frame ``(B, C, H, W)`` in [0, 1]. H and W must be multiples of 16.

This module knows nothing about data, training or evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.optim.swa_utils import update_bn

from .config import Config

# Kernel sizes of the parallel branches of one ConvBlock.
BRANCH_KERNELS = {"reference": (3, 5, 7), "paper": (3, 3, 3, 3)}


class _BatchNormWithStats(torch.autograd.Function):
    """Training-mode batch normalisation from given batch statistics: the forward is the
    inference kernel, the backward PyTorch's own training-mode backward (which accounts for
    the statistics' dependence on ``x``)."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, var, eps):
        ctx.eps = eps
        invstd = torch.rsqrt(var + eps)
        ctx.save_for_backward(x, weight, mean, invstd)
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps)

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, invstd = ctx.saved_tensors
        dx, dw, db = torch.ops.aten.native_batch_norm_backward(
            grad, x, weight, None, None, mean, invstd, True, ctx.eps, list(ctx.needs_input_grad[:3]))
        return dx, dw, db, None, None, None


class BatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose batch statistics stay exact for channels-last input on the CPU.

    PyTorch's channels-last CPU kernel sums each channel's N*H*W values without cascading:
    at 48 x 64 x 96 values per channel its mean and 1/std are ~1e-5 off (float64 reference)
    against ~5e-8 for the NCHW kernel, and over a C3DSU the training gradients end up ~1e-3
    off. That was enough to change how training escapes its early plateau (the demo: 60.6
    instead of 82.8 AUC). Here ``torch.var_mean`` (accurate in either layout) computes the
    statistics, PyTorch's inference kernel normalises and its training-mode backward kernel
    differentiates (that one also sums in float32 in NHWC: weight and bias gradients ~7e-6
    off, 10x the NCHW kernel; an exact one cost ~3x its time, bench/RESULTS.md). Any other
    input (NCHW, eval mode, GPU, reduced precision): plain ``nn.BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and self.affine and x.device.type == "cpu" and x.dim() == 4
                and x.dtype in (torch.float32, torch.float64)
                and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        with torch.no_grad():
            var, mean = torch.var_mean(x, dim=(0, 2, 3), correction=0)
            if self.track_running_stats and self.running_mean is not None:
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                n = x.numel() / x.shape[1]
                self.running_mean.lerp_(mean, factor)
                self.running_var.lerp_(var * (n / max(n - 1, 1)), factor)
        return _BatchNormWithStats.apply(x, self.weight, self.bias, mean, var, self.eps)


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
        self.bn = BatchNorm2d(mid)
        self.drop = nn.Dropout(dropout)
        self.resample = nn.PixelUnshuffle(2) if down else nn.PixelShuffle(2)
        resampled = mid * 4 if down else mid // 4
        self.project = nn.Conv2d(resampled, cout, 1)
        self.out = nn.Identity() if last else nn.Sequential(BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([conv(x) for conv in self.branches], dim=1)  # (B, k*branch, H, W)
        x = self.drop(F.relu(self.bn(x), inplace=True))
        return self.out(self.resample_project(x))

    fold = True
    """Compute the encoder's space-to-depth + 1x1 projection as one strided convolution
    (:meth:`resample_project`); set by :func:`apply_layout`."""

    def resample_project(self, x: torch.Tensor) -> torch.Tensor:
        """``project(resample(x))``. Going down, space-to-depth then a 1x1 convolution is one
        2x2 stride-2 convolution whose kernel is the 1x1 weight regrouped (channel
        ``c*4 + 2i + j`` of the unshuffled tensor is pixel ``(i, j)`` of channel ``c``): the same
        sums without copying the block's widest tensor (the parameters keep their shapes).
        Whether it is faster depends on the machine and layout (bench/RESULTS.md: 1.03-1.11x
        with AVX-512, 0.71x channels-last with AVX2), so :mod:`ddlvad.conv_layout` chooses. Going
        up, the same trick measured no faster, so depth-to-space is kept.
        """
        if self.fold and isinstance(self.resample, nn.PixelUnshuffle):
            w = self.project.weight
            return F.conv2d(x, w.reshape(w.shape[0], -1, 2, 2), self.project.bias, stride=2)
        return self.project(self.resample(x))


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
    temporal padding: the same output, T times less work (see bench/speed/train_score.py).
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


@dataclass(frozen=True)
class ConvLayout:
    """How the 2-D convolutions are laid out: the same computation up to float rounding."""

    channels_last: bool
    """Conv2d weights (and so activations) in NHWC, else NCHW."""
    fold: bool
    """The encoder's space-to-depth + 1x1 projection as one strided convolution."""


DEFAULT_CONV_LAYOUT = ConvLayout(channels_last=False, fold=True)
"""The layout where ``model.channels_last`` / ``model.fold_projection`` are left to a probe and
no probe was run (NCHW with the fold was never slower than the straightforward code)."""


def build_model(cfg: Config, layout: ConvLayout | None = None) -> nn.Module:
    """The network described by ``cfg.model`` for ``cfg.data`` frames (a valid config:
    :meth:`Config.validate`), in ``layout`` (default: the config's choices,
    :data:`DEFAULT_CONV_LAYOUT` where it leaves them open)."""
    m, d = cfg.model, cfg.data
    if m.arch == "unet":
        model = UNet(d.channels, m.latent, m.block, m.dropout)
    else:
        model = C3DSU(d.channels, m.latent, d.frames, m.block, m.dropout)
    if layout is None:
        layout = ConvLayout(DEFAULT_CONV_LAYOUT.channels_last if m.channels_last is None else m.channels_last,
                        DEFAULT_CONV_LAYOUT.fold if m.fold_projection is None else m.fold_projection)
    return apply_layout(model, layout)


def apply_layout(model: nn.Module, layout: ConvLayout) -> nn.Module:
    """Put ``model`` in ``layout`` (in place; returns ``model``); no parameter value changes."""
    for module in model.modules():
        if isinstance(module, ConvBlock):
            module.fold = layout.fold
    return set_conv_layout(model, torch.channels_last if layout.channels_last else torch.contiguous_format)


def conv_layout_of(model: nn.Module) -> ConvLayout:
    """The layout ``model`` is in."""
    conv = next(m for m in model.modules()  # one whose two layouts differ in memory
                if isinstance(m, nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1))
    block = next((m for m in model.modules() if isinstance(m, ConvBlock)), None)
    channels_last = not conv.weight.is_contiguous() and conv.weight.is_contiguous(memory_format=torch.channels_last)
    return ConvLayout(channels_last, block.fold if block is not None else True)


def set_conv_layout(model: nn.Module, layout: torch.memory_format) -> nn.Module:
    """Store every Conv2d weight in ``layout`` (in place; returns ``model``).

    With channels-last weights oneDNN runs the 2-D convolutions (and the BatchNorm, pixel
    shuffles and concatenations between them) in NHWC: the same computation up to float
    rounding, faster or slower depending on the machine (``model.channels_last``;
    bench/speed/memory_format.py). The BatchNorm layers are :class:`BatchNorm2d`, which keeps
    the statistics exact in NHWC. The Conv3d weights keep the default layout.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.to(memory_format=layout)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | None = None) -> None:
    """Re-estimate the BatchNorm running statistics of ``model`` as a plain average over
    ``batches`` of normal clips (``torch.optim.swa_utils.update_bn``); nothing else changes.
    No batch: nothing happens."""
    batches = iter(batches)
    first = next(batches, None)
    if first is not None:
        update_bn(_chain(first, batches), model, device)


@contextlib.contextmanager
def recalibrated(model: nn.Module, batches: Iterable[torch.Tensor], device: torch.device | None = None
                 ) -> Iterator[nn.Module]:
    """Within the block, ``model``'s BatchNorm statistics are re-estimated on ``batches``
    (:func:`recalibrate_batchnorm`); afterwards its own come back."""
    kept = [b.clone() for b in model.buffers()]
    recalibrate_batchnorm(model, batches, device)
    try:
        yield model
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), kept):
                buffer.copy_(value)


def _chain(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield first
    yield from rest
