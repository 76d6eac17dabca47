"""The GPU reproduction script: its CPU dry run goes through the whole path, and without CUDA
it refuses in one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "bench.gpu.reproduce_paper", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_dry_run_trains_evaluates_and_reports_every_figure():
    done = run_script("--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("machine: ") and "dry run" in lines[1] and "AUC micro" in lines[2]
    assert "frames/s" in lines[3] and "peak GPU memory" in lines[3]
    result = json.loads(Path(lines[-1].split("written: ", 1)[1]).read_text())
    assert result["dry_run"] and result["preset"] == "tiny" and result["steps"] == 4
    assert 0 <= result["auc_micro"] <= 1 and result["scoring_fps"] > 0
    assert result["cudnn_benchmark"] is False and result["precision"] == "fp32"  # the measured defaults


def test_an_interrupted_run_resumes_to_its_full_budget(tmp_path):
    """A GPU call's time limit cuts the run; --resume with the same flags finishes it."""
    run = tmp_path / "run"
    first = run_script("--dry-run", "--steps", "2", "--out", str(run))
    assert first.returncode == 0, first.stderr[-2000:]
    before = (run / "metrics.jsonl").read_text().splitlines()
    again = run_script("--dry-run", "--steps", "4", "--out", str(run), "--resume")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run / "reproduce.json").read_text())["steps"] == 4
    after = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in after] == [1, 2, 3, 4]
    assert after[:2] == before  # steps 1-2 kept as logged (a restart would re-time them): continued
    fresh = run_script("--dry-run", "--steps", "3", "--out", str(run), "--cudnn-benchmark")  # without --resume: replaced
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    result = json.loads((run / "reproduce.json").read_text())
    assert result["steps"] == 3 and result["cudnn_benchmark"] is True
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal is for machines without CUDA")
def test_without_cuda_it_refuses_in_one_line():
    done = run_script("--data", "/nonexistent")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "no CUDA" in done.stderr
