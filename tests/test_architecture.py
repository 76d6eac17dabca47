"""The layers of the package, as imports: run-time code (scoring, streams, regions, overlays, the
watch service) never imports evaluation code (metrics, localisation metrics, reports, plots), and the
models know nothing of data, training or evaluation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
EVALUATION = {"ddlvad.metrics", "ddlvad.localisation", "ddlvad.report", "ddlvad.report_html", "ddlvad.plots",
              "ddlvad.commands.evaluate"}


def loaded_by(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(m for m in sys.modules if m.startswith('ddlvad'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": SRC},
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module", ["ddlvad.overlay", "ddlvad.exporter", "ddlvad.watch.service"])
def test_run_time_modules_import_no_evaluation_module(module):
    """``overlay`` imports ``stream``, which imports ``score`` and ``regions``; the watch service all of them."""
    if module.startswith("ddlvad.watch"):
        pytest.importorskip("fastapi")
    loaded = loaded_by(module)
    assert {"ddlvad.score", "ddlvad.stream", "ddlvad.regions"} <= loaded or module == "ddlvad.exporter"
    assert not loaded & EVALUATION


def test_models_import_no_data_training_or_evaluation():
    assert loaded_by("ddlvad.models") <= {"ddlvad", "ddlvad.models", "ddlvad.config", "ddlvad.errors"}
