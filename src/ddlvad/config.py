"""Typed configuration: the one source of every default, the presets, YAML in and out.

The tree is ``Config(model, data, ddl, train, score, objects)``. ``Config.preset(name)`` returns a
preset; ``cfg.override(["train.lr=1e-3", ...])`` applies ``section.field=value`` strings
(the command line's ``--set``); ``Config.from_yaml``/``to_yaml`` round-trip a run's
``config.yaml``. Every check lives in ``validate()`` and raises :class:`UserError` naming
the flag to change. This module does not import torch.

One concern, in one module though it is long: every default of the package and the check of each
(one dataclass per section, the presets, the evaluation protocols); splitting it would split the one
source of defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from .errors import UserError

MODES = ("recon", "sdl", "ddl")
ARCHS = ("c3dsu", "unet")
BLOCKS = ("reference", "paper")
LOSS_FORMS = ("pixel", "norm")
MASK_SOURCES = ("tracks", "random")
NOISE_KINDS = ("uniform", "blocks")
RETIRED_KEYS = {"train.workers"}
"""Keys that configs and checkpoints of 0.1.0 development builds may hold; read and ignored."""
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRESET = "cpu"
"""The preset ``ddlvad train``, ``track`` and ``config`` start from when neither --preset nor --config
is given (``Config()`` itself holds the reference settings, the ``paper`` preset)."""
DEFAULT_PROTOCOL = "paper"
"""The evaluation protocol of ``ddlvad evaluate`` (:data:`PROTOCOLS`)."""
TRACKERS = ("ocsort", "bytetrack")
UNTIL = ("steps", "converged")
POSITIONS = ("none", "mean")
ENGINE_CHOICES = ("auto", "torch", "onnxruntime", "openvino")
"""What scores a model (:mod:`ddlvad.engines`): ``auto`` is the fastest on this machine that matches torch."""
VAL_METRICS = ("auc", "recon")


@dataclass
class ModelConfig:
    arch: str = "c3dsu"
    """Reconstruction network: ``c3dsu`` (Conv3DSkipUNet, T frames) or ``unet`` (2-D, T=1)."""
    latent: int = 512
    """Bottleneck width L; encoder widths are L/8, L/4, L/2, L. Must be a multiple of 8."""
    block: str = "reference"
    """ConvBlock kind: ``reference`` (parallel 3/5/7 kernels) or ``paper`` (four 3x3)."""
    dropout: float = 0.0
    """Dropout inside every ConvBlock (reference: 0)."""
    channels_last: bool | None = None
    """Store the Conv2d weights channels-last (NHWC): the same computation up to float
    rounding, faster on some machines and slower on others (AVX-512: 1.27x training at the
    ``cpu`` size; AVX2: 0.69x at the ``paper`` size; bench/RESULTS.md). None (``auto``): a
    short probe on this machine chooses, cached per machine (:mod:`ddlvad.conv_layout`).
    ddlvad's BatchNorm2d keeps NHWC batch statistics exact (PyTorch's CPU kernel is ~1e-5
    off, which changed the demo's outcome)."""
    fold_projection: bool | None = None
    """Compute the encoder's space-to-depth + 1x1 projection as one 2x2 stride-2 convolution
    (same parameters, same sums). None (``auto``): chosen with ``channels_last`` by the probe."""


@dataclass
class DataConfig:
    height: int = 256
    """Frame height after resizing, pixels; a multiple of 16."""
    width: int = 256
    """Frame width after resizing, pixels; a multiple of 16."""
    channels: int = 3
    """1 (grey) or 3 (colour; grey sources are repeated)."""
    frames: int = 3
    """Window length T (odd, >= 1). The model reconstructs the middle frame."""
    dataset: str | None = None
    """Layout of the data root (ped2, ped1, avenue, shanghaitech, folder); None detects it."""
    scene: str | None = None
    """ShanghaiTech scene to train and test on (e.g. ``01``); None means all."""
    cache_dir: str | None = None
    """Where decoded frames and tracks are cached; None uses $DDLVAD_CACHE or ~/.cache/ddlvad."""
    masks: str = "tracks"
    """Where object boxes come from: ``tracks`` (tracked objects) or ``random`` boxes."""


@dataclass
class DDLConfig:
    mode: str = "ddl"
    """``recon`` (reconstruction loss only), ``sdl`` (distinction loss, weight fixed at
    sigmoid(init_logit)), ``ddl`` (distinction loss, trainable weight)."""
    init_logit: float = 0.0
    """Initial l; the anomaly weight is s = sigmoid(l) (0 gives 0.5)."""
    loss_form: str = "pixel"
    """Distinction loss: ``pixel`` (reference, mean of per-pixel ratios) or ``norm``
    (paper text, ratio of masked norms per sample)."""
    lam: float = 0.01
    """lambda of Eq. 3: weight of the distinction loss."""
    eps: float = 1e-6
    """epsilon of Eqs. 5-7."""
    logit_lr: float | None = None
    """Learning rate of l; None uses the network's learning rate (reference)."""
    start_step: int = 0
    """Steps of reconstruction-only training before the pseudo anomalies and the distinction
    loss start (0: from the first step, the reference; docs/method.md#start-step)."""
    paste: float = 0.0
    """Fraction of the pseudo anomalies that are, instead of noise, the chosen object's own
    pixels moved to a place where no training object has been (beyond the paper; 0: noise
    only, the paper; docs/method.md#paste). Needs ``data.masks=tracks``."""
    noise: str = "uniform"
    """The noise ``A`` of Eq. 1: ``uniform`` (the paper: ``U[0, 1)`` independently per pixel)
    or ``blocks`` (beyond the paper: the same distribution, one draw per ``noise_cell`` x
    ``noise_cell`` block, i.e. spatially coarse; docs/method.md#block-noise)."""
    noise_cell: int = 4
    """Side of a block of ``ddl.noise=blocks``, pixels."""
    paste_start: int | None = None
    """First step with moved objects (``ddl.paste``); before ``ddl.start_step`` they are then
    the only pseudo anomalies. None: from ``ddl.start_step``, with the noise."""

    @property
    def noise_block(self) -> int:
        """Side of one noise draw, pixels: ``noise_cell`` for ``blocks``, 1 (every pixel its own
        draw) for ``uniform``."""
        return self.noise_cell if self.noise == "blocks" else 1


@dataclass
class TrainConfig:
    epochs: int = 10
    """Passes over the training windows (ignored when ``steps`` is set)."""
    steps: int | None = None
    """Total optimiser steps; when set it replaces ``epochs``."""
    batch_size: int = 10
    """Windows per optimiser step."""
    lr: float = 1e-2
    """Adam learning rate."""
    lr_drop_at: float = 0.8
    """Fraction of training after which the learning rate is multiplied by ``lr_gamma``."""
    lr_gamma: float = 0.5
    """Factor of the single learning-rate drop (StepLR)."""
    seed: int = 0
    """Seed of every random choice (weights, windows, masks, noise)."""
    log_every: int = 1
    """Write a line to metrics.jsonl every N steps."""
    checkpoint_every: int = 200
    """Write the checkpoint every N steps (and at the end of every epoch)."""
    bn_recalibration: int = 0
    """After training, re-estimate every BatchNorm's running mean and variance as a plain
    average over this many normal training windows (no weight changes). 0 keeps the
    statistics that training left (the reference): those mix the normal and the noised
    forward passes and follow the last few batches, which made the micro AUC of Ped2
    swing by up to 14 points between neighbouring checkpoints (bench/RESULTS.md)."""
    snapshot_every: int | None = None
    """Also keep a copy of the weights every N steps in ``RUN/snapshots/`` (for accuracy-vs-time curves)."""
    threads: int | None = None
    """torch intra-op threads; None keeps torch's default."""
    sync_batchnorm: bool = False
    """With several processes (torchrun), compute BatchNorm statistics over the global batch:
    the run then equals one process holding the whole batch. False (the reference): each
    process normalises with the statistics of its own slice, as every replica of the
    reference's DataParallel does. Ignored in a single process."""
    precision: str = "fp32"
    """``fp32``, or ``bf16``: forward passes under bfloat16 autocast (losses and weights stay
    float32). Meant for CUDA; allowed, but slower and untuned, on the CPU."""
    compile: bool = False
    """Run the network through ``torch.compile``. Meant for CUDA; on a 2-core CPU it was
    slower (docs/distributed.md). Untested together with sync_batchnorm."""
    until: str = "steps"
    """When training ends: ``steps`` (after ``steps`` or ``epochs``, as the reference) or
    ``converged``: when the validation signal has not improved for ``patience`` validations
    (the first time, the learning rate drops by ``lr_gamma`` instead, if it has not yet);
    ``steps``/``epochs`` are then the maximum. Needs ``val_fraction`` > 0."""
    minutes: float | None = None
    """Wall-clock budget of the training loop (``--minutes``): training stops at the first
    step past it and ends cleanly (checkpoint, BatchNorm statistics, threshold, and with
    validation the best model so far); the learning rate drops at ``lr_drop_at`` of it."""
    val_fraction: float = 0.0
    """Fraction of every training video, its last frames, held out of training for the
    validation signal (ddlvad.validation); 0: no validation."""
    val_every: int = 50
    """Validate every N steps (and when training stops)."""
    val_windows: int = 64
    """Held-out windows validated (spread evenly over the held-out frames)."""
    val_metric: str = "auc"
    """The validation signal that picks the best model and decides convergence: ``auc``
    (frame scores separate held-out windows from the same windows with a pseudo anomaly of
    weight ``val_weight``) or ``recon`` (held-out reconstruction error)."""
    val_weight: float = 0.2
    """Fixed anomaly weight s of the validation's pseudo anomalies."""
    patience: int = 4
    """Validations without an improvement of ``min_improvement`` before the signal counts as
    levelled off (``until=converged`` stops; ``summary.json`` says ``converged``)."""
    val_floor: float = 0.6
    """With ``val_metric=auc``: the signal must rise above this before a plateau counts. At or
    below it the model cannot tell a pseudo anomaly from a clean window (0.5 is chance; an
    unlearned model that outputs a blurred scene scores about 0.4): it has not learned the
    scene yet, however flat the signal, so the learning rate does not drop and training does not
    stop as converged."""
    val_check_weight: float = 0.5
    """When the signal never rose above ``val_floor``, the kept model is validated once more at the
    end with pseudo anomalies of this stronger weight. Above the floor there, the model has
    learned and the default pseudo anomalies are too faint for the scene (small objects in a
    textured scene, as on Avenue: bench/RESULTS.md); the run says so instead of "not learned". Not a
    better ``val_weight``: at 0.5 the Avenue sample's signal saturated by step 200 and kept that model."""
    min_improvement: float = 0.005
    """Smallest rise of the signal that counts (AUC points as fractions; for ``recon``, of
    -log(error): 0.005 is 0.5 % lower error)."""
    ema: float = 0.0
    """Decay per step of an exponential moving average of the weights (0: off). The average
    is what is validated, kept as the best model and scored."""
    warmup_steps: int = 0
    """Steps over which the learning rate rises linearly from 0 to ``lr``."""
    clip_grad: float | None = None
    """Clip the global gradient norm to this value (None: no clipping)."""
    start_scale: float = 1.0
    """Beyond the paper (docs/method.md#progressive), progressive resizing: until the learning rate
    drops (at ``lr_drop_at`` of the steps or of ``minutes``, or at the first plateau under
    ``until=converged``) frames are trained at ``data.height x data.width`` times this factor
    (each side rounded to a multiple of 16, :func:`scaled_size`), and from the drop on at the
    full size, which the validation after the drop uses. Weights, the anomaly weight and Adam's
    state carry over (the network is fully convolutional). The kept model is the best by the
    validation signal of either size, and scores at its own size. 1: the full size throughout
    (the paper)."""


@dataclass
class ScoreConfig:
    patch: int = 16
    """Side of the square patch whose mean error is a frame's score candidate."""
    shifted_grid: bool = True
    """Also use the grid shifted by patch/2 (reference code); False: aligned grid only."""
    flip: bool = False
    """Beyond the paper (docs/method.md#scoring-options): average each window's error map with that of its
    mirror image (test-time augmentation; twice the scoring cost)."""
    scale: float = 1.0
    """Beyond the paper (docs/method.md#scoring-options): frames are scored at ``data.height x data.width``
    times this factor, each side rounded to a multiple of 16 (:func:`scaled_size`); the network
    is fully convolutional. 1: the training size (the paper)."""
    position: str = "none"
    """Beyond the paper (docs/method.md#position): ``mean`` divides each pixel's error by the mean
    error at that place on normal training frames (smoothed over a patch, relative to the frame's
    overall mean), so that a place where the model always errs more (texture, a far and busy
    region, a static oddity) does not outscore a real anomaly elsewhere; label-free, computed at
    the end of training (or by ``ddlvad evaluate --position mean`` from the training split).
    ``none``: the paper's error."""
    engine: str = "torch"
    """What runs the network when scoring (:mod:`ddlvad.engines`): ``torch``, ``onnxruntime``,
    ``openvino`` (the same computation exported as an encoder graph per frame and a decoder graph
    per window, parity-tested against torch) or ``auto`` (the fastest of them on this machine that
    matches torch, chosen by a cached probe; ``ddlvad watch`` uses it). Scores agree to ~1e-7."""
    batch_size: int = 16
    """Windows scored per forward pass."""
    threshold_percentile: float = 99.0
    """Percentile of normal training-frame scores stored as the detection threshold."""
    threshold_frames: int = 600
    """Normal training frames the thresholds are calibrated on (the first of each video, shared
    evenly among the videos)."""


@dataclass
class ObjectsConfig:
    """How the objects that pseudo anomalies are pasted into are found (``ddlvad track``, and
    ``ddlvad train`` when no tracks exist yet). Not used at test time."""

    detector: str = "motion"
    """``motion`` (background subtraction for fixed cameras, no weights) or ``onnx:PATH`` (a
    YOLO-style ONNX export; needs ``pip install ddlvad[onnx]``)."""
    tracker: str = "ocsort"
    """``ocsort`` (the paper's) or ``bytetrack``, from the ``trackers`` library."""
    classes: list[int] = field(default_factory=lambda: [0])
    """Class ids an ONNX detector keeps (COCO: 0 = person)."""
    score_threshold: float = 0.3
    """Smallest detection score an ONNX detector keeps."""
    long_side: int = 360
    """Frames are detected at most this many pixels on their long side (Ped2's own size)."""


SCALE_RANGE = (0.25, 4.0)
"""The factors ``score.scale`` (``--scale``) may take."""


def check_scale(value: Any, name: str) -> None:
    """Raise :class:`UserError` naming ``name`` unless ``value`` is a factor in :data:`SCALE_RANGE`."""
    low, high = SCALE_RANGE
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and low <= value <= high):
        raise UserError(f"{name}={value!r} (--scale): must be between {low:g} and {high:g} (1: the training size)")


INT_MAX = 2**63 - 1
"""The largest integer a setting may hold (64 bits), and the largest seed (numpy's generators and
``torch.manual_seed`` both take 0 .. 2**63-1)."""
MAX_SIDE = 4096
"""The largest frame side (``data.height``, ``data.width``), pixels: 4K video fits."""
MAX_LATENT = 2048
"""The largest ``model.latent`` (4x the paper's 512: 6 GiB of weights)."""
MAX_FRAMES = 99
"""The largest window length ``data.frames`` (the temporal kernels grow with it)."""
MAX_THREADS = 1024
"""The most torch threads ``train.threads`` may ask for."""


def check_seed(value: Any, what: str) -> None:
    """Raise :class:`UserError` starting with ``what`` (the setting and its value) unless ``value`` is
    an integer seed in 0 .. :data:`INT_MAX`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= INT_MAX:
        raise UserError(f"{what}: a seed is an integer from 0 to 2**63-1")


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``height x width`` times ``scale``, each side rounded to the nearest multiple of 16 (a tie
    to the even multiple, as Python's ``round``; at least 16): the size frames are scored at
    (``score.scale``) and trained at before growing (``train.start_scale``)."""
    return max(16, round(height * scale / 16) * 16), max(16, round(width * scale / 16) * 16)


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "ddl": DDLConfig,
    "train": TrainConfig,
    "score": ScoreConfig,
    "objects": ObjectsConfig,
}


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    ddl: DDLConfig = field(default_factory=DDLConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    objects: ObjectsConfig = field(default_factory=ObjectsConfig)
    preset_name: str = "paper"
    """Name of the preset this config started from (informational; ``preset`` in older files)."""

    # ---------------------------------------------------------------- presets
    @classmethod
    def preset(cls, name: str) -> Config:
        """Return a fresh copy of preset ``name`` (``tiny``, ``cpu`` or ``paper``)."""
        if name not in PRESETS:
            raise UserError(f"unknown preset {name!r} (--preset): choose one of {', '.join(PRESETS)}")
        cfg = cls()
        cfg.preset_name = name
        cfg.apply(PRESETS[name])
        return cfg

    # ---------------------------------------------------------------- edits
    def apply(self, values: dict[str, Any]) -> Config:
        """Set ``{"section.field": value}`` or nested ``{"section": {"field": value}}``."""
        for key, value in _flatten(values).items():
            self.set(key, value)
        return self

    def set(self, key: str, value: Any) -> None:
        """Set one ``section.field`` to ``value`` (a string is parsed to the field's type)."""
        if key in RETIRED_KEYS:  # written by earlier versions; no longer has any effect
            return
        if key in ("preset", "preset_name"):
            self.preset_name = str(value)
            return
        section_name, _, name = key.partition(".")
        if section_name not in _SECTIONS or not name:
            raise UserError(f"unknown config key {key!r}: keys look like 'train.lr'; sections are "
                            f"{', '.join(_SECTIONS)}")
        section = getattr(self, section_name)
        hints = get_type_hints(type(section))
        if name not in hints:
            close = difflib.get_close_matches(name, list(hints), n=1)
            hint = f" (did you mean {section_name}.{close[0]}?)" if close else ""
            raise UserError(f"unknown config key {key!r}{hint}")
        setattr(section, name, _coerce(key, value, hints[name]))

    def override(self, assignments: list[str]) -> Config:
        """Apply ``section.field=value`` strings, as given to ``--set``."""
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"--set {item!r}: write it as section.field=value, e.g. train.lr=0.001")
            self.set(key.strip(), value.strip())
        return self

    def at_start(self) -> Config:
        """This config at the frame size training starts at (``train.start_scale``,
        docs/method.md#progressive): a copy with ``data.height x data.width`` scaled; itself when the scale is 1."""
        if self.train.start_scale == 1:
            return self
        start = Config.from_dict(self.to_dict())
        start.data.height, start.data.width = scaled_size(self.data.height, self.data.width, self.train.start_scale)
        return start

    # ---------------------------------------------------------------- checks
    def validate(self) -> Config:
        """Raise :class:`UserError` naming the flag for the first invalid value."""
        m, d, l, t, s = self.model, self.data, self.ddl, self.train, self.score
        _choice("model.arch", m.arch, ARCHS)
        _choice("model.block", m.block, BLOCKS)
        _choice("ddl.mode", l.mode, MODES)
        _choice("ddl.loss_form", l.loss_form, LOSS_FORMS)
        _choice("data.masks", d.masks, MASK_SOURCES)
        _choice("ddl.noise", l.noise, NOISE_KINDS)
        if not 1 <= l.noise_cell <= max(d.height, d.width):
            raise UserError(f"ddl.noise_cell={l.noise_cell}: must be from 1 pixel to the frame size")
        _choice("train.precision", t.precision, PRECISIONS)
        if not 8 <= m.latent <= MAX_LATENT or m.latent % 8:
            raise UserError(f"model.latent={m.latent}: must be a multiple of 8 from 8 to {MAX_LATENT}")
        if not 0 <= m.dropout < 1:
            raise UserError(f"model.dropout={m.dropout}: must be in [0, 1)")
        for name, value in (("data.height", d.height), ("data.width", d.width)):
            if not 16 <= value <= MAX_SIDE or value % 16:
                raise UserError(f"{name}={value}: frame size must be a multiple of 16 from 16 to {MAX_SIDE} "
                                f"(the network halves it four times)")
        if d.channels not in (1, 3):
            raise UserError(f"data.channels={d.channels}: use 1 (grey) or 3 (colour)")
        if not 1 <= d.frames <= MAX_FRAMES or d.frames % 2 == 0:
            raise UserError(f"data.frames={d.frames} (--frames): T must be odd, from 1 to {MAX_FRAMES}")
        if m.arch == "unet" and d.frames != 1:
            raise UserError(f"model.arch=unet takes one frame: set data.frames=1 (now {d.frames})")
        if not l.eps > 0:
            raise UserError(f"ddl.eps={l.eps}: must be > 0")
        if not l.lam >= 0:
            raise UserError(f"ddl.lam={l.lam}: must be >= 0")
        check_seed(t.seed, f"train.seed={t.seed} (--seed)")
        if t.epochs < 1:
            raise UserError(f"train.epochs={t.epochs} (--epochs): must be >= 1")
        if t.steps is not None and t.steps < 1:
            raise UserError(f"train.steps={t.steps} (--steps): must be >= 1")
        if t.batch_size < 1:
            raise UserError(f"train.batch_size={t.batch_size} (--batch-size): must be >= 1")
        if not t.lr > 0:
            raise UserError(f"train.lr={t.lr} (--lr): must be > 0")
        if l.logit_lr is not None and not l.logit_lr >= 0:
            raise UserError(f"ddl.logit_lr={l.logit_lr}: must be >= 0")
        if not 0 <= l.paste <= 1:
            raise UserError(f"ddl.paste={l.paste}: must be a fraction in [0, 1]")
        if l.paste and d.masks != "tracks":
            raise UserError(f"ddl.paste={l.paste} moves tracked objects: it needs data.masks=tracks, "
                            f"not {d.masks!r}")
        if not 0 < t.lr_drop_at <= 1:
            raise UserError(f"train.lr_drop_at={t.lr_drop_at}: must be in (0, 1]")
        if not 0 < t.lr_gamma <= 1:
            raise UserError(f"train.lr_gamma={t.lr_gamma}: the factor of the learning-rate drop must be in (0, 1]")
        check_scale(s.scale, "score.scale")
        if not (isinstance(t.start_scale, numbers.Real) and 0.25 <= t.start_scale <= 1):
            raise UserError(f"train.start_scale={t.start_scale!r}: must be between 0.25 and 1 (1: no resizing)")
        if t.start_scale < 1 and t.lr_drop_at == 1 and t.until == "steps" and t.minutes is None:
            raise UserError(f"train.start_scale={t.start_scale} grows the frames when the learning rate drops, "
                            f"and with train.lr_drop_at=1 it never does: set train.lr_drop_at below 1")
        if t.log_every < 1 or t.checkpoint_every < 1:
            raise UserError("train.log_every and train.checkpoint_every must be >= 1")
        if t.snapshot_every is not None and t.snapshot_every < 1:
            raise UserError(f"train.snapshot_every={t.snapshot_every}: must be >= 1")
        if t.bn_recalibration < 0:
            raise UserError(f"train.bn_recalibration={t.bn_recalibration}: must be >= 0 (0 turns it off)")
        if t.threads is not None and not 1 <= t.threads <= MAX_THREADS:
            raise UserError(f"train.threads={t.threads}: must be from 1 to {MAX_THREADS}")
        _choice("train.until", t.until, UNTIL)
        _choice("train.val_metric", t.val_metric, VAL_METRICS)
        if not 0 <= t.val_fraction < 0.5:
            raise UserError(f"train.val_fraction={t.val_fraction}: must be in [0, 0.5)")
        if t.until == "converged" and t.val_fraction == 0:
            raise UserError("train.until=converged needs held-out frames: set train.val_fraction (e.g. 0.1)")
        if t.minutes is not None and not t.minutes > 0:
            raise UserError(f"train.minutes={t.minutes} (--minutes): must be > 0")
        if t.val_every < 1 or t.val_windows < 2 or t.patience < 1:
            raise UserError("train.val_every, train.patience must be >= 1 and train.val_windows >= 2")
        if not 0 < t.val_weight < 1:
            raise UserError(f"train.val_weight={t.val_weight}: must be in (0, 1)")
        if not 0 < t.val_check_weight < 1:
            raise UserError(f"train.val_check_weight={t.val_check_weight}: must be in (0, 1)")
        if not 0 <= t.val_floor < 1:
            raise UserError(f"train.val_floor={t.val_floor}: must be in [0, 1) (0.5 is chance)")
        if not t.min_improvement >= 0 or t.warmup_steps < 0:
            raise UserError("train.min_improvement and train.warmup_steps must be >= 0")
        if self.ddl.start_step < 0:
            raise UserError(f"ddl.start_step={self.ddl.start_step}: must be >= 0")
        if self.ddl.paste_start is not None and not 0 <= self.ddl.paste_start <= self.ddl.start_step:
            raise UserError(f"ddl.paste_start={self.ddl.paste_start}: must be between 0 and "
                            f"ddl.start_step={self.ddl.start_step} (moved objects before the noise)")
        if not 0 <= t.ema < 1:
            raise UserError(f"train.ema={t.ema}: the decay must be in [0, 1) (0 turns it off)")
        if t.clip_grad is not None and not t.clip_grad > 0:
            raise UserError(f"train.clip_grad={t.clip_grad}: must be > 0 (or none)")
        if s.patch < 2 or s.patch > min(d.height, d.width):
            raise UserError(f"score.patch={s.patch}: must be between 2 and the frame size")
        if s.batch_size < 1:
            raise UserError(f"score.batch_size={s.batch_size}: must be >= 1")
        _choice("score.position", s.position, POSITIONS)
        _choice("score.engine", s.engine, ENGINE_CHOICES)
        if s.threshold_frames < 1:
            raise UserError(f"score.threshold_frames={s.threshold_frames}: must be >= 1")
        if not 0 < s.threshold_percentile <= 100:
            raise UserError(f"score.threshold_percentile={s.threshold_percentile}: must be in (0, 100]")
        o = self.objects
        _choice("objects.tracker", o.tracker, TRACKERS)
        if o.detector != "motion" and not (o.detector.startswith("onnx:") and len(o.detector) > 5):
            raise UserError(f"objects.detector={o.detector!r} (--object-detector): use 'motion' or "
                            f"'onnx:PATH/TO/model.onnx'")
        if not 0 <= o.score_threshold <= 1:
            raise UserError(f"objects.score_threshold={o.score_threshold} (--score-threshold): must be in [0, 1]")
        if any(c < 0 for c in o.classes):
            raise UserError(f"objects.classes={o.classes} (--classes): class ids are >= 0 (COCO: 0 = person)")
        if o.long_side < 16:
            raise UserError(f"objects.long_side={o.long_side}: must be >= 16 pixels")
        self._check_numbers()
        return self

    def _check_numbers(self) -> None:
        """Every number of the config is one: no NaN anywhere, no infinity but where it means "no
        limit" (``train.minutes``, ``train.clip_grad``), integers within 64 bits."""
        for key, value in _flatten(self.to_dict()).items():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bool) or not isinstance(v, numbers.Real):
                    continue
                if isinstance(v, numbers.Integral) and not -INT_MAX - 1 <= v <= INT_MAX:
                    raise UserError(f"{key}={v}{_flag(key)}: too large for a 64-bit integer")
                if not _finite(v) and not (key in ("train.minutes", "train.clip_grad") and v == math.inf):
                    raise UserError(f"{key}={v}{_flag(key)}: must be a finite number")

    def warnings(self) -> list[str]:
        """Valid but risky choices, one line each (printed by ``ddlvad train``)."""
        out = []
        d = self.ddl
        if d.mode != "recon" and d.loss_form == "pixel" and d.eps < 1e-3 and self.model.latent < 512:
            out.append(f"ddl.loss_form=pixel with ddl.eps={d.eps:g} (the reference's form) stopped training "
                       f"from learning at small model sizes in our measurements (docs/method.md §4); at "
                       f"model.latent={self.model.latent} prefer ddl.loss_form=norm or ddl.eps=0.01")
        return out

    # ---------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        cfg = cls()
        cfg.apply(values)
        return cfg

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The config as YAML; with ``path``, also written there (atomically: a crash leaves the
        previous file or none, never half of one)."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            from .files import atomic_write

            atomic_write(path, text)
        return text

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise UserError(f"config file {path} not found (--config)") from None
        except yaml.YAMLError as exc:
            raise UserError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(values, dict):
            raise UserError(f"config file {path} must hold a mapping of sections (model, data, ...)")
        return cls.from_dict(values)

    def diff(self, other: Config) -> dict[str, tuple[Any, Any]]:
        """``{key: (mine, theirs)}`` for every field that differs."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


SMOOTHINGS = ("none", "median", "gaussian")
NORMALISATIONS = ("none", "minmax")


MAX_WINDOW = 9999
"""The longest median window of a protocol, frames (longer ones take minutes per video; a window
longer than the video flattens it anyway)."""
MAX_SIGMA = 1000.0
"""The largest gaussian sigma of a protocol, frames (the kernel spans 8 sigma)."""


@dataclass
class Protocol:
    """How raw frame scores become the numbers of a report. Written into every report."""

    name: str = "paper"
    """Name of the preset this protocol started from (informational)."""
    smoothing: str = "median"
    """``none``, ``median`` (paper: window 17) or ``gaussian`` (sigma below), per video."""
    window: int = 17
    """Median window in frames; odd, >= 1. Used only when ``smoothing == "median"``."""
    sigma: float = 3.0
    """Gaussian standard deviation in frames; > 0. Used only when ``smoothing == "gaussian"``."""
    normalise: str = "none"
    """``none`` or ``minmax`` (per video, to [0, 1], applied after smoothing)."""
    edge_frames: str = "drop"
    """Frames without a score (NaN: the first/last (T-1)/2 of each video) are dropped with
    their labels. ``drop`` is the only rule (the authors confirmed it)."""
    macro_single_class: str = "skip"
    """Videos with one class have no AUC; ``skip`` leaves them out of the macro mean (the
    only rule; the report shows their ``auc`` as null)."""
    patch: int | None = None
    """Patch side used by the scorer (``score.patch``), pixels. Recorded only; filled in by the caller."""
    shifted_grid: bool | None = None
    """Whether the scorer also used the half-patch-shifted grid (``score.shifted_grid``). Recorded only."""
    flip: bool = False
    """Beyond the paper (docs/method.md#scoring-options): error maps averaged with those of the mirrored
    frames (``score.flip``; ``ddlvad evaluate --flip``)."""
    scale: float = 1.0
    """Beyond the paper (docs/method.md#scoring-options) unless 1: frames were scored at the training size
    times this factor (``score.scale``; ``ddlvad evaluate --scale``)."""

    position: str = "none"
    """Beyond the paper (docs/method.md#position) unless ``none``: errors divided by their normal
    level at each place (``score.position``; ``ddlvad evaluate --position``)."""

    def __post_init__(self) -> None:
        if self.smoothing not in SMOOTHINGS:
            raise UserError(f"protocol smoothing={self.smoothing!r}: choose one of {', '.join(SMOOTHINGS)}")
        if self.normalise not in NORMALISATIONS:
            raise UserError(
                f"protocol normalise={self.normalise!r}: choose one of {', '.join(NORMALISATIONS)}"
            )
        w = self.window
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or not 1 <= w <= MAX_WINDOW or w % 2 == 0:
            raise UserError(f"protocol window={self.window!r} (--window): the median window must be an odd number "
                            f"of frames from 1 to {MAX_WINDOW}")
        if not (isinstance(self.sigma, numbers.Real) and 0 < self.sigma <= MAX_SIGMA):
            raise UserError(f"protocol sigma={self.sigma!r} (--sigma): the gaussian sigma must be a number of "
                            f"frames > 0 and at most {MAX_SIGMA}")
        if self.position not in POSITIONS:
            raise UserError(f"protocol position={self.position!r}: choose one of {', '.join(POSITIONS)}")
        check_scale(self.scale, "protocol scale")
        if self.edge_frames != "drop":
            raise UserError(f"protocol edge_frames={self.edge_frames!r}: only 'drop' is supported")
        if self.macro_single_class != "skip":
            raise UserError(f"protocol macro_single_class={self.macro_single_class!r}: only 'skip' is supported")

    def to_dict(self) -> dict:
        """All fields as a JSON-ready dict (what goes into a report's ``protocol``)."""
        return dataclasses.asdict(self)


PROTOCOLS: dict[str, Protocol] = {
    # docs/method.md §6: median filter of window 17 per video, no normalisation.
    "paper": Protocol(name="paper"),
    # The reference code: raw scores.
    "raw": Protocol(name="raw", smoothing="none"),
    "gaussian": Protocol(name="gaussian", smoothing="gaussian", sigma=3.0),
    # Paper smoothing + per-video min-max, as many reconstruction baselines report.
    "minmax": Protocol(name="minmax", normalise="minmax"),
}


def get_protocol(name: str, **overrides) -> Protocol:
    """A fresh copy of preset ``name`` with ``overrides`` (field=value) applied and checked.

    Raises :class:`UserError` for an unknown preset or field, listing the choices.
    """
    if name not in PROTOCOLS:
        raise UserError(f"unknown evaluation protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    known = {f.name for f in dataclasses.fields(Protocol)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise UserError(
            f"unknown protocol field(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))}"
        )
    return dataclasses.replace(PROTOCOLS[name], **overrides)


@dataclass(frozen=True)
class LocalisationProtocol:
    """How ``ddlvad evaluate`` measures localisation (:mod:`ddlvad.localisation`): the published
    criteria's parameters and the thresholds of the anomaly map at which regions are extracted."""

    overlap: float = 0.4
    """Pixel-level AUC: fraction of an abnormal frame's mask that must be detected (UCSD: 40 %)."""
    beta: float = 0.1
    """RBDC/TBDC: IoU a detected region needs with a ground-truth region (Ramachandra & Jones: 0.1)."""
    alpha: float = 0.1
    """TBDC: fraction of a ground-truth track's regions that must be detected (0.1)."""
    max_fpr: float = 1.0
    """RBDC/TBDC: the curve is integrated over false positives per frame in ``[0, max_fpr]``."""
    levels_per_octave: int = 4
    """Map thresholds per doubling at which regions are extracted (see :meth:`levels`)."""
    octaves: int = 3
    """Doublings below and above the base threshold that the levels span (3: an eighth to 8x)."""
    fallback_level: float = 0.05
    """Base threshold when the run stores none (a pixel error, as the map's values)."""

    def levels(self, threshold: dict | None) -> list[float]:
        """The map thresholds for RBDC/TBDC: the run's region threshold (else its frame threshold,
        else :attr:`fallback_level`) times ``2^(k / levels_per_octave)`` for
        ``k = -octaves * levels_per_octave .. octaves * levels_per_octave``."""
        base = (threshold or {}).get("region") or (threshold or {}).get("value") or self.fallback_level
        n = self.octaves * self.levels_per_octave
        return [float(base) * 2 ** (k / self.levels_per_octave) for k in range(-n, n + 1)]


@dataclass(frozen=True)
class EventRules:
    """How ``ddlvad detect`` merges anomalous frames into events (``--gap``, ``--min-frames``).
    A setting of detection, not of the run: it is not part of :class:`Config`."""

    gap: int = 5
    """Two runs of anomalous frames separated by at most this many other frames are one event."""
    min_frames: int = 3
    """Events spanning fewer frames (first to last anomalous frame) are dropped as blips."""

    def __post_init__(self) -> None:
        if self.gap < 0:
            raise UserError(f"--gap {self.gap}: must be >= 0 frames")
        if self.min_frames < 1:
            raise UserError(f"--min-frames {self.min_frames}: must be >= 1")


# The presets. ``paper`` = docs/method.md §5 (reference code); ``cpu`` = our fast path for
# a 2-core CPU (see bench/RESULTS.md for the measurements behind it); ``tiny`` = tests.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {},
    "cpu": {
        "model.latent": 64,
        "data.height": 160,
        "data.width": 240,
        "data.channels": 1,
        "ddl.loss_form": "norm",
        "train.start_scale": 0.8,
        "train.steps": 1180,
        "train.lr_drop_at": 900 / 1180,
        "train.batch_size": 8,
        "train.lr": 3e-3,
        "train.checkpoint_every": 100,
        "train.bn_recalibration": 320,
        "train.val_fraction": 0.1,
        "train.val_every": 100,
        "train.until": "converged",
        "train.patience": 4,
        "score.batch_size": 32,
    },
    "tiny": {
        "model.latent": 16,
        "model.channels_last": False,
        "model.fold_projection": True,
        "data.height": 32,
        "data.width": 48,
        "data.channels": 1,
        "ddl.loss_form": "norm",
        "train.epochs": 1,
        "train.steps": 6,
        "train.batch_size": 4,
        "train.lr": 1e-3,
        "train.checkpoint_every": 3,
        "score.patch": 8,
        "score.batch_size": 8,
    },
}


DEMO: dict[str, Any] = {"preset": "cpu", "overrides": {
    "train.lr": 5e-3, "train.val_every": 25, "train.steps": 1000, "train.minutes": 7.0, "ddl.start_step": 100,
    "ddl.paste": 0.5, "model.latent": 32, "data.height": 128, "data.width": 192, "train.start_scale": 1.0,
    "train.lr_drop_at": 0.8}}
"""``ddlvad demo``: the preset it trains and the changes to it. It trains until its validation
signal levels off or for 7 minutes, whichever comes first (bench/RESULTS.md, "Training to
convergence"): on a slow 2-core AVX2 machine the whole demo then ends within 10 minutes. The
higher learning rate leaves the first plateau sooner; 100 reconstruction-only steps before the
distinction loss keep the network out of the flat-walkway state that caught seed 0 on three
emulated CPUs (docs/method.md#start-step). Half the pseudo anomalies are moved objects (beyond the
paper, docs/method.md#paste): the scene's hardest anomaly, a pedestrian on the lawn, is normal
in appearance and abnormal only in its place (bench/RESULTS.md, "Moved objects"). Half the
`cpu` preset's widths (latent 32) at the preset's 128x192 frames (set here too, so that the
demo stays what was measured if the preset's size changes) fit twice the steps into the 7
minutes, which a slow machine needs for the lawn (bench/RESULTS.md, "The slow box's budget")."""


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and (prefix or key in _SECTIONS):
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _flag(key: str) -> str:
    """`` (--flag)`` for the command-line flag that sets config key ``key``; empty when none does."""
    from .cli import FLAGS  # the table of flags knows which flag sets which key

    names = [name for name, flag in FLAGS.items() if flag.key == key]
    return f" (--{names[0]})" if names else ""


def _choice(flag: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise UserError(f"{flag}={value!r}: choose one of {', '.join(options)}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Parse ``value`` (often a string from the command line) to the field's type."""
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        values = value.split(",") if isinstance(value, str) else value
        if not isinstance(values, (list, tuple)):
            raise UserError(f"{key}={value!r}: expected a list, e.g. 0,2")
        return [_coerce(key, v.strip() if isinstance(v, str) else v, item) for v in values
                if not (isinstance(v, str) and not v.strip())]
    args = [a for a in get_args(hint) if a is not type(None)]
    optional = type(None) in get_args(hint)
    base = args[0] if args else hint
    text = value if isinstance(value, str) else None
    if optional and (value is None or (text is not None and text.lower() in ("none", "null", "", "auto"))):
        return None
    try:
        if isinstance(value, bool) and base is not bool:
            raise ValueError
        if base is int:
            number = float(value) if text is not None else value
            if not isinstance(number, numbers.Integral) and float(number) != int(number):  # 2.5, not 10**30
                raise ValueError
            return int(number)
        if base is float:
            return float(value)
        if base is bool:
            if isinstance(value, bool):
                return value
            if text is not None and text.lower() in ("true", "yes", "1", "on"):
                return True
            if text is not None and text.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if value is None:
            raise ValueError
        return str(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{key}={value!r}: expected {getattr(base, '__name__', base)}") from None
