"""The training loop: data -> pseudo anomaly -> model -> loss -> step -> checkpoint.

With ``train.val_fraction`` > 0 the last frames of every training video are held out and the
run is validated every ``train.val_every`` steps (:mod:`ddlvad.validation`); the best model by
the signal is kept as ``best.pt`` beside ``checkpoint.pt`` (the state to resume from), and
``train.until=converged`` / ``train.minutes`` end training when the signal levels off or the
time is up. ``best.pt``, when it exists, is the model that scoring uses.

Every random choice is a pure function of ``(train.seed, step)`` or ``(train.seed, epoch)``
(window order, masks, noise), so a run resumed from a checkpoint draws exactly what the
uninterrupted run would have drawn.

Under torchrun (see distributed.py) every process takes a contiguous slice of each global
batch and draws exactly what a single process draws for those windows; the network and the
anomaly weight are one DistributedDataParallel module, so ``l`` is averaged like any
weight; rank 0 alone writes metrics, checkpoints and the summary.

One concern, in one module though it is long: the training loop and the state it carries from step
to step (sizes, learning rate, checkpoints, the end of a run); the pieces it uses live elsewhere:
pseudo anomalies, validation and the kept-model choice, resume rules, BatchNorm re-estimation.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from . import __version__, distributed
from .checkpoint import BEST, CHECKPOINT, check_resume, load_checkpoint, save_atomic, truncate_log
from .config import Config
from .conv_layout import choose as choose_layout
from .data.clips import TrainingData, WindowIndex, epoch_order, gather_clips, recalibration_batches
from .errors import UserError
from .files import atomic_write
from .loss import ddl_loss
from .machine import machine_info
from .models import ConvLayout, apply_layout, build_model, recalibrate_batchnorm, recalibrated
from .pseudo_anomaly import PseudoAnomaly, PseudoAnomalyGenerator, window_rngs
from .score import Scorer, calibrate_thresholds, position_weights
from .validation import KeptModel, Validator, hold_out, signal_value


class TrainingInterrupted(Exception):
    """Ctrl-C / SIGTERM during training; the checkpoint was written first."""


class DDLNet(nn.Module):
    """The network and the pseudo-anomaly generator (which holds the anomaly weight) as one
    module: one call is a training step's forward passes, so that DistributedDataParallel
    synchronises ``l`` like any weight."""

    def __init__(self, model: nn.Module, generator: PseudoAnomalyGenerator):
        super().__init__()
        self.model = model
        self.generator = generator

    def forward(self, clip: torch.Tensor, anomaly: PseudoAnomaly | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``f(X)``, then (with a pseudo anomaly) ``X_A`` and ``f(X_A)``: two separate passes,
        as in the reference (BatchNorm sees them separately)."""
        if anomaly is None:
            return self.model(clip), None, None
        anomalous = self.generator(clip, anomaly)                          # X_A, Eqs. 1-2
        return self.model(clip), anomalous, self.model(anomalous)         # f(X), X_A, f(X_A)


class Trainer:
    """One DDL training run in ``run_dir``. ``run()`` trains and returns the summary.

    Inside a torchrun process group (:mod:`ddlvad.distributed`) it trains with
    DistributedDataParallel: ``train.batch_size`` is the global batch and must be divisible
    by the number of processes. ``cfg`` must be validated (:meth:`Config.validate`: the
    commands do it once, at their boundary).
    """

    def __init__(self, cfg: Config, data: TrainingData, run_dir: str | Path, progress: bool = True):
        self.cfg = cfg
        self.data = data
        self.run_dir = Path(run_dir)
        self.progress = progress
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.validator: Validator | None = None
        if t.val_fraction:
            data, held = hold_out(data, t.val_fraction, cfg.data.frames)
            if not held.frames:
                raise UserError(f"train.val_fraction={t.val_fraction}: no training video is long enough to hold "
                                f"out its last frames; set train.val_fraction=0 (and train.until=steps)")
            self.validator = Validator(cfg, held)
            self.data = data
        # progressive resizing (train.start_scale, docs/method.md#progressive): the start size until the lr drops
        start = cfg.at_start()
        self.full: tuple[TrainingData, Validator | None] | None = None
        """The full-size data and validator that :meth:`grow` switches to; None once grown (or never small)."""
        if start is not cfg:
            if data.start_frames is None:
                raise ValueError("train.start_scale < 1: the TrainingData needs start_frames")
            self.full = (self.data, self.validator)
            self.data = data.at_start()
            self.validator = None if self.validator is None else Validator(start, held.at_start())
        self.index = WindowIndex([len(f) for f in data.frames], cfg.data.frames)
        if len(self.index) == 0:
            raise UserError(f"no training windows: every training video is shorter than "
                            f"T={cfg.data.frames} frames")
        self.batches_per_epoch = math.ceil(len(self.index) / t.batch_size)
        self.total_steps = t.steps if t.steps is not None else t.epochs * self.batches_per_epoch
        active = distributed.is_active()
        self.world = distributed.world_size() if active else 1
        self.rank = distributed.rank() if active else 0
        check_global_batch(t.batch_size, self.world)
        self.device = distributed.device()

        # the same layout on every rank (DDP's gradient buckets assume it); the probe runs before seeding,
        # at the size most steps train at (the start size with train.start_scale)
        self.conv_layout = distributed.run_on_main(choose_layout, start, "train", self.device)
        torch.manual_seed(t.seed)
        self.model = build_model(cfg, self.conv_layout).to(self.device)
        self.generator = PseudoAnomalyGenerator(start, data.tracks, self.index, self.data.frames).to(self.device)
        self.weight = self.generator.weight
        # the moving average of the weights (before sync BatchNorm: its copy keeps plain BatchNorm)
        self.average = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(t.ema), use_buffers=True)
                        if t.ema else None)
        if t.sync_batchnorm:
            self.model = distributed.sync_batchnorm(self.model)
        groups = [{"params": self.model.parameters(), "lr": t.lr}]
        if cfg.ddl.mode == "ddl":
            groups.append({"params": self.weight.parameters(),
                           "lr": cfg.ddl.logit_lr if cfg.ddl.logit_lr is not None else t.lr})
        self.optimizer = torch.optim.Adam(groups)
        self.base_lrs = [g["lr"] for g in groups]
        self.lr_dropped_at: int | None = None
        self.kept_model = KeptModel(t, self.run_dir, growing=self.full is not None)
        self.stopped: str | None = None
        self.validated_at: int | None = None
        self.step = 0
        self.skipped = 0
        self.elapsed = 0.0
        self.net = DDLNet(self.model, self.generator)
        self.engine: nn.Module = self.net
        if active:
            from torch.nn.parallel import DistributedDataParallel

            # l has requires_grad only in ddl mode, where every step from ddl.start_step uses it
            self.engine = DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=cfg.ddl.start_step > 0)
        if t.compile:
            self.engine = torch.compile(self.engine)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16")

    # ------------------------------------------------------------------ sizes
    def grow(self, fresh: bool = True) -> None:
        """From the start size to the full size (``train.start_scale``): training and held-out
        frames and the pseudo anomalies' size switch; weights, ``l`` and Adam's state stay.
        ``fresh``: the kept-model choice starts afresh at the new size (:meth:`KeptModel.grow`;
        a start-size model scores at its own size, so it can be kept only without ``score.scale``)."""
        self.kept_model.grow(fresh, keep_start=self.cfg.score.scale == 1, main=self.rank == 0)
        self.data, self.validator = self.full
        self.full = None
        d = self.cfg.data
        self.generator.resize(d.height, d.width, self.data.frames)

    def due_to_grow(self, step: int) -> bool:
        """Whether training step ``step`` is at the full size and the frames are still small:
        the learning rate has dropped at or before it."""
        return self.full is not None and self.lr_dropped_at is not None and step >= self.lr_dropped_at

    # ------------------------------------------------------------------ one step
    def batch_windows(self, step: int) -> np.ndarray:
        """Window numbers of global step ``step`` (epochs follow each other seamlessly)."""
        bs = self.cfg.train.batch_size
        epoch, pos = divmod(step, self.batches_per_epoch)
        return epoch_order(len(self.index), self.cfg.train.seed, epoch)[pos * bs:(pos + 1) * bs]

    def lr_factor(self, step: int) -> float:
        """The learning-rate factor of step ``step``: one drop, by ``train.lr_gamma``, at
        ``round(train.lr_drop_at * total_steps)`` (docs/method.md §5). Once the drop has
        happened it stays (the checkpoint records where): a run resumed with more ``--steps``
        never drops twice; one resumed before its drop moves it to the same fraction of its
        new length."""
        t = self.cfg.train
        drop = max(1, int(round(t.lr_drop_at * self.total_steps)))
        if self.lr_dropped_at is None and t.minutes is not None and self.elapsed >= t.lr_drop_at * t.minutes * 60:
            self.lr_dropped_at = step  # a time budget: the drop at lr_drop_at of the time
        if self.lr_dropped_at is not None:
            drop = min(drop, self.lr_dropped_at)
        elif step >= drop:
            self.lr_dropped_at = drop
        warm = min(1.0, (step + 1) / t.warmup_steps) if t.warmup_steps else 1.0
        return warm * (t.lr_gamma if step >= drop else 1.0)

    def rank_positions(self, n: int) -> range:
        """This rank's contiguous slice of a global batch of ``n`` windows (all of it in one process)."""
        return distributed.batch_slice(n, self.world, self.rank)

    def train_step(self, step: int) -> dict[str, float] | None:
        """One optimiser step; None when the (global) batch has no masked pixel (skipped, as in
        the reference). Returns the global batch's loss parts."""
        cfg, d = self.cfg, self.cfg.data
        batch = self.batch_windows(step)                                     # the global batch
        part = self.rank_positions(len(batch))
        mine = len(part)
        share = mine / len(batch)                                            # this rank's fraction
        if not mine:  # an epoch's last batch with fewer windows than ranks: a zero-weight stand-in
            part = range(1)
        rngs = window_rngs(cfg.train.seed, step, part)                       # keyed by global position
        windows = batch[part.start:part.stop]
        t = d.frames // 2
        self.net.train()
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * self.lr_factor(step)
        if self.due_to_grow(step):
            self.grow()                                                      # train.start_scale

        host_clip = gather_clips(self.data.frames, self.index, windows)      # X (B, C, T, H, W)
        clip = host_clip.to(self.device)
        started = self.generator.noised(step)                                # before: no noise (docs/method.md#start-step)
        anomaly = self.generator.draw_at(step, windows, rngs, host_clip)     # M, A; None in recon mode
        if anomaly is not None:
            if distributed.all_sum([anomaly.masked_pixels if share else 0.0])[0] == 0:
                if started:
                    return None                                              # no object in the batch
                anomaly = None                                               # no object moved: recon only
            else:
                anomaly = anomaly.to(self.device)
        with torch.autocast(**self.autocast):
            recon, anomalous, recon_anomalous = self.engine(clip, anomaly)   # f(X), X_A, f(X_A)
        if anomaly is None:
            parts = ddl_loss(clip[:, :, t], recon.float())                   # Eq. 4
        else:
            parts = ddl_loss(clip[:, :, t], recon.float(), anomalous[:, :, t], recon_anomalous.float(),
                             anomaly.mask[:, 0, t], cfg.ddl)                                     # Eq. 3
        values = parts.as_floats()
        if self.world > 1:  # the global batch's values: each rank's share-weighted part, summed
            values = dict(zip(values, distributed.all_sum([v * share for v in values.values()])))
        if not all(math.isfinite(v) for v in values.values()):
            self.save_checkpoint()  # no-op for the weights: the last good state is still in memory
            raise distributed.shared_error(
                f"non-finite loss at step {step}: {values}; lower --lr or change "
                f"ddl.eps; the last good checkpoint is {self.run_dir / CHECKPOINT}")
        loss = parts.total
        if mine * self.world != len(batch):  # unequal slices: DDP's mean over ranks must weigh them by size
            loss = loss * (share * self.world)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.train.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.train.clip_grad)
        self.optimizer.step()
        if self.average is not None:
            self.average.update_parameters(self.model)
        return values

    @property
    def kept(self) -> nn.Module:
        """The network that is validated, kept and scored: the moving average when ``train.ema``."""
        return self.average.module if self.average is not None else self.model

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        return {
            "version": __version__,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "anomaly_logit": self.weight.logit.detach().clone(),
            "anomaly_weight": self.weight().item(),
            "optimizer": self.optimizer.state_dict(),
            "lr_dropped_at": self.lr_dropped_at,
            "layout": {"channels_last": self.conv_layout.channels_last, "fold": self.conv_layout.fold},
            "average": None if self.average is None else self.average.state_dict(),
            **self.kept_model.state(),
            "validated_at": self.validated_at,
            "step": self.step,
            "skipped": self.skipped,
            "elapsed": self.elapsed,
            "total_steps": self.total_steps,
            "torch_rng": torch.get_rng_state(),
        }

    def save_checkpoint(self, extra: dict | None = None) -> None:
        if self.rank != 0:
            return
        state = self.state()
        if extra:
            state.update(extra)
        save_atomic(state, self.run_dir / CHECKPOINT)

    def save_snapshot(self) -> None:
        """Weights only (loadable like a checkpoint): ``RUN/snapshots/step_NNNNNN.pt``, with
        the BatchNorm statistics that training would end with if it stopped here (training
        itself continues with its own)."""
        with self.recalibrated(self.kept, self.cfg.train.bn_recalibration):  # every rank (sync BN)
            state = {k: v for k, v in self.state().items() if k not in ("optimizer", "average")}
            state["model"] = {k: v.clone() for k, v in self.kept.state_dict().items()}
        if self.rank != 0:
            return
        folder = self.run_dir / "snapshots"
        folder.mkdir(exist_ok=True)
        save_atomic(state, folder / f"step_{self.step:06d}.pt")

    def normal_batches(self, count: int, data: TrainingData | None = None) -> Iterator[torch.Tensor]:
        """``count`` normal training windows of ``data`` (default: the current frames), in batches, a fixed
        function of the seed: what BatchNorm statistics are re-estimated on."""
        t = self.cfg.train
        return recalibration_batches((data or self.data).frames, self.index, count, t.batch_size, t.seed)

    def recalibrated(self, model: nn.Module, count: int):
        """A context in which ``model``'s BatchNorm statistics are re-estimated on ``count`` normal
        training windows (:func:`ddlvad.models.recalibrated`); afterwards training's own come back."""
        return recalibrated(model, self.normal_batches(count), self.device)

    # ------------------------------------------------------------------ validation
    def validate(self, log) -> dict:
        """The validation signal of the kept network now (every rank computes it, rank 0's
        counts); a new best is written to ``best.pt``. Returns the metrics row."""
        t = self.cfg.train
        with self.recalibrated(self.kept, min(t.bn_recalibration, 2 * t.val_windows)) as model:
            values = distributed.broadcast(self.validator(model))
            signal = signal_value(values, t.val_metric)
            best = self.kept_model.offer(signal, self.step)
            if best and self.rank == 0:
                self.save_best(model, {"validation": values})
        self.validated_at = self.step
        row = {"step": self.step, **values, "signal": signal, "best": best, "stale": self.kept_model.plateau.stale}
        if log is not None:
            log.write(json.dumps(row) + "\n")
            log.flush()
        return row

    def save_best(self, model: nn.Module, extra: dict) -> None:
        """``best.pt`` (``best-start.pt`` while a growing run is at its start size, so that each
        size's best has its own file): ``model``'s weights and BatchNorm statistics as they are
        now, loadable like a checkpoint (no optimiser state)."""
        state = {k: v for k, v in self.state().items() if k not in ("optimizer", "average", "torch_rng", "start_best")}
        state["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save_atomic({**state, **extra}, self.kept_model.file)

    def stop_reason(self) -> str | None:
        """Why training ends after this step (None: it goes on). A first plateau of the signal
        under ``until=converged`` drops the learning rate instead, if it has not dropped yet."""
        t = self.cfg.train
        if self.step >= self.total_steps:
            return "steps"
        if t.minutes is not None and self.elapsed >= t.minutes * 60:
            return "minutes"
        if t.until == "converged" and self.kept_model.plateau.levelled:
            if self.lr_dropped_at is None:
                self.lr_dropped_at = self.step
                self.kept_model.plateau.restart()
                return None
            return "converged"
        return None

    def load_state(self, ckpt: dict) -> None:
        check_resume(ckpt, self.cfg)
        if "layout" in ckpt and ConvLayout(**ckpt["layout"]) != self.conv_layout:  # resume exactly as the run began
            self.conv_layout = ConvLayout(**ckpt["layout"])
            apply_layout(self.model, self.conv_layout)
            if self.average is not None:
                apply_layout(self.average.module, self.conv_layout)
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError:
            raise UserError("--resume: the checkpoint does not fit this model size") from None
        with torch.no_grad():
            self.weight.logit.copy_(ckpt["anomaly_logit"])
        self.optimizer.load_state_dict(ckpt["optimizer"])  # the lr is set from lr_factor at every step
        self.lr_dropped_at = ckpt.get("lr_dropped_at")
        if self.lr_dropped_at is None and "scheduler" in ckpt and self.step >= ckpt["scheduler"].get("step_size", 1e18):
            self.lr_dropped_at = int(ckpt["scheduler"]["step_size"])  # a checkpoint of 0.1.0's StepLR
        if self.average is not None and ckpt.get("average") is not None:
            self.average.load_state_dict(ckpt["average"])
        self.kept_model.load_state(ckpt)
        self.validated_at = ckpt.get("validated_at")
        self.step = int(ckpt["step"])
        self.skipped = int(ckpt.get("skipped", 0))
        self.elapsed = float(ckpt.get("elapsed", 0.0))
        torch.set_rng_state(ckpt["torch_rng"])
        if self.due_to_grow(self.step - 1):  # it grew at a step before the checkpoint's: the plateau is the grown one
            self.grow(fresh=False)

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False) -> dict:
        """Train until the step budget, the time budget or convergence (``train.until``), then
        finish: BatchNorm statistics, threshold, ``checkpoint.pt`` (and ``best.pt``), summary."""
        cfg = self.cfg
        t = cfg.train
        main = self.rank == 0
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume:
            self.load_state(distributed.run_on_main(load_checkpoint, self.run_dir))
            if main:
                truncate_log(metrics_path, self.step)
        elif main:
            cfg.to_yaml(self.run_dir / "config.yaml")
            atomic_write(metrics_path, "")
        interrupted = _InterruptFlag()
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.progress and main),
                   desc="train", unit="step", dynamic_ncols=True)
        t0 = time.perf_counter() - self.elapsed
        try:
            with (open(metrics_path, "a") if main else contextlib.nullcontext()) as log, interrupted:
                self.stopped = self.stop_reason()
                while self.stopped is None:
                    parts = self.train_step(self.step)
                    self.step += 1
                    self.elapsed = time.perf_counter() - t0
                    if self.world > 1:  # one clock and one Ctrl-C for all: rank 0's time, anyone's signal
                        hit, elapsed = distributed.all_sum([interrupted.hit, self.elapsed if main else 0.0])
                        interrupted.hit, self.elapsed = hit > 0, elapsed
                    if parts is None:
                        self.skipped += 1
                    if main and (self.step % t.log_every == 0 or self.step == self.total_steps):
                        row = {"step": self.step, "epoch": (self.step - 1) // self.batches_per_epoch,
                               **(parts or {"skipped": 1}), "weight": self.weight().item(),
                               "lr": self.optimizer.param_groups[0]["lr"], "seconds": round(self.elapsed, 3)}
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items()
                                         if k in ("loss", "recon", "dist", "weight")})
                    bar.update(1)
                    if self.validator is not None and self.step % t.val_every == 0:
                        self.validate(log)
                    self.stopped = self.stop_reason()
                    if self.stopped and self.validator is not None and self.validated_at != self.step:
                        self.validate(log)  # the best model is judged up to the last step
                        self.stopped = self.stop_reason() or self.stopped
                    epoch_end = self.step % self.batches_per_epoch == 0
                    if self.step % t.checkpoint_every == 0 or epoch_end or self.stopped:
                        self.save_checkpoint()
                    if t.snapshot_every and self.step % t.snapshot_every == 0:
                        self.save_snapshot()
                    if interrupted.hit:
                        self.save_checkpoint()
                        raise TrainingInterrupted(
                            f"interrupted at step {self.step}; checkpoint saved: resume with --resume")
        finally:
            bar.close()
        return self.finish()

    def finish(self) -> dict:
        """The model to keep (the best by the validation signal, else the moving average, else
        the last weights) gets its BatchNorm statistics re-estimated and a threshold; without
        validation or averaging it is written into ``checkpoint.pt`` as before, else into
        ``best.pt`` (``checkpoint.pt`` keeps the state to resume from)."""
        t = self.cfg.train
        main = self.rank == 0
        never_grew = self.full is not None
        grew_at = None if t.start_scale == 1 or never_grew else self.lr_dropped_at
        if never_grew:  # no learning-rate drop: the kept model (best-start.pt) is still used at full size
            self.grow(fresh=False)
        # the start size's best model is kept if no full-size one beats its signal (docs/method.md#progressive)
        choice = self.kept_model
        at_start = choice.keeps_start()
        kept_cfg, data = (self.cfg.at_start(), self.data.at_start()) if at_start else (self.cfg, self.data)
        separate = self.validator is not None or self.average is not None
        if separate:
            self.save_checkpoint()  # the state to resume from, before the kept network changes
            best_file = choice.kept_file(never_grew)
            if self.validator is not None and best_file.is_file():
                best = distributed.run_on_main(load_checkpoint, best_file)
                self.kept.load_state_dict(best["model"])
        final = self.kept
        # on every rank, same windows (sync BN all-reduces in forward)
        recalibrate_batchnorm(final, self.normal_batches(t.bn_recalibration, data), self.device)
        distributed.broadcast_buffers(final)  # plain BN: every rank ends with rank 0's statistics
        weights = None  # score.position (docs/method.md#position): each place's normal error level
        if kept_cfg.score.position == "mean":
            weights = distributed.run_on_main(lambda: position_weights(Scorer(final, kept_cfg.score),
                                                                       data.frames_to_score()))
        threshold = distributed.run_on_main(lambda: calibrate_thresholds(Scorer(final, kept_cfg.score, weights=weights),
                                                                         data.frames_to_score()))
        converged = None if self.validator is None else (self.stopped == "converged" or choice.plateau.levelled)
        summary = {
            "steps": self.step, "skipped_batches": self.skipped,
            "epochs": self.step / self.batches_per_epoch, "minutes": round(self.elapsed / 60, 3),
            "stopped": self.stopped, "converged": converged,
            "anomaly_weight": self.weight().item(), "threshold": threshold,
            "training_windows": len(self.index), "processes": self.world, "version": __version__,
            "machine": machine_info(self.device),
        }
        if t.start_scale != 1:
            start = self.cfg.at_start().data
            summary["start_size"] = [start.height, start.width]
            summary["grown_at"] = grew_at
            summary["kept_size"] = [kept_cfg.data.height, kept_cfg.data.width]
        learned = choice.learned
        extra = {"threshold": threshold, "stopped": self.stopped, "converged": converged,
                 "learned": None if self.validator is None else learned, "kept_at_start": at_start}
        if weights is not None:
            extra["position"] = {"weights": weights}
        if self.validator is not None:
            best = choice.best()
            summary["validation"] = {
                "fraction": t.val_fraction, "windows": len(self.validator), "metric": t.val_metric,
                "frames": int(sum(len(f) for f in self.validator.held.frames)),
                "best_step": best["step"], "best_signal": best["signal"],
                "floor": choice.plateau.floor, "learned": learned}
            if choice.start_best is not None:
                summary["validation"]["start_best"] = choice.start_best
                summary["validation"]["kept_at_start"] = at_start
            if not learned and t.val_metric == "auc":
                extra["check"] = summary["validation"]["check"] = self.stronger_check(final)
        if separate:
            if main:
                kept = summary["validation"]["best_step"] if self.validator is not None else self.step
                self.save_best(final, {**extra, "step": kept, "kept_step": kept, "trained_steps": self.step,
                                       "config": kept_cfg.to_dict()})
                summary["model_file"] = BEST
        else:
            self.save_checkpoint(extra)
            summary["model_file"] = CHECKPOINT
        if main:
            atomic_write(self.run_dir / "summary.json", json.dumps(summary, indent=2))
            self.plot_training()
        return summary

    def stronger_check(self, model: nn.Module) -> dict:
        """The kept model's validation AUC with pseudo anomalies of ``train.val_check_weight``:
        tells a model that has not learned from a signal too faint for the scene."""
        weight = self.cfg.train.val_check_weight
        auc = distributed.broadcast(self.validator(model, weight))["val_auc"]
        return {"weight": weight, "val_auc": auc, "above_floor": self.kept_model.plateau.above_floor(auc)}

    def plot_training(self) -> None:
        """``RUN/training.png``: losses, anomaly weight and validation signals over the steps."""
        from .plots import save_figure, training_figure

        rows = [json.loads(line) for line in (self.run_dir / "metrics.jsonl").read_text().splitlines() if line]
        if any("loss" in r for r in rows):
            save_figure(training_figure(rows), self.run_dir / "training.png")


def check_global_batch(batch_size: int, world: int) -> None:
    """``train.batch_size`` is the global batch: each of ``world`` processes takes an equal slice."""
    if batch_size % world:
        raise distributed.shared_error(
            f"train.batch_size={batch_size} (--batch-size) is the global batch: it must be divisible by "
            f"the {world} processes (e.g. --batch-size {batch_size // world * world or world})")


class _InterruptFlag:
    """Turns SIGINT/SIGTERM into a flag checked after each step (then checkpoint and exit)."""

    def __init__(self):
        self.hit = False
        self._old: dict = {}

    def _handler(self, signum, frame):
        if self.hit:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.hit = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
