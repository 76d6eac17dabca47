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


@pytest.fixture(scope="module")
def one_video(tmp_path_factory, scene):
    """The scene's test video 02 alone (frames, labels, masks): what evaluate scores, cheaply."""
    root = tmp_path_factory.mktemp("one") / "scene"
    for part in ("frames/02", "masks/02"):
        shutil.copytree(scene / "testing" / part, root / "testing" / part)
    shutil.copy(scene / "testing" / "labels" / "02.npy", (root / "testing" / "labels").mkdir(parents=True) or
                root / "testing" / "labels" / "02.npy")
    return root


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
    from ddlvad.stream import frame_result

    zero = ScoredFrame(3, 0.0, None, (0, 0, 8, 8), np.zeros((32, 48, 1), np.uint8))
    assert frame_result(zero, 0.12, 0.0, None).anomalous
    edge = ScoredFrame(0, float("nan"), None, None, np.zeros((32, 48, 1), np.uint8))
    assert not frame_result(edge, 0.0, 0.0, None).anomalous
    assert not frame_result(zero, 0.12, 0.1, None).anomalous
    assert AnomalyDetector.load(tiny_run, threshold=0.0).threshold == 0.0


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
            "config": ["config", "--lr", "0"], "data info": ["data", "info", missing],
            "watch": ["watch", str(tmp_path / "missing.yaml")]}[verb]


VERBS = ["demo", "synth", "train", "evaluate", "detect", "export", "track", "config", "data info", "watch"]


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


# ---------------------------------------------------------------------- the sweep
# Every numeric flag of every verb at 0, -1, NaN, inf, -inf, 1e30, 10**12 and 10**30 (digits).
# Expected: "ok" (exit 0), "later: WORDS" (accepted; the command then stops, before any work, at the
# named later check: a missing data folder, a folder that already holds a demo), or WORDS of the
# one-line error, which names the flag.
HUGE = "1" + "0" * 30
EDGES = ("0", "-1", "nan", "inf", "-inf", "1e30", "1000000000000", HUGE)
INT = "invalid int value"   # argparse: an integer flag given a float


def rows(table):
    """``{flag: (expected per edge, ...)}`` -> ``[(flag, value, expected), ...]``."""
    return [(flag, value, want) for flag, wants in table.items() for value, want in zip(EDGES, wants, strict=True)]


# ``ddlvad config`` and ``ddlvad train`` (config flags; ``train`` checks them before reading --data)
CONFIG_FLAGS = rows({
    #              0         -1        nan     inf     -inf    1e30    10**12  10**30
    "--epochs": ("(--epochs): must be >= 1",) * 2 + (INT,) * 4 + ("ok", "(--epochs): too large for a 64-bit"),
    "--steps": ("(--steps): must be >= 1",) * 2 + (INT,) * 4 + ("ok", "(--steps): too large for a 64-bit"),
    "--batch-size": ("(--batch-size): must be >= 1",) * 2 + (INT,) * 4 + ("ok", "(--batch-size): too large"),
    "--frames": ("(--frames): T must be odd, from 1 to 99",) * 2 + (INT,) * 4 + ("(--frames): T must be odd",) * 2,
    "--seed": ("ok", "(--seed): a seed is an integer from 0 to 2**63-1") + (INT,) * 4 + ("ok", "(--seed): a seed is"),
    # --minutes inf: no time budget; a divergent --lr 1e30 ends in one line at its first steps ("non-finite loss")
    "--minutes": ("(--minutes): must be > 0",) * 3 + ("ok", "(--minutes): must be > 0", "ok", "ok", "ok"),
    "--lr": ("(--lr): must be > 0",) * 3 + ("(--lr): must be a finite number", "(--lr): must be > 0", "ok", "ok", "ok"),
})


@pytest.mark.parametrize("flag,value,expected", CONFIG_FLAGS)
def test_config_flags(flag, value, expected, cli):
    run_case(cli, ["config", "--preset", "tiny", flag, value], expected)


@pytest.mark.parametrize("flag,value,expected", CONFIG_FLAGS)
def test_train_checks_its_flags_before_any_work(flag, value, expected, tmp_path, cli):
    expected = "later: data root" if expected == "ok" else expected
    run_case(cli, ["train", "--data", tmp_path / "missing", "--preset", "tiny", "--out", tmp_path / "run",
                   flag, value], expected)


# --set SECTION.FIELD=VALUE of every numeric field: the edges each accepts; every other edge is one
# line naming the key
SET_ACCEPTS = {
    "model.latent": (), "model.dropout": ("0",),
    "data.height": (), "data.width": (), "data.channels": (), "data.frames": (),
    "ddl.init_logit": ("0", "-1", "1e30", "1000000000000", HUGE), "ddl.lam": ("0", "1e30", "1000000000000", HUGE),
    "ddl.eps": ("1e30", "1000000000000", HUGE), "ddl.logit_lr": ("0", "1e30", "1000000000000", HUGE),
    "ddl.start_step": ("0", "1000000000000"), "ddl.paste": ("0",), "ddl.noise_cell": (), "ddl.paste_start": ("0",),
    "train.epochs": ("1000000000000",), "train.steps": ("1000000000000",), "train.batch_size": ("1000000000000",),
    "train.lr": ("1e30", "1000000000000", HUGE), "train.lr_drop_at": (), "train.lr_gamma": (),
    "train.seed": ("0", "1000000000000"), "train.log_every": ("1000000000000",),
    "train.checkpoint_every": ("1000000000000",), "train.bn_recalibration": ("0", "1000000000000"),
    "train.snapshot_every": ("1000000000000",), "train.threads": (),
    "train.minutes": ("inf", "1e30", "1000000000000", HUGE), "train.val_fraction": ("0",),
    "train.val_every": ("1000000000000",), "train.val_windows": ("1000000000000",), "train.val_weight": (),
    "train.patience": ("1000000000000",), "train.val_floor": ("0",), "train.val_check_weight": (),
    "train.min_improvement": ("0", "1e30", "1000000000000", HUGE), "train.ema": ("0",),
    "train.warmup_steps": ("0", "1000000000000"), "train.clip_grad": ("inf", "1e30", "1000000000000", HUGE),
    "train.start_scale": (),
    "score.patch": (), "score.scale": (), "score.batch_size": ("1000000000000",), "score.threshold_percentile": (),
    "score.threshold_frames": ("1000000000000",),
    "objects.classes": ("0", "1000000000000"), "objects.score_threshold": ("0",),
    "objects.long_side": ("1000000000000",),
}
SET_CASES = [(key, value, "ok" if value in accepts else key) for key, accepts in SET_ACCEPTS.items()
             for value in EDGES]


def test_every_numeric_config_field_is_swept():
    from typing import get_type_hints

    from ddlvad.config import _SECTIONS

    numeric = {f"{name}.{field}" for name, section in _SECTIONS.items()
               for field, hint in get_type_hints(section).items()
               if any(t in str(hint) for t in ("int", "float")) and "bool" not in str(hint)}
    assert numeric == set(SET_ACCEPTS)


@pytest.mark.parametrize("key,value,expected", SET_CASES)
def test_set_keys(key, value, expected, cli):
    run_case(cli, ["config", "--preset", "tiny", "--set", f"{key}={value}"], expected)


# the other verbs: (verb, flag, value, expected); {missing} is a folder that does not exist
OTHER_FLAGS = [("detect", *row) for row in rows({
    #           0     -1    nan   inf   -inf  1e30  10**12  10**30
    "--threshold": ("ok", "--threshold -1: frame scores are errors >= 0", "--threshold nan:", "--threshold inf:",
                    "--threshold -inf:", "ok", "ok", "ok"),
    "--batch": ("--batch 0: must be >= 1", "--batch -1: must be >= 1") + (INT,) * 4 + ("ok", "ok"),
    "--max-frames": ("--max-frames 0: must be from 1 to", "--max-frames -1: must be") + (INT,) * 4
    + ("ok", f"--max-frames {HUGE}: must be from 1 to 9223372036854775807"),
    "--fps": ("--fps 0.0: must be a positive number", "--fps -1.0:", "--fps nan:", "--fps inf:", "--fps -inf:")
    + ("overlay.mp4 plays at the frame rate, and MPEG-4 takes 0.01 to 65535",) * 3,
    "--gap": ("ok", "--gap -1: must be >= 0") + (INT,) * 4 + ("ok", "ok"),
    "--min-frames": ("--min-frames 0: must be >= 1", "--min-frames -1: must be >= 1") + (INT,) * 4 + ("ok", "ok"),
})] + [("watch", *row) for row in rows({  # ddlvad watch SOURCE --run RUN --check (errors: the config's lines)
    #           0     -1    nan   inf   -inf  1e30  10**12  10**30
    "--threshold": ("ok", "cameras.clip.threshold: must be >= 0", "cameras.clip.threshold: must be a finite number",
                    "cameras.clip.threshold: must be a finite number", "cameras.clip.threshold: must be a finite number",
                    "ok", "ok", "ok"),
    "--fps": ("cameras.clip.fps: must be > 0",) * 2 + ("cameras.clip.fps: must be a finite number",) * 3
    + ("cameras.clip.fps: must be <= 1000",) * 3,
})] + [
    ("detect", "--fps", ["1e30", "--no-overlay"], "ok"),     # frame times of 0 s, no video to encode
    ("detect", "--fps", ["0.01"], "ok"),
] + [("evaluate", *row) for row in rows({
    "--window": ("(--window): the median window must be an odd number of frames from 1 to 9999",) * 2 + (INT,) * 4
    + ("(--window): the median window",) * 2,
    "--sigma": ("(--sigma): the gaussian sigma must be a number of frames > 0 and at most 1000",) * 8,
    "--scale": ("(--scale): must be between 0.25 and 4",) * 8,
})] + [
    ("evaluate", "--window", ["9999"], "ok"),
    ("evaluate", "--sigma", ["1000", "--smoothing", "gaussian"], "ok"),
] + [("train-scenes", *row) for row in rows({
    "--jobs": ("--jobs 0: must be >= 1", "--jobs -1: must be >= 1") + (INT,) * 4 + ("later: data root",) * 2,
})] + [("synth", *row) for row in rows({
    "--seed": ("later: is not empty", "--seed -1: a seed is an integer from 0 to 2**63-1") + (INT,) * 4
    + ("later: is not empty", "a seed is an integer"),
})] + [("demo", *row) for row in rows({
    "--seed": ("later: already holds a demo", "train.seed=-1 (--seed): a seed is") + (INT,) * 4
    + ("later: already holds a demo", "(--seed): a seed is"),
    "--steps": ("train.steps=0 (--steps): must be >= 1", "train.steps=-1 (--steps)") + (INT,) * 4
    + ("later: already holds a demo", "(--steps): too large for a 64-bit integer"),
})] + [("track", *row) for row in rows({
    "--score-threshold": ("later: data root",) + ("(--score-threshold): must be in [0, 1]",) * 7,
})] + [
    ("track", "--classes", ["-1"], "(--classes): class ids are >= 0"),
    ("track", "--classes", ["nan"], "objects.classes='nan': expected int"),
]


@pytest.mark.parametrize("verb,flag,value,expected", OTHER_FLAGS)
def test_other_flags(verb, flag, value, expected, tiny_run, clip, one_video, tmp_path, cli):
    value = value if isinstance(value, list) else [value]
    missing = tmp_path / "missing"
    (tmp_path / "demo" / "run").mkdir(parents=True)
    (tmp_path / "demo" / "run" / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    args = {"detect": ["detect", clip, "--run", tiny_run, "--out", tmp_path / "out"],
            "evaluate": ["evaluate", tiny_run, "--data", one_video, "--out", tmp_path / "out", "--no-plots",
                         "--quiet"],
            "train-scenes": ["train", "--data", missing, "--all-scenes", "--preset", "tiny"],
            "synth": ["synth", tmp_path / "full"], "demo": ["demo", "--out", tmp_path / "demo"],
            "track": ["track", missing], "watch": ["watch", clip, "--run", tiny_run, "--check"]}[verb]
    run_case(cli, [*args, flag, *value], expected)
    if verb == "detect" and expected == "ok":
        report = json.loads((tmp_path / "out" / "events.json").read_text())
        assert report["complete"] and report["frames"] == 8


def run_case(cli, args, expected):
    code, _, err = cli(*args)
    if expected == "ok":
        assert code == 0, err
    else:
        one_line_error(code, err, expected.removeprefix("later: "))


def test_the_sweep_covers_every_numeric_flag():
    """Every flag with a numeric type in cli.FLAGS is in a table above."""
    from ddlvad.cli import FLAGS

    numeric = {f"--{name}" for name, flag in FLAGS.items() if flag.kwargs.get("type") in (int, float)}
    swept = {flag for flag, _, _ in CONFIG_FLAGS} | {flag for _, flag, _, _ in OTHER_FLAGS}
    assert numeric <= swept, numeric - swept


# ---------------------------------------------------------------------- nothing half-written
def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_detect_failing_mid_way_keeps_a_consistent_set(tiny_run, clip, tmp_path, cli):
    """A corrupt frame after the first 8: exit 2 in one line; the tables, the overlay and events.json
    hold the same 7 frames (frame 7's window needs frame 8) and say why they stop; no temporary file
    stays."""
    source = tmp_path / "source"
    shutil.copytree(clip, source)
    (source / "008.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    code, _, err = cli("detect", source, "--run", tiny_run, "--out", out, "--batch", "1")
    one_line_error(code, err, "008.jpg", "corrupt")
    report = json.loads((out / "events.json").read_text())
    assert report["frames"] == 7 and not report["complete"] and "008.jpg" in report["stopped"]
    assert [int(r["frame"]) for r in csv.DictReader(open(out / "scores.csv"))] == list(range(7))
    assert len(read_video(out / "overlay.mp4")) == 7
    assert sorted(p.name for p in out.iterdir()) == ["events.json", "overlay.mp4", "regions.csv", "scores.csv"]


@pytest.mark.parametrize("failure", ["corrupt first frame", "bug in the overlay"])
def test_detect_failing_before_its_first_frame_leaves_the_previous_outputs(failure, tiny_run, clip, tmp_path, cli,
                                                                           monkeypatch):
    out = tmp_path / "out"
    assert cli("detect", clip, "--run", tiny_run, "--out", out)[0] == 0
    before = snapshot(out)
    source = tmp_path / "source"
    shutil.copytree(clip, source)
    if failure == "corrupt first frame":
        (source / "000.jpg").write_bytes(b"not a jpeg")
        code, _, err = cli("detect", source, "--run", tiny_run, "--out", out)
        one_line_error(code, err, "000.jpg")
    else:  # a bug (here: drawing fails) stays loud, and still nothing is half-written
        monkeypatch.setattr(OverlayRenderer, "render", lambda self, result: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            main(["detect", str(source), "--run", str(tiny_run), "--out", str(out)])
    assert snapshot(out) == before


def test_detect_overlay_is_renamed_into_place_only_when_closed(tiny_run, clip, tmp_path, cli, monkeypatch):
    """While frames are written the overlay lives under a temporary name (a killed run leaves the
    previous overlay.mp4 whole)."""
    import ddlvad.commands.detect as detect_module

    seen = []
    real = detect_module._video_writer

    def spy(path, fps, size):
        seen.append(path)
        return real(path, fps, size)

    monkeypatch.setattr(detect_module, "_video_writer", spy)
    out = tmp_path / "out"
    assert cli("detect", clip, "--run", tiny_run, "--out", out)[0] == 0
    assert len(seen) == 1 and seen[0].parent == out and seen[0].name != "overlay.mp4" and not seen[0].exists()
    assert len(read_video(out / "overlay.mp4")) == 8


def test_evaluate_with_a_full_disk_keeps_report_json_and_every_file_whole(tiny_run, one_video, tmp_path, cli,
                                                                         monkeypatch):
    """The disk fills while the plots are written: exit 2 in one line; the previous report.json stays
    (it is written last), every file is whole, no temporary file stays."""
    import errno
    import os

    out = tmp_path / "eval"
    (out / "plots").mkdir(parents=True)
    before = {"report.json": b'{"previous": true}', "scores.csv": b"video,frame,score,smoothed,label\n",
              "plots/video_02.png": cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()}
    for name, data in before.items():
        (out / name).write_bytes(data)
    real_replace = os.replace

    def replace(src, dst):  # scores.csv and the video's plot are written, then the disk is full (the ROC)
        if os.path.basename(dst) == "roc.png":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_replace(src, dst)

    monkeypatch.setattr("ddlvad.files.os.replace", replace)
    code, _, err = cli("evaluate", tiny_run, "--data", one_video, "--out", out, "--quiet")
    one_line_error(code, err, "cannot write", "roc.png", "free disk space")
    after = snapshot(out)
    assert after["report.json"] == before["report.json"]
    assert set(after) == {*before, "plots/localisation.png"}  # written before the ROC; no roc.png, no temporary
    assert len(after["scores.csv"].decode().splitlines()) == 1 + 36  # the new one, whole
    assert after["plots/video_02.png"] != before["plots/video_02.png"]
    for name in ("plots/video_02.png", "plots/localisation.png"):
        assert cv2.imdecode(np.frombuffer(after[name], np.uint8), cv2.IMREAD_UNCHANGED) is not None
