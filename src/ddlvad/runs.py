"""What a run folder holds, and where commands put their outputs by default.

A run folder (``ddlvad train --out RUN``) holds ``config.yaml``, ``metrics.jsonl``,
``checkpoint.pt``, ``summary.json`` and optionally ``snapshots/``; ``ddlvad evaluate``
writes ``RUN/eval/`` and ``ddlvad detect`` writes ``RUN/detect/<source>/``. A folder of
per-scene runs (ShanghaiTech, one model per scene) holds ``scene-S/`` run folders.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .checkpoint import BEST, CHECKPOINT, START_BEST, require_checkpoint
from .errors import UserError
from .files import safe_name, writable_dir

RUN_FILES = ("config.yaml", "metrics.jsonl", CHECKPOINT, BEST, START_BEST, "summary.json", "snapshots", "training.png")
"""What training writes into a run folder (``--force`` removes these, and ``eval/``)."""
SCENE_RUN = "scene-{}"
"""Folder of one scene's run inside a per-scene folder."""


def prepare_run_dir(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite another run unless ``--force`` (or ``--resume`` to continue it)."""
    if resume:
        require_checkpoint(run_dir)
        return
    if run_dir.exists() and any((run_dir / f).exists() for f in RUN_FILES):
        if not force:
            raise UserError(f"{run_dir} already holds a run: pass --resume to continue it or "
                            f"--force to replace it (or choose another --out)")
        for name in RUN_FILES + ("eval",):
            target = run_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
    writable_dir(run_dir)


def run_dir_of(run: str | Path) -> Path:
    """The run folder of ``run`` (a run folder, or a checkpoint file inside one)."""
    run = Path(run)
    return run if run.is_dir() else run.parent


def evaluation_dir(run: str | Path) -> Path:
    """Default output of ``ddlvad evaluate``: ``RUN/eval`` (``eval-<name>`` beside a checkpoint file)."""
    run = Path(run)
    return run / "eval" if run.is_dir() else run.parent / f"eval-{run.stem}"


def detection_dir(run: str | Path, source_name: str) -> Path:
    """Default output of ``ddlvad detect``: ``RUN/detect/<source name>``."""
    return run_dir_of(run) / "detect" / safe_name(source_name)


def scene_runs(folder: str | Path) -> dict[str, Path]:
    """``scene -> run folder`` of the scenes of a per-scene folder that hold a checkpoint."""
    folder = Path(folder)
    prefix = SCENE_RUN.format("")
    return {p.parent.name[len(prefix):]: p.parent for p in sorted(folder.glob(SCENE_RUN.format("*") + "/" + CHECKPOINT))}


def is_scene_folder(path: str | Path) -> bool:
    """True for a folder of per-scene runs (``scene-*/checkpoint.pt``) that is no run itself."""
    path = Path(path)
    return path.is_dir() and not (path / CHECKPOINT).exists() and bool(scene_runs(path))


def convergence_warning(info: dict, run: str | Path) -> str | None:
    """One line when a run's ``summary.json`` (or kept model) says ``converged: false``: training
    ended by its step or time budget while the validation signal was still rising."""
    if info.get("converged") is not False:
        return None
    validation = info.get("validation") or {}  # summary.json; a kept model's checkpoint has the keys at the top
    step = info.get("steps", info.get("trained_steps", info.get("step")))
    best = info.get("kept_step", validation.get("best_step"))
    check = info.get("check", validation.get("check")) or {}
    if check.get("above_floor"):
        return (f"warning: training ended by its {info.get('stopped') or 'budget'} at step {step} and its validation "
                f"signal never rose above its floor (train.val_floor), but with stronger pseudo anomalies "
                f"(s = {check['weight']:g}) it does (AUC {check['val_auc']:.2f}): the model has learned, but the "
                f"default ones are too faint for this scene to choose a model by (the kept one, {BEST}, is the best of "
                f"near-chance values; {CHECKPOINT} is the last)")
    if info.get("learned", validation.get("learned")) is False:
        return (f"warning: training ended by its {info.get('stopped') or 'budget'} at step {step} and its validation "
                f"signal never rose above its floor (train.val_floor): the model has not learned the scene; "
                f"continue it with `ddlvad train --resume --out {run_dir_of(run)} --steps N` (or --minutes M), "
                f"or train again with another --seed")
    if info.get("kept_at_start", validation.get("kept_at_start")):
        return (f"warning: training ended by its {info.get('stopped') or 'budget'} at step {step} before its validation "
                f"signal at the full size levelled off, and no full-size model beat the best one trained at the start "
                f"size (train.start_scale), which is kept (step {best}): more steps at the full size might beat it; "
                f"`ddlvad train --resume --out {run_dir_of(run)} --steps N` (or --minutes M) tries")
    return (f"warning: training ended by its {info.get('stopped') or 'budget'} at step {step} before its validation "
            f"signal levelled off (best at step {best}): the model may be undertrained; continue it with "
            f"`ddlvad train --resume --out {run_dir_of(run)} --steps N` (or --minutes M)")
