"""The README's two set-up commands are the ones CI and users run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_setup_is_exactly_two_commands_demo_and_tests():
    demo, tests = setup_commands()
    assert demo.endswith("&& ddlvad demo") and "pip install torch==2.13.0" in demo
    assert tests.endswith("&& python -m pytest") and "'.[test]'" in tests


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_torch_pin_satisfies_the_declared_range():
    from packaging.specifiers import SpecifierSet

    pyproject = (ROOT / "pyproject.toml").read_text()
    spec = re.search(r'"torch([^"]+)"', pyproject).group(1)
    assert "2.13.0" in SpecifierSet(spec)


def test_demo_command_line_parses():
    out = subprocess.run([sys.executable, "-m", "ddlvad", "demo", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--out" in out.stdout


def test_demo_pipeline_briefly(tmp_path, cli):
    """The demo's whole path (scene, tracks, validated training, evaluation with localisation)
    with 3 training steps."""
    code, out, err = cli("demo", "--out", tmp_path / "demo", "--steps", "3", "--quiet")
    assert code == 0, err
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["steps"] == 3 and report["stopped"] == "steps" and report["converged"] is False
    assert 0 <= report["auc_micro"] <= 1 and report["localisation"]["rbdc"] is not None
    assert "stopped by its step budget" in out and "has not learned the scene" in err  # 3 steps: below the floor
    assert (tmp_path / "demo" / "run" / "best.pt").is_file()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """`ddlvad demo` as the README runs it (about 8 minutes on 2 cores)."""
    out = subprocess.run([sys.executable, "-m", "ddlvad", "demo", "--out", str(tmp_path / "demo"), "--quiet"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["auc_micro"] > 0.75 and report["minutes"] < 10
    assert "frame-level AUC" in out.stdout
