"""Edge values of every numeric flag (0, negative, NaN, inf, huge): each either works as a user
would expect or ends in one line on stderr and exit code 2, naming the flag; outputs are never
left half-written.

One tiny run (one training step) serves every detect, evaluate and export case; train flags
are checked without training (the error comes before any work).
"""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest

from ddlvad.cli import main
from ddlvad.overlay import STRIP, OverlayRenderer
from ddlvad.stream import AnomalyDetector, FrameResult


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, scene):
    """A run trained for one step on the synthetic scene (its stored threshold is what
    detection uses by default)."""
    base = tmp_path_factory.mktemp("edges")
    run = base / "run"
    assert main(["train", "--data", str(scene), "--preset", "tiny", "--steps", "1", "--out", str(run),
                 "--cache-dir", str(base / "cache"), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def clip(tmp_path_factory, scene):
    """A folder of the first 8 frames of test video 02 (160x240 JPEG)."""
    folder = tmp_path_factory.mktemp("clip") / "clip"
    folder.mkdir()
    for path in sorted((scene / "testing" / "frames" / "02").iterdir())[:8]:
        shutil.copy(path, folder / path.name)
    return folder


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def one_line_error(code, err, *words):
    """Exit 2, one stderr line starting with ``ddlvad: error:`` that holds every word, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ddlvad: error:"), err
    assert "Traceback" not in err and all(w in lines[0] for w in words), err


# ---------------------------------------------------------------------- --threshold 0
def test_threshold_0_flags_every_scored_frame_and_draws_the_overlay(tiny_run, clip, tmp_path, cli):
    out = tmp_path / "out"
    code, stdout, err = cli("detect", clip, "--run", tiny_run, "--out", out, "--threshold", "0", "--min-frames", "1")
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "scores.csv")))
    scored = [r for r in rows if r["score"]]
    assert len(rows) == 8 and len(scored) == 6 and all(r["anomalous"] == "1" for r in scored)
    report = json.loads((out / "events.json").read_text())
    assert report["complete"] and report["threshold"] == 0
    assert [(e["start_frame"], e["end_frame"]) for e in report["events"]] == [(1, 6)]
    assert len(read_video(out / "overlay.mp4")) == 8


def fake_result(frame, score, error_map=None):
    anomalous = np.isfinite(score) and score > 0
    box = None if error_map is None else (0, 0, 8, 8)
    return FrameResult(frame, frame / 25, score, anomalous, error_map, box, np.full((32, 48, 3), 99, np.uint8))


@pytest.mark.parametrize("threshold", [0.0, 1e30])
def test_the_overlay_draws_any_threshold_and_a_score_of_0(threshold):
    renderer = OverlayRenderer((32, 48, 3), threshold)
    frames = [renderer.render(fake_result(0, float("nan"))),
              renderer.render(fake_result(1, 0.0, np.zeros((32, 48), np.float32))),
              renderer.render(fake_result(2, 0.5, np.full((32, 48), 0.5, np.float32)))]
    for image in frames:
        assert image.shape == (32 + STRIP, 48, 3) and image.dtype == np.uint8
    # the picture of an error-free frame is the frame itself (no heat where there is no error)
    assert (frames[1][:32] == 99).mean() > 0.5


def test_a_score_of_exactly_0_is_anomalous_at_threshold_0(tiny_run):
    from ddlvad.score import ScoredFrame

    detector = AnomalyDetector.load(tiny_run, threshold=0.0)
    zero = ScoredFrame(3, 0.0, None, (0, 0, 8, 8), np.zeros((32, 48, 1), np.uint8))
    assert detector._result(zero, 25.0).anomalous
    edge = ScoredFrame(0, float("nan"), None, None, np.zeros((32, 48, 1), np.uint8))
    assert not detector._result(edge, 25.0).anomalous
    detector = AnomalyDetector.load(tiny_run, threshold=0.1)
    assert not detector._result(zero, 25.0).anomalous


# ---------------------------------------------------------------------- --debug before or after the verb
def failing_call(verb, tmp_path):
    """Arguments of ``verb`` that end in a UserError before any work."""
    (tmp_path / "demo" / "run").mkdir(parents=True, exist_ok=True)
    (tmp_path / "demo" / "run" / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "full").mkdir(exist_ok=True)
    (tmp_path / "full" / "x").write_text("")
    missing = str(tmp_path / "missing")
    return {"demo": ["demo", "--out", tmp_path / "demo"], "synth": ["synth", tmp_path / "full"],
            "train": ["train", "--data", missing, "--preset", "tiny", "--lr", "0"],
            "evaluate": ["evaluate", missing, "--data", missing], "detect": ["detect", missing, "--run", missing],
            "export": ["export", missing, "--format", "onnx"], "track": ["track", missing],
            "config": ["config", "--lr", "0"], "data info": ["data", "info", missing]}[verb]


VERBS = ["demo", "synth", "train", "evaluate", "detect", "export", "track", "config", "data info"]


def test_every_verb_is_covered():
    from ddlvad.cli import COMMANDS, DATA_COMMANDS

    assert sorted(VERBS) == sorted([*COMMANDS, *(f"data {name}" for name in DATA_COMMANDS)])


@pytest.mark.parametrize("verb", VERBS)
def test_debug_before_or_after_the_verb_shows_the_traceback(verb, tmp_path, cli):
    from ddlvad.errors import UserError

    args = failing_call(verb, tmp_path)
    code, _, err = cli(*args)
    one_line_error(code, err)
    for where in (0, len(args)):  # before the verb, after its arguments: the same error, raised
        with pytest.raises(UserError) as raised:
            main([str(a) for a in args[:where] + ["--debug"] + args[where:]])
        assert err.strip() == f"ddlvad: error: {raised.value}"


def test_debug_prints_a_traceback_from_the_console(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-m", "ddlvad", "data", "info", str(tmp_path / "missing"), "--debug"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "UserError" in done.stderr
