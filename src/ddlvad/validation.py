"""Knowing when training is done without test labels: held-out normal windows, a validation
signal measured on them, and the rule that stops training when the signal levels off.

- :func:`hold_out` keeps the last ``train.val_fraction`` of every training video out of
  training (a contiguous tail, so that no held-out frame sits next to a training frame).
- :class:`Validator` measures, on the held-out windows, in eval mode: ``val_recon``, the mean
  reconstruction error of the clean windows (Eq. 4), and ``val_auc``, how well the frame
  score separates each clean window from the same window with a pseudo anomaly of fixed
  weight ``train.val_weight`` in the box of one of its tracked objects (a random box where
  the window has none). Masks and noise are drawn once from the seed, so every validation
  sees the same pseudo anomalies. ``train.val_metric`` names the one that decides.
- :class:`Plateau` says when the signal has not improved by ``train.min_improvement`` for
  ``train.patience`` validations.
- :class:`KeptModel` chooses, by the signal, the model a run keeps and the file it lives in
  (``best.pt``; ``best-start.pt`` for the start size of a growing run, docs/method.md#progressive).

How well each signal predicts the test AUC was measured (bench/RESULTS.md, "Validation
signal"); docs/method.md §9 says which is the default and why.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from .checkpoint import BEST, START_BEST
from .config import Config, TrainConfig
from .data.clips import TrainingData, WindowIndex, gather_clips
from .pseudo_anomaly import PseudoAnomaly, PseudoAnomalyGenerator
from .score import clip_errors, frame_scores


def hold_out(data: TrainingData, fraction: float, window: int) -> tuple[TrainingData, TrainingData]:
    """Split every video into its first frames (training) and its last ``round(fraction * N)``
    frames (held out). A video keeps all its frames for training when either part would be
    shorter than ``window + 1`` frames; ``fraction`` 0 holds nothing out. The training part
    keeps ``scoring_frames`` (the threshold is calibrated on whole training videos)."""
    sized = data.start_frames is not None  # the start-size copies are split alike (train.start_scale)
    train = TrainingData([], [], [], data.scoring_frames, start_frames=[] if sized else None)
    held = TrainingData([], [], [], start_frames=[] if sized else None)
    for i, (frames, tracks, vid) in enumerate(zip(data.frames, data.tracks, data.video_ids)):
        n = len(frames)
        tail = int(round(fraction * n))
        parts = [(train, 0, n)]
        if tail > window and n - tail > window:
            parts = [(train, 0, n - tail), (held, n - tail, n)]
        for part, a, b in parts:
            whole = (a, b) == (0, n)
            part.frames.append(frames if whole else frames[a:b])
            part.tracks.append(tracks if whole or tracks is None else tracks.part(a, b))
            part.video_ids.append(vid)
            if sized:
                part.start_frames.append(data.start_frames[i] if whole else data.start_frames[i][a:b])
    return train, held


class Validator:
    """The validation signal of a model on held-out windows (see the module doc).

    At most ``train.val_windows`` windows, spread evenly over the held-out frames; scored in
    batches of ``score.batch_size``.
    """

    def __init__(self, cfg: Config, held: TrainingData):
        t, d = cfg.train, cfg.data
        self.cfg = cfg
        self.held = held
        self.index = WindowIndex([len(f) for f in held.frames], d.frames)
        count = min(t.val_windows, len(self.index))
        self.windows = np.unique(np.linspace(0, len(self.index) - 1, count).round().astype(np.int64))
        rngs = [np.random.default_rng([t.seed, 2, int(w)]) for w in self.windows]
        self.generator = PseudoAnomalyGenerator.for_validation(cfg, held.tracks, self.index)
        anomaly = self.generator.fixed(self.windows, rngs, (len(self.windows), d.channels, d.frames, d.height, d.width))
        self.masks = anomaly.mask.bool()                                           # (n, 1, T, H, W)
        self.noise = anomaly.noise                                                 # (n, C, T, H, W)

    def __len__(self) -> int:
        return len(self.windows)

    @torch.inference_mode()
    def __call__(self, model: nn.Module, weight: float | None = None) -> dict[str, float]:
        """``val_recon`` and ``val_auc`` of ``model`` (put in eval mode, then back); ``val_auc``
        with pseudo anomalies of ``weight`` (None: ``train.val_weight``)."""
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        weight = torch.tensor(self.cfg.train.val_weight if weight is None else weight)
        clean, noised, errors = [], [], []
        step = self.cfg.score.batch_size
        for i in range(0, len(self.windows), step):
            part = slice(i, i + step)
            clip = gather_clips(self.held.frames, self.index, self.windows[part])          # (b, C, T, H, W)
            anomaly = PseudoAnomaly(self.masks[part].float(), self.noise[part])
            anomalous = self.generator(clip, anomaly, weight)                              # Eqs. 1-2, fixed s
            error = clip_errors(model, clip.to(device))[0].cpu()                          # (b, H, W)
            error_a = clip_errors(model, anomalous.to(device))[0].cpu()
            errors.append(error.mean((1, 2)))
            clean.append(frame_scores(error, self.cfg.score))
            noised.append(frame_scores(error_a, self.cfg.score))
        model.train(was_training)
        c, a = torch.cat(clean).numpy(), torch.cat(noised).numpy()
        labels = np.r_[np.zeros(len(c)), np.ones(len(a))]
        return {"val_recon": float(torch.cat(errors).mean()), "val_auc": float(roc_auc_score(labels, np.r_[c, a]))}


def signal_value(values: dict[str, float], metric: str) -> float:
    """The number :class:`Plateau` maximises: ``val_auc``, or ``-log(val_recon)`` (so that a
    ``min_improvement`` of 0.01 is a 1 % lower error)."""
    if metric == "auc":
        return values["val_auc"]
    return -math.log(max(values["val_recon"], 1e-12))


@dataclass
class Plateau:
    """Patience on a signal to maximise. :meth:`update` returns True for a new best value;
    :attr:`stale` counts the validations since the signal last rose by more than
    ``min_improvement`` above the level of the previous such rise. While the signal is at or
    below ``floor`` (None: no floor) nothing counts as stale: a flat signal there means the
    model has not learned yet, not that it has finished (docs/method.md#convergence)."""

    patience: int
    min_improvement: float
    floor: float | None = None
    best: float | None = None
    best_step: int | None = None
    level: float | None = None
    stale: int = 0

    def update(self, value: float, step: int) -> bool:
        if self.level is None or value > self.level + self.min_improvement or not self.above_floor(value):
            self.level, self.stale = value, 0
        else:
            self.stale += 1
        if self.best is None or value > self.best:
            self.best, self.best_step = value, step
            return True
        return False

    def restart(self) -> None:
        """Count patience afresh (after the learning rate dropped)."""
        self.stale = 0

    def above_floor(self, value: float | None) -> bool:
        return value is not None and (self.floor is None or value > self.floor)

    @property
    def learned(self) -> bool:
        """The best signal so far is above the floor."""
        return self.above_floor(self.best)

    @property
    def levelled(self) -> bool:
        """The signal, above its floor, has not improved for ``patience`` validations."""
        return self.learned and self.stale >= self.patience

    def state(self) -> dict:
        return asdict(self)


class KeptModel:
    """Which model a run keeps, and in which file (docs/method.md#convergence, docs/method.md#progressive).

    Each validation offers the signal of the network as it is (:meth:`offer`); the trainer
    saves a new best to :attr:`file`: ``best.pt``, or ``best-start.pt`` while a growing run
    (``train.start_scale``) still trains at its start size, so that each size's best has its own
    file. When the frames grow (:meth:`grow`) the start size's best is set aside, and at the end
    it is kept (:meth:`keeps_start`) if no full-size model beat its signal. The :class:`Plateau`
    of the signal also tells the trainer when training has levelled off.
    """

    def __init__(self, train: TrainConfig, run_dir: str | Path, growing: bool = False):
        self.train = train
        self.run_dir = Path(run_dir)
        self.growing = growing
        """The models offered now are at the start size of a growing run."""
        self.plateau = self.new_plateau()
        self.start_best: dict | None = None
        """``{"signal", "step"}`` of the start size's best model (``best-start.pt``), set aside
        when the frames grew; None without one (no growth yet, no validation, or no signal above
        the floor)."""

    def new_plateau(self) -> Plateau:
        t = self.train
        return Plateau(t.patience, t.min_improvement, t.val_floor if t.val_metric == "auc" else None)

    @property
    def file(self) -> Path:
        """Where a new best model goes now."""
        return self.run_dir / (START_BEST if self.growing else BEST)

    def offer(self, signal: float, step: int) -> bool:
        """The signal of the model at ``step``; True when it is the best so far (save it to :attr:`file`)."""
        return self.plateau.update(signal, step)

    def grow(self, fresh: bool = True, keep_start: bool = True, main: bool = True) -> None:
        """The frames grew to the full size. ``fresh``: the patience and best value count afresh
        (the first full-size validation becomes ``best.pt``), and the start size's best, if its
        signal rose above the floor and ``keep_start`` allows it, is remembered (else its file is
        removed, by the ``main`` process). ``fresh=False``: a resumed run that had already grown,
        or one ending without having grown."""
        if fresh and self.plateau.learned and keep_start:
            self.start_best = {"signal": self.plateau.best, "step": self.plateau.best_step}
        elif fresh and main:  # a start-size model that cannot be kept: no file for it
            (self.run_dir / START_BEST).unlink(missing_ok=True)
        self.growing = False
        if fresh:
            self.plateau = self.new_plateau()

    def keeps_start(self) -> bool:
        """At the end: the start size's best is kept (no full-size model beat its signal)."""
        return self.start_best is not None and (self.plateau.best is None or self.start_best["signal"] > self.plateau.best)

    def kept_file(self, never_grew: bool) -> Path:
        """The file of the model kept at the end (``never_grew``: the run ended at its start size)."""
        return self.run_dir / (START_BEST if never_grew or self.keeps_start() else BEST)

    def best(self) -> dict:
        """``{"signal", "step"}`` of the kept model."""
        return self.start_best if self.keeps_start() else {"signal": self.plateau.best, "step": self.plateau.best_step}

    @property
    def learned(self) -> bool:
        """Some kept candidate's signal rose above the floor."""
        return self.plateau.learned or self.keeps_start()

    def state(self) -> dict:
        return {"plateau": self.plateau.state(), "start_best": self.start_best}

    def load_state(self, ckpt: dict) -> None:
        """Restore from a checkpoint (the floor stays the config's)."""
        if ckpt.get("plateau"):
            self.plateau = Plateau(**{**ckpt["plateau"], "floor": self.plateau.floor})
        self.start_best = ckpt.get("start_best")
