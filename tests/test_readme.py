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
    evaluation = json.loads((tmp_path / "demo" / "eval" / "report.json").read_text())
    assert report["auc_micro"] == evaluation["auc_micro"] and report["frames_scored"] == evaluation["frames_scored"]
    assert f"frame-level AUC {100 * report['auc_micro']:.2f} %" in out  # the line printed is the report's figure
    assert report["localisation"]["rbdc"] == evaluation["localisation"]["rbdc"] is not None
    assert "stopped by its step budget" in out and "has not learned the scene" in err  # 3 steps: below the floor
    assert (tmp_path / "demo" / "run" / "best.pt").is_file()


def readme_demo_figures() -> dict[str, float]:
    """What the README's set-up section promises of the demo: the micro and macro AUC it measured,
    and the most minutes it says the demo takes on a slow machine."""
    text = (ROOT / "README.md").read_text().split("## Set-up", 1)[1].split("\n## ", 1)[0]
    auc = re.search(r"\*\*([\d.]+) % micro / ([\d.]+) % macro\s+in\s+([\d.]+)\s+minutes\*\*", text)
    most = re.search(r"at most about\s+([\d.]+)\s+minutes", text)
    return {"micro": float(auc.group(1)), "macro": float(auc.group(2)), "minutes": float(auc.group(3)),
            "at_most": float(most.group(1))}


def test_the_readme_states_its_demo_figures():
    figures = readme_demo_figures()
    assert 50 < figures["micro"] <= 100 and figures["minutes"] <= figures["at_most"] < 10


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """`ddlvad demo` as the README runs it, against the README's own figures: its micro AUC within
    the spread the README reports over machines and seeds (about 3 points), in less than the
    10 minutes the demo is promised to take."""
    out = subprocess.run([sys.executable, "-m", "ddlvad", "demo", "--out", str(tmp_path / "demo"), "--quiet"],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    figures = readme_demo_figures()
    assert 100 * report["auc_micro"] >= figures["micro"] - 3.0, (report["auc_micro"], figures)
    assert report["minutes"] < 10
    assert f"frame-level AUC {100 * report['auc_micro']:.2f} %" in out.stdout
