"""``ddlvad train``: one model into a run folder (one process, or one DDP run under torchrun)."""

from __future__ import annotations

from pathlib import Path

from .. import distributed
from ..config import Config
from ..data.clips import TrainingData
from ..data.frames import FrameSpec, FrameStore
from ..data.layouts import index_dataset
from ..objects.dataset import training_tracks
from ..runs import convergence_warning, prepare_run_dir
from ..trainer import Trainer, check_global_batch
from . import Log, silent, to_stderr


@distributed.collective
def train(cfg: Config, root: str | Path, out: str | Path, *, resume: bool = False, force: bool = False,
          tracks_file: str | Path | None = None, progress: bool = True, log: Log = to_stderr) -> dict:
    """Train one model on the training split of ``root`` into ``out``; returns the summary.
    Under torchrun: one DDP run, rank 0 writes ``out``."""
    out = Path(out)
    if not distributed.is_main():
        log, progress = silent, False
    cfg.validate()
    for warning in cfg.warnings():
        log(f"warning: {warning}")
    if distributed.is_active():
        check_global_batch(cfg.train.batch_size, distributed.world_size())
    distributed.run_on_main(prepare_run_dir, out, resume, force)
    with distributed.local_main_first():  # fill the frame and track caches once per machine
        data = training_data(cfg, root, tracks_file, progress, log)
    trainer = Trainer(cfg, data, out, progress=progress)
    where = f" on {trainer.world} processes ({trainer.device.type})" if trainer.world > 1 else ""
    start = cfg.at_start().data
    grows = (f", frames at {start.height}x{start.width} until the learning rate drops, then "
             f"{cfg.data.height}x{cfg.data.width} (train.start_scale)" if start is not cfg.data else "")
    log(f"training {cfg.model.arch} ({cfg.ddl.mode}) on {len(trainer.index)} windows of "
        f"{len(data.frames)} videos for {trainer.total_steps} steps{where}{grows} -> {out}")
    summary = trainer.run(resume=resume)
    why = {"steps": "its step budget", "minutes": "its time budget", "converged": "convergence"}.get(
        summary["stopped"], summary["stopped"])
    grew = ("" if "start_size" not in summary else f", frames grown at step {summary['grown_at']}"
            if summary["grown_at"] is not None else ", frames never grown (no learning-rate drop)")
    log(f"done: {summary['steps']} steps in {summary['minutes']:.1f} min (stopped by {why}){grew}, anomaly weight "
        f"{summary['anomaly_weight']:.3f}")
    if summary.get("kept_size", [cfg.data.height, cfg.data.width]) != [cfg.data.height, cfg.data.width]:
        h, w = summary["kept_size"]
        log(f"kept the model of step {summary['validation']['best_step']}, trained at {h}x{w}: its validation signal "
            f"({summary['validation']['best_signal']:.3f}) beat every {cfg.data.height}x{cfg.data.width} model's; "
            f"it scores frames at {h}x{w} (docs/method.md#progressive)")
    warning = convergence_warning(summary, out)
    if warning:
        log(warning)
    return summary


def training_data(cfg: Config, root: str | Path, tracks_file: str | Path | None = None, progress: bool = False,
                  log: Log = silent) -> TrainingData:
    """The training split of ``root`` as the network sees it: frames decoded and resized for
    ``cfg.data`` (cached), with the objects' tracks (``tracks_file``, the cache, or tracked now)."""
    index = index_dataset(root, cfg.data.dataset, cfg.data.scene, splits=("training",))
    spec, scored = FrameSpec.from_config(cfg.data), FrameSpec.for_scoring(cfg)
    store = FrameStore.of_split(index, "training", spec, cfg.data.cache_dir, progress)
    tracks = training_tracks(cfg, index, store, tracks_file, progress, log)
    scoring = None if scored == spec else lambda: FrameStore.of_split(index, "training", scored, cfg.data.cache_dir).arrays
    start = FrameSpec.from_config(cfg.at_start().data)  # train.start_scale: the size training starts at
    small = None if start == spec else FrameStore.of_split(index, "training", start, cfg.data.cache_dir, progress).arrays
    return TrainingData(store.arrays, tracks, [r.video_id for r in store.videos], scoring, small)
