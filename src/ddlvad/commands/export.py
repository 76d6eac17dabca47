"""``ddlvad export``: a run's model as an ONNX or TorchScript file (clip -> reconstruction, error, score)."""

from __future__ import annotations

import json
from pathlib import Path

from ..checkpoint import load_model
from ..exporter import SUFFIX, ScoringModule, export_metadata, exported_bytes
from ..files import atomic_write, writable_dir
from ..runs import run_dir_of


def export(run: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> Path:
    """Write the :class:`ddlvad.exporter.ScoringModule` of ``run`` as ``fmt`` to ``out`` (default
    ``RUN/model.onnx`` or ``RUN/model.torchscript.pt``); returns the path."""
    model, cfg, ckpt = load_model(run)
    path = Path(out) if out else run_dir_of(run) / f"model{SUFFIX.get(fmt, '')}"
    data = exported_bytes(ScoringModule(model, cfg.score), cfg, fmt, json.dumps(export_metadata(cfg, ckpt)))
    writable_dir(path.parent)
    return atomic_write(path, data)
