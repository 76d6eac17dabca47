"""The YAML file of ``ddlvad watch``: the documented example, every kind of bad value (each reported
with its camera and key, all of them at once), relative paths, ``single()``, and URL redaction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from ddlvad import UserError
from ddlvad.config import EventRules
from ddlvad.watch import config as watch_config
from ddlvad.watch.config import (
    TOKEN_ENV,
    CameraConfig,
    EventConfig,
    WatchConfig,
    camera_name,
    load_watch_config,
    redact,
)

EXAMPLE = watch_config.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
"""The example of the module docstring, which this file tests."""


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder with what the example needs: a run with a model, a video file, an empty run."""
    (tmp_path / "runs" / "gate").mkdir(parents=True)
    (tmp_path / "runs" / "gate" / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "runs" / "empty").mkdir()
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "walkway.mp4").write_bytes(b"")
    return tmp_path


def write(folder: Path, values: dict | str, name: str = "watch.yaml") -> Path:
    path = folder / name
    path.write_text(values if isinstance(values, str) else yaml.safe_dump(values))
    return path


def problems(path: Path, env: dict | None = None) -> list[str]:
    """The problem lines of loading ``path``; fails when it loads."""
    with pytest.raises(UserError) as info:
        load_watch_config(path, env=env or {})
    lines = str(info.value).splitlines()
    assert lines == [f"{path}: {line}" for line in info.value.problems]  # every line names the file
    return info.value.problems


# ====================================================================== the example
def test_the_documented_example_loads(folder, monkeypatch):
    monkeypatch.chdir(folder.parent)  # relative paths follow the file, not the current folder
    cfg = load_watch_config(write(folder, EXAMPLE), env={})
    assert list(cfg.cameras) == ["gate", "trial"]
    gate, trial = cfg.cameras["gate"], cfg.cameras["trial"]
    assert gate.source == "rtsp://user:secret@10.0.0.5/stream1" and gate.kind == "stream"
    assert gate.run == folder / "runs" / "gate" and gate.threshold is None and gate.fps == 10
    assert gate.events == EventConfig(gap=5, min_frames=3, pre_roll=2.0, post_roll=3.0, cooldown=0)
    assert gate.events.rules == EventRules(5, 3)
    assert gate.ignore == [[(0, 0), (200, 0), (200, 80), (0, 80)]]
    assert trial.source == str(folder / "videos" / "walkway.mp4") and trial.kind == "file" and trial.loop
    assert (trial.fps, trial.threshold, trial.ignore, trial.events) == (None, None, [], EventConfig())
    assert cfg.runs == {(folder / "runs" / "gate").resolve(): ["gate", "trial"]}  # one model for both
    assert cfg.database == folder / "watch" / "events.sqlite" and cfg.data == folder / "watch" / "media"
    assert (cfg.retention.days, cfg.retention.gigabytes) == (14, 20)
    assert (cfg.http.host, cfg.http.port, cfg.http.token, cfg.http.loopback) == ("127.0.0.1", 8780, None, True)
    assert (cfg.webhook.url, cfg.webhook.timeout, cfg.webhook.retries, cfg.webhook.outbox) == (
        "http://127.0.0.1:9000/hook", 5, 5, 1000)
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.prefix, cfg.mqtt.username) == ("127.0.0.1", 1883, "ddlvad", None)
    # passwords appear in no repr or log line
    shown = repr(cfg) + "\n".join(cfg.describe()) + gate.describe() + str(gate)
    assert "secret" not in shown and "rtsp://user:***@10.0.0.5/stream1" in shown


def test_a_minimal_file_takes_every_default(folder):
    cfg = load_watch_config(write(folder, {"cameras": {"c1": {"source": "videos/walkway.mp4", "run": "runs/gate"}}}))
    camera = cfg.cameras["c1"]
    assert (camera.threshold, camera.fps, camera.loop, camera.ignore, camera.events) == (None, None, False, [],
                                                                                          EventConfig())
    assert (EventConfig().gap, EventConfig().min_frames) == (EventRules().gap, EventRules().min_frames)  # one source
    assert cfg.webhook.url is None and cfg.mqtt.host is None and cfg.http.port == 8780
    assert cfg.database == folder / "watch" / "events.sqlite" and cfg.origin == str(folder / "watch.yaml")


def test_relative_paths_are_relative_to_the_file(folder, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    (folder / "conf").mkdir()
    path = write(folder / "conf", {"database": "../db/e.sqlite", "data": "~/media",
                                   "cameras": {"a": {"source": "../videos/walkway.mp4", "run": "../runs/gate"},
                                               "b": {"source": str(folder / "videos"), "run": str(folder / "runs/gate")},
                                               "c": {"source": 0, "run": "../runs/gate"}}})
    cfg = load_watch_config(path)
    assert cfg.database == folder / "db" / "e.sqlite"
    assert cfg.data == Path.home() / "media"
    assert cfg.cameras["a"].source == str(folder / "videos" / "walkway.mp4")
    assert cfg.cameras["b"].kind == "folder" and cfg.cameras["c"].source == "0" and cfg.cameras["c"].kind == "camera"
    assert {c.run for c in cfg.cameras.values()} == {folder / "runs" / "gate"}


def test_a_checkpoint_file_and_best_pt_count_as_models(folder):
    (folder / "runs" / "empty" / "best.pt").write_bytes(b"")
    cfg = load_watch_config(write(folder, {"cameras": {
        "a": {"source": "videos/walkway.mp4", "run": "runs/empty"},
        "b": {"source": "videos/walkway.mp4", "run": "runs/gate/checkpoint.pt"}}}))
    assert cfg.cameras["b"].run.name == "checkpoint.pt"


def test_model_file_names_match_the_checkpoint_module():
    from ddlvad.checkpoint import BEST, CHECKPOINT, START_BEST

    assert set(watch_config.MODEL_FILES) == {BEST, START_BEST, CHECKPOINT}


# ====================================================================== bad values, one kind each
GOOD_CAMERA = {"source": "videos/walkway.mp4", "run": "runs/gate"}
NAN, INF = math.nan, math.inf

CAMERA_CASES = [
    # (camera settings changed, the expected problem line)
    ({"fps": -3}, "cameras.gate.fps: must be > 0 (frames per second; got -3)"),
    ({"fps": 0}, "cameras.gate.fps: must be > 0"),
    ({"fps": NAN}, "cameras.gate.fps: must be a finite number"),
    ({"fps": INF}, "cameras.gate.fps: must be a finite number"),
    ({"fps": 1e9}, "cameras.gate.fps: must be <= 1000"),
    ({"fps": "ten"}, "cameras.gate.fps: must be a number (got 'ten')"),
    ({"fps": True}, "cameras.gate.fps: must be a number"),
    ({"threshold": -0.1}, "cameras.gate.threshold: must be >= 0"),
    ({"threshold": NAN}, "cameras.gate.threshold: must be a finite number"),
    ({"loop": "sometimes"}, "cameras.gate.loop: must be true or false"),
    ({"fsp": 3}, "cameras.gate.fsp: unknown key; did you mean fps?"),
    ({"colour": 3}, "cameras.gate.colour: unknown key; expected one of source, run, threshold, fps, loop, events, ignore"),
    ({"events": {"gap": -1}}, "cameras.gate.events.gap: must be >= 0 (frames; got -1)"),
    ({"events": {"gap": 2.5}}, "cameras.gate.events.gap: must be a whole number"),
    ({"events": {"min_frames": 0}}, "cameras.gate.events.min_frames: must be >= 1"),
    ({"events": {"pre_roll": 1e6}}, "cameras.gate.events.pre_roll: must be <= 300"),
    ({"events": {"post_roll": -1}}, "cameras.gate.events.post_roll: must be >= 0"),
    ({"events": {"cooldown": INF}}, "cameras.gate.events.cooldown: must be a finite number"),
    ({"events": {"post_rol": 1}}, "cameras.gate.events.post_rol: unknown key; did you mean post_roll?"),
    ({"events": [5, 3]}, "cameras.gate.events: must be a mapping of gap, min_frames"),
    ({"ignore": [[[0, 0], [1, 1]]]}, "cameras.gate.ignore[0]: must be a polygon of at least 3 points [x, y] (got 2 point(s))"),
    ({"ignore": [[[0, 0], [1, 1], [2]]]}, "cameras.gate.ignore[0][2]: must be a point [x, y] of 2 numbers (got [2])"),
    ({"ignore": [[[0, 0], [1, "a"], [2, 2]]]}, "cameras.gate.ignore[0][1]: must be a point [x, y] of 2 numbers"),
    ({"ignore": [[[0, 0], [1, NAN], [2, 2]]]}, "cameras.gate.ignore[0][1]: coordinates must be finite"),
    ({"ignore": [[[0, 0], [1, 1e9], [2, 2]]]}, "cameras.gate.ignore[0][1]: coordinates must be finite source pixels "
                                               "within +-1e+06"),
    ({"ignore": [[0, 0], [9, 0], [9, 9]]}, "cameras.gate.ignore: must be a list of polygons, not of points"),
    ({"ignore": "everything"}, "cameras.gate.ignore: must be a list of polygons"),
    ({"source": None}, "cameras.gate.source: missing"),
    ({"run": None}, "cameras.gate.run: missing"),
    ({"source": ["a.mp4"]}, "cameras.gate.source: must be a path, a camera index or a URL"),
    ({"run": 3}, "cameras.gate.run: must be the path of a run folder"),
    ({"source": "videos/nope.mp4"}, "cameras.gate.source: {folder}/videos/nope.mp4 not found"),
    ({"run": "runs/nope"}, "cameras.gate.run: run folder {folder}/runs/nope not found"),
    ({"run": "runs/empty"}, "cameras.gate.run: {folder}/runs/empty holds no model (best.pt or best-start.pt or "
                            "checkpoint.pt)"),
    ({"source": "rtsp://cam/1", "loop": True}, "cameras.gate.loop: only files and folders can loop, not a stream"),
    ({"source": 0, "loop": True}, "cameras.gate.loop: only files and folders can loop, not a camera"),
]


@pytest.mark.parametrize("change,line", CAMERA_CASES, ids=[line.split(":")[0] + "-" + str(i)
                                                             for i, (_, line) in enumerate(CAMERA_CASES)])
def test_a_bad_camera_value_is_one_line_naming_camera_and_key(folder, change, line):
    camera = {k: v for k, v in {**GOOD_CAMERA, **change}.items() if v is not None}
    found = problems(write(folder, {"cameras": {"gate": camera}}))
    assert len(found) == 1, found
    assert found[0].startswith(line.format(folder=folder)), found


TOP_CASES = [
    # (top-level settings added, the expected problem line)
    ({"retention": {"days": 0}}, "retention.days: must be > 0 (days; got 0)"),
    ({"retention": {"gigabytes": -1}}, "retention.gigabytes: must be > 0"),
    ({"retention": {"days": NAN}}, "retention.days: must be a finite number"),
    ({"retention": {"weeks": 2}}, "retention.weeks: unknown key; expected one of days, gigabytes"),
    ({"retention": 14}, "retention: must be a mapping of days, gigabytes (got int 14)"),
    ({"http": {"port": 70000}}, "http.port: must be <= 65535"),
    ({"http": {"port": -1}}, "http.port: must be >= 0"),
    ({"http": {"port": "80"}}, "http.port: must be a whole number"),
    ({"http": {"host": "0.0.0.0"}}, "http.token: http.host 0.0.0.0 makes the page reachable from other machines: "
                                    f"set http.token (or the environment variable {TOKEN_ENV})"),
    ({"http": {"host": "0.0.0.0", "token": "short"}}, "http.token: too short"),
    ({"http": {"token": "two words"}}, "http.token: must be a secret without spaces"),
    ({"webhook": {"url": "ftp://x/hook"}}, "webhook.url: must be an http:// or https:// URL"),
    ({"webhook": {"url": "http://u:pw@x /hook"}}, "webhook.url: must be an http:// or https:// URL (got "
                                                  "'http://u:***@x /hook')"),
    ({"webhook": {"timeout": 0}}, "webhook.timeout: must be > 0"),
    ({"webhook": {"retries": -1}}, "webhook.retries: must be >= 0"),
    ({"webhook": {"outbox": 0}}, "webhook.outbox: must be >= 1"),
    ({"mqtt": {"port": 0}}, "mqtt.port: must be >= 1"),
    ({"mqtt": {"prefix": "a/#"}}, "mqtt.prefix: must be topic levels without '+', '#'"),
    ({"mqtt": {"prefix": "/a"}}, "mqtt.prefix: must be topic levels"),
    ({"mqtt": {"password": "x"}}, "mqtt.password: needs mqtt.username"),
    ({"mqtt": {"hots": "x"}}, "mqtt.hots: unknown key; did you mean host?"),
    ({"databse": "x.sqlite"}, "databse: unknown key; did you mean database?"),
    ({"database": "media/events.sqlite", "data": "media"}, "database: {folder}/media/events.sqlite lies inside the "
                                                           "media folder `data`"),
    ({"database": 5}, "database: must be a path"),
    ({"data": "runs"}, "data: the media folder {folder}/runs holds cameras.gate.run ({folder}/runs/gate)"),
    ({"data": "videos/"}, "data: the media folder {folder}/videos holds cameras.gate.source"),
]


@pytest.mark.parametrize("change,line", TOP_CASES, ids=[line.split(":")[0] + "-" + str(i)
                                                       for i, (_, line) in enumerate(TOP_CASES)])
def test_a_bad_setting_is_one_line_naming_the_key(folder, change, line):
    found = problems(write(folder, {**change, "cameras": {"gate": GOOD_CAMERA}}))
    assert len(found) == 1, found
    assert found[0].startswith(line.format(folder=folder)), found


@pytest.mark.parametrize("cameras,line", [
    ({}, "cameras: list at least one camera"),
    (None, "cameras: list at least one camera"),
    ([GOOD_CAMERA], "cameras: must be a mapping of camera names to settings"),
    ({"bad name": GOOD_CAMERA}, "cameras.bad name: camera names are 1 to 64 letters, digits, '-' or '_'"),
    ({"x" * 65: GOOD_CAMERA}, "cameras." + "x" * 65 + ": camera names are 1 to 64"),
    ({"a/b": GOOD_CAMERA}, "cameras.a/b: camera names are"),
    ({1: GOOD_CAMERA}, "cameras.1: camera names are text: quote it (\"1\")"),
    ({"gate": "rtsp://cam/1"}, "cameras.gate: must be a mapping with at least `source:` and `run:`"),
])
def test_bad_cameras(folder, cameras, line):
    found = problems(write(folder, {"cameras": cameras}))
    assert found == [found[0]] and found[0].startswith(line), found


def test_every_problem_is_reported_at_once(folder):
    path = write(folder, """\
databse: x.sqlite
http: {host: 0.0.0.0, port: 70000}
cameras:
  gate:
    source: rtsp://user:secret@10.0.0.5/stream1
    run: runs/nope
    fps: -3
    events: {gap: -1}
    ignore: [[[0, 0], [200, 0]]]
  trial:
    loop: maybe
    run: runs/gate
""")
    found = problems(path)
    keys = sorted(line.split(": ", 1)[0] for line in found)
    assert keys == ["cameras.gate.events.gap", "cameras.gate.fps", "cameras.gate.ignore[0]", "cameras.gate.run",
                    "cameras.trial.loop", "cameras.trial.source", "databse", "http.port", "http.token"]
    assert not any(":secret@" in line for line in found)


def test_the_media_folder_must_not_hold_the_config_file(folder, monkeypatch):
    assert problems(write(folder, {"data": ".", "database": "../e.sqlite", "cameras": {"gate": {
        "source": "rtsp://cam/1", "run": str(folder / "runs" / "gate")}}}))[0].startswith(
        f"data: the media folder {folder} holds the config file ({folder / 'watch.yaml'})")
    monkeypatch.chdir(folder)
    with pytest.raises(UserError, match="data: the media folder .* holds cameras.walkway.source"):
        WatchConfig.single("videos/walkway.mp4", "runs/gate", data="videos", env={})


def test_a_key_given_twice_is_reported(folder):
    path = write(folder, "cameras:\n  gate: {source: videos/walkway.mp4, run: runs/gate}\n"
                         "  gate: {source: videos/walkway.mp4, run: runs/gate, fps: 5}\n")
    assert problems(path) == ["line 3: key 'gate' appears twice (the later one would silently win); keep one"]


def test_anchors_under_x_keys_and_merge_keys(folder):
    path = write(folder, "x-defaults: &d {source: videos/walkway.mp4, run: runs/gate, fps: 5}\n"
                         "cameras:\n  a: {<<: *d, fps: 3}\n  b: *d\n")
    cfg = load_watch_config(path)  # an overridden merged key is no duplicate; x- keys are ignored
    assert (cfg.cameras["a"].fps, cfg.cameras["b"].fps) == (3, 5)


def test_token_from_the_environment(folder):
    path = write(folder, {"http": {"host": "0.0.0.0"}, "cameras": {"gate": GOOD_CAMERA}})
    cfg = load_watch_config(path, env={TOKEN_ENV: "s" * 20})
    assert cfg.http.token == "s" * 20 and "s" * 20 not in repr(cfg)
    assert load_watch_config(write(folder, {"http": {"token": "t" * 16}, "cameras": {"gate": GOOD_CAMERA}}, "b.yaml"),
                             env={TOKEN_ENV: "s" * 20}).http.token == "t" * 16  # the file wins
    assert problems(path, env={TOKEN_ENV: "short"}) == [
        "http.token: too short for a page reachable from other machines (5 characters): use at least 16 "
        "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"]


def test_mqtt_password_is_not_shown(folder):
    cfg = load_watch_config(write(folder, {"mqtt": {"host": "b", "username": "u", "password": "hunter2"},
                                           "webhook": {"url": "https://u:pw@hooks.example/x?token=abc"},
                                           "cameras": {"gate": GOOD_CAMERA}}))
    shown = repr(cfg) + "\n".join(cfg.describe())
    assert "hunter2" not in shown and ":pw@" not in shown and "abc" not in shown
    assert cfg.mqtt.password == "hunter2"


@pytest.mark.parametrize("text,line", [
    (None, "watch config {path} not found"),
    ("cameras: [unclosed", "watch config {path} is not valid YAML at line 1, column 19: expected ',' or ']', but got "
                           "'<stream end>' (while parsing a flow sequence)"),
    ("cameras:\n  gate:\n    source: rtsp://u:secret@h/s\n  run x\n", "watch config {path} is not valid YAML at "
                                                                         "line 5, column 1: could not find expected ':'"),
    ("- a\n- b\n", "watch config {path} must be a YAML mapping with a `cameras:` section (got list)"),
    ("", "watch config {path} must be a YAML mapping"),
    (b"\xff\xfe\x00", "watch config {path} is not UTF-8 text"),
])
def test_the_file_itself(tmp_path, text, line):
    path = tmp_path / "watch.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as info:
        load_watch_config(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(line.format(path=path)), message
    assert "secret" not in message  # PyYAML quotes the offending line


# ====================================================================== single()
def test_single_names_the_camera_after_the_source(folder, monkeypatch):
    monkeypatch.chdir(folder)
    cfg = WatchConfig.single("videos/walkway.mp4", "runs/gate", env={})
    (camera,) = cfg.cameras.values()
    assert camera.name == "walkway" and camera.source == str(folder / "videos" / "walkway.mp4")
    assert camera.run == folder / "runs" / "gate" and camera.events == EventConfig() and not camera.loop
    assert cfg.database == folder / "watch" / "events.sqlite" and cfg.http.port == 8780
    assert cfg.origin == "ddlvad watch"
    cfg = WatchConfig.single("rtsp://admin:pw@10.0.0.5:554/", folder / "runs" / "gate", fps=5, threshold=0.02,
                             http={"port": 0}, retention={"days": 3}, events=EventConfig(gap=1), data=folder / "m")
    (camera,) = cfg.cameras.values()
    assert camera.name == "10_0_0_5" and (camera.fps, camera.threshold, camera.events.gap) == (5, 0.02, 1)
    assert (cfg.http.port, cfg.retention.days, cfg.data) == (0, 3, folder / "m")
    assert "pw" not in repr(cfg)
    assert WatchConfig.single(0, "runs/gate", name="door").cameras["door"].kind == "camera"


def test_single_checks_like_a_file(folder, monkeypatch):
    monkeypatch.chdir(folder)
    with pytest.raises(UserError) as info:
        WatchConfig.single("videos/nope.mp4", "runs/empty", fps=-1, env={})
    assert [line.split(": ")[1] for line in str(info.value).splitlines()] == [
        "cameras.nope.source", "cameras.nope.run", "cameras.nope.fps"]
    assert all(line.startswith("ddlvad watch: cameras.nope.") for line in str(info.value).splitlines())
    with pytest.raises(TypeError, match="unknown settings"):
        WatchConfig.single("videos/walkway.mp4", "runs/gate", colour=True)


@pytest.mark.parametrize("source,name", [
    ("videos/walkway.mp4", "walkway"),
    ("frames/scene 01/", "scene_01"),
    ("0", "camera0"),
    (2, "camera2"),
    ("rtsp://user:secret@10.0.0.5/stream1", "stream1"),
    ("rtsp://user:secret@cam.local:554", "cam_local"),
    ("http://host/live/front-door.m3u8?token=abc", "front-door"),
    ("rtsp://:pw@[::1]/", "1"),
])
def test_camera_name(source, name):
    assert camera_name(source) == name


# ====================================================================== redact
@pytest.mark.parametrize("url,shown", [
    ("rtsp://user:secret@10.0.0.5/stream1", "rtsp://user:***@10.0.0.5/stream1"),
    ("rtsp://user:secret@10.0.0.5:554/a/b?x=1", "rtsp://user:***@10.0.0.5:554/a/b?x=1"),
    ("rtsp://user:p%40ss%3Aw@host/s", "rtsp://user:***@host/s"),             # '@' and ':' encoded
    ("rtsp://user:p@ss:w@host/s", "rtsp://user:***@host/s"),                 # '@' not encoded: the last '@' ends it
    ("rtsp://user:pa/ss@host/s", "rtsp://user:***@host/s"),                  # '/' not encoded: nothing leaks
    ("rtsp://:secret@host/s", "rtsp://:***@host/s"),                         # a password without a user
    ("rtsp://user@host/s", "rtsp://user@host/s"),                            # no password
    ("rtsp://10.0.0.5:554/stream1", "rtsp://10.0.0.5:554/stream1"),          # no user
    ("http://host/snap.cgi?user=admin&pwd=secret&ch=1", "http://host/snap.cgi?user=admin&pwd=***&ch=1"),
    ("https://h/x?token=abc#frag", "https://h/x?token=***#frag"),
    ("videos/walkway.mp4", "videos/walkway.mp4"),
    ("0", "0"),
    ("/data/user:pw@cam.mp4", "/data/user:pw@cam.mp4"),                      # a path, not a URL
])
def test_redact(url, shown):
    assert redact(url) == shown
    assert "secret" not in redact(url)


def test_camera_repr_is_redacted():
    camera = CameraConfig("gate", "rtsp://u:secret@h/s", Path("/runs/gate"))
    assert "secret" not in repr(camera) and "secret" not in camera.describe() and camera.label == "rtsp://u:***@h/s"


def test_the_package_imports_neither_torch_nor_opencv():
    import subprocess
    import sys

    import ddlvad

    code = ("import sys, ddlvad.watch.config, ddlvad.watch.store; "
            "print(sorted(m for m in ('torch', 'cv2', 'numpy') if m in sys.modules))")
    src = str(Path(ddlvad.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "[]"


def test_sources_never_show_a_password_outside_watch():
    """``ddlvad detect`` and the frame readers name a stream by its redacted address (one ``redact``
    for the whole package, :mod:`ddlvad.urls`)."""
    from ddlvad.data.video import VideoSource
    from ddlvad.errors import UserError
    from ddlvad.urls import url_name

    assert url_name("rtsp://user:pw@10.0.0.5:554/cam1?token=x") == "cam1"
    assert url_name("rtsp://user:pw@10.0.0.5") == "10.0.0.5"
    with pytest.raises(UserError) as err:
        VideoSource("rtsp://admin:hunter2@127.0.0.1:9/none")
    assert "hunter2" not in str(err.value) and "admin:***@127.0.0.1" in str(err.value)
