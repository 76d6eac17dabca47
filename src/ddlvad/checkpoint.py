"""Checkpoints: atomic writes, safe loads, rebuilding a trained model from a run folder, and
the rules of resuming a run (:func:`resume_config_file`, :func:`require_checkpoint`,
:func:`check_resume`, :data:`FREE_ON_RESUME`, :func:`truncate_log`): all of them here.

A checkpoint is a ``torch.save`` of plain containers and tensors only (model and anomaly
weight state, optimiser, scheduler, step counters, RNG state, the config as a dict, the
package version, the threshold), so it loads with ``weights_only=True``: a file that needs
pickle code execution is refused, never run.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .config import Config
from .errors import UserError
from .files import atomic_write, atomic_writer

CHECKPOINT = "checkpoint.pt"
"""The state to resume training from."""
BEST = "best.pt"
"""The model to score with, when training kept one apart from its last state (the best by the
validation signal, or the moving average of the weights)."""
START_BEST = "best-start.pt"
"""With progressive resizing (``train.start_scale``): the best model by the validation signal
among those trained at the start size (``best.pt`` holds full-size ones only); at the end it
becomes ``best.pt`` (scored at the start size) if no full-size model beats its signal
(docs/method.md#progressive)."""


def model_file(run: str | Path) -> Path:
    """The file scoring loads from ``run``: ``best.pt`` when the run has one, else ``best-start.pt``
    (a growing run stopped at its start size), else ``checkpoint.pt`` (``run`` may also be a
    checkpoint file itself)."""
    run = Path(run)
    if not run.is_dir():
        return run
    return next((run / name for name in (BEST, START_BEST) if (run / name).is_file()), run / CHECKPOINT)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`ddlvad.files.atomic_writer`: a crash or a full disk
    leaves the previous checkpoint intact."""
    with atomic_writer(path, "wb") as handle:
        torch.save(obj, handle)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: train a model first (`ddlvad train ... --out {path.parent}`)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise UserError(f"refusing {path}: it needs pickle code execution to load ({first[:120]}); "
                        f"only ddlvad checkpoints are accepted") from None
    except Exception as exc:  # truncated or corrupt file
        raise UserError(f"{path} is not a readable checkpoint ({type(exc).__name__}); "
                        f"resume from an earlier run or train again") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise UserError(f"{path} is not a ddlvad checkpoint (no model/config inside)")
    major = str(ckpt.get("version", "0")).split(".")[0]
    if major != __version__.split(".")[0]:
        raise UserError(f"{path} was written by ddlvad {ckpt.get('version')} and this is {__version__}: "
                        f"the formats differ; use a matching ddlvad version")
    return ckpt


def load_model(run: str | Path) -> tuple[torch.nn.Module, Config, dict[str, Any]]:
    """The trained network of a run folder (or checkpoint file), in eval mode, with its
    config and checkpoint dict."""
    from .models import build_model

    ckpt = load_checkpoint(model_file(run))
    cfg = Config.from_dict(ckpt["config"])
    model = build_model(cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint in {run} does not fit the model its config describes "
                        f"({str(exc).splitlines()[0][:160]})") from None
    model.eval()
    return model, cfg, ckpt


# ---------------------------------------------------------------------- resuming a run
FREE_ON_RESUME = {"train.steps", "train.epochs", "train.minutes", "train.threads", "train.log_every",
                  "train.checkpoint_every", "train.snapshot_every", "data.cache_dir"}
"""Settings that may change when a run is resumed (they do not change what is computed)."""


def resume_config_file(out: str | Path | None, config: str | None, preset: str | None) -> Path:
    """The config a resumed run continues with: its own ``OUT/config.yaml`` (``--resume`` takes
    neither ``--config`` nor ``--preset``)."""
    if not out:
        raise UserError("--resume needs --out RUN: the run folder to continue")
    if config or preset:
        raise UserError("--resume continues a run with its own config.yaml: drop --config/--preset")
    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise UserError(f"--resume: no config.yaml in {out}; start a new run without --resume")
    return path


def require_checkpoint(run_dir: Path) -> None:
    """``--resume`` needs the run's checkpoint."""
    if not (Path(run_dir) / CHECKPOINT).is_file():
        raise UserError(f"--resume: no checkpoint in {run_dir}; start a new run without --resume")


def check_resume(ckpt: dict[str, Any], cfg: Config) -> None:
    """A run resumes only with the config it began with, but for :data:`FREE_ON_RESUME`."""
    differ = {k: v for k, v in Config.from_dict(ckpt["config"]).diff(cfg).items() if k not in FREE_ON_RESUME}
    if differ:
        what = ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in list(differ.items())[:4])
        raise UserError(f"--resume: the run was made with another config ({what}); "
                        f"resume without changing settings other than --steps/--epochs")


def truncate_log(path: Path, step: int) -> None:
    """Drop the lines of a run's ``metrics.jsonl`` written after the checkpoint's ``step`` (they
    will be written again), atomically: a crash leaves the old log or the new one."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError):
            break
    atomic_write(path, "".join(line + "\n" for line in keep))
