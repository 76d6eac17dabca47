"""``ddlvad watch`` end to end, with real parts: a trained (tiny) model scores an MJPEG camera served
on loopback that drops and comes back, events land in SQLite with snapshots and clips, a real
MQTT broker and a real HTTP server receive the messages, a ``kill -9`` leaves a database that
reopens, bad configurations are one line each and exit 2.

The camera shows normal frames of the synthetic scene the model was trained on, with a
*planted anomaly* (a box of noise, which no model trained on the scene reconstructs) in chosen
frame ranges: events must open there and nowhere else.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="ddlvad watch needs the watch extras: pip install 'ddlvad[watch]'")

from ddlvad.commands.watch import watch, watch_config  # noqa: E402
from ddlvad.watch.store import EventStore  # noqa: E402
from watch_servers import MjpegServer, WebhookReceiver, free_port, mqtt_broker  # noqa: E402

ANOMALY_BOX = (slice(40, 100), slice(140, 220))  # rows, columns of the planted noise


def scene_frames(scene: Path) -> list[np.ndarray]:
    """Normal frames of the scene's first training video (BGR)."""
    files = sorted((scene / "training" / "frames").iterdir())[0]
    return [cv2.imread(str(f)) for f in sorted(files.iterdir())]


def planted(frames: list[np.ndarray], anomalous: set[int]):
    """The picture of frame ``number``: the scene's frames in a loop, noise planted in ``anomalous`` ones."""
    noise = np.random.default_rng(0).integers(0, 256, (ANOMALY_BOX[0].stop - ANOMALY_BOX[0].start,
                                                       ANOMALY_BOX[1].stop - ANOMALY_BOX[1].start, 3), dtype=np.uint8)

    def image(number: int) -> np.ndarray:
        picture = frames[number % len(frames)].copy()
        if number in anomalous:
            picture[ANOMALY_BOX] = noise
        return picture

    return image


def write_video(path: Path, pictures: list[np.ndarray], fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, pictures[0].shape[1::-1])
    for p in pictures:
        writer.write(p)
    writer.release()
    return path


def _payload(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()  # the availability topic's plain "online" / "offline"


def wait_until(condition, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def closed_events(database: Path) -> list[dict]:
    if not database.exists():
        return []
    with EventStore(database) as store:
        return [e for e in store.events(limit=100).events if not e["open"]]


class Running:
    """``ddlvad watch`` (the command function) in a thread, stopped at the end."""

    def __init__(self, cfg) -> None:
        self.stop, self.ready = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(cfg,), daemon=True)
        self.thread.start()
        assert self.ready.wait(120) or self.error, "the service did not start"
        if self.error:
            raise self.error

    def _run(self, cfg) -> None:
        try:
            watch(cfg, log=lambda line: None, ready=self.ready, stop=self.stop)
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            self.error = exc
            self.ready.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error


def test_stream_drops_and_comes_back_events_stored_and_notified(tmp_path, scene, tiny_run):
    """The camera (MJPEG over HTTP on loopback) drops mid-way and refuses connections for a while:
    the reader reconnects; the planted anomalies before and after the drop are events in SQLite
    with their snapshot and clip; MQTT carries events and states; the webhook fails twice and is
    retried while scoring goes on."""
    run, _ = tiny_run
    before, after = set(range(20, 35)), set(range(100, 115))
    with MjpegServer(fps=15, image=planted(scene_frames(scene), before | after)) as camera, \
            WebhookReceiver(fail_first=2) as hook, mqtt_broker(tmp_path) as (host, port, _):
        import paho.mqtt.client as mqtt

        received: list[tuple[str, dict]] = []
        subscriber = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        subscriber.on_message = lambda c, u, m: received.append((m.topic, _payload(m.payload)))
        subscriber.connect(host, port)
        subscriber.subscribe("ddlvad/#", qos=1)
        subscriber.loop_start()
        config = tmp_path / "watch.yaml"
        config.write_text(f"""
database: db/events.sqlite
data: media
http: {{host: 127.0.0.1, port: 0}}
webhook: {{url: "{hook.url}", timeout: 2, retries: 5}}
mqtt: {{host: {host}, port: {port}}}
cameras:
  gate:
    source: "{camera.url}"
    run: "{run}"
    events: {{gap: 3, min_frames: 3, pre_roll: 1.0, post_roll: 0.5}}
""")
        service = Running(watch_config(str(config)))
        try:
            database = tmp_path / "db" / "events.sqlite"
            assert wait_until(lambda: camera.sent > 60 and len(closed_events(database)) >= 1, 90), \
                f"no event before the drop ({camera.sent} frames sent)"
            connections = camera.connections
            camera.refuse(2.0)  # drop, refuse for 2 s, listen again
            assert wait_until(lambda: camera.connections > connections, 30), "the camera did not reconnect"
            assert wait_until(lambda: len(closed_events(database)) >= 2 and camera.sent > 120, 90), \
                "no event after the drop"
        finally:
            service.close()
            subscriber.loop_stop()
            subscriber.disconnect()
        events = closed_events(database)
        assert len(events) >= 2
        for e in events:
            assert (tmp_path / "media" / e["snapshot"]).is_file() and (tmp_path / "media" / e["clip"]).is_file()
            assert e["box"] is None or len(e["box"]) == 4
        events.sort(key=lambda e: e["started_at"])
        assert events[0]["ended_at"] < events[-1]["started_at"]
        messages = hook.wait_for(4, 20)
        assert hook.requests >= len(messages) + 2  # two failures before the first success
        assert {m["type"] for m in messages} >= {"event", "state"}
        phases = [m["phase"] for m in messages if m["type"] == "event"]
        assert phases.count("start") >= 2 and phases.count("end") >= 2
        topics = {t for t, _ in received}
        assert {"ddlvad/gate/events", "ddlvad/gate/state", "ddlvad/availability"} <= topics
        states = [p["state"] for t, p in received if t == "ddlvad/gate/state"]
        assert "connected" in states and "reconnecting" in states


def test_kill_9_during_an_open_event_leaves_a_database_that_reopens(tmp_path, scene, tiny_run):
    """``ddlvad watch`` in a child process on a looped file whose anomaly lasts long; killed with
    SIGKILL while an event is open; the database passes its integrity check, the events closed
    before the kill are intact and the open one is closed (interrupted) by the next start."""
    run, cache = tiny_run
    frames = scene_frames(scene)[:40]
    image = planted(frames, set(range(10, 40)))
    video = write_video(tmp_path / "cam.avi", [image(i) for i in range(len(frames))] * 2)
    config = tmp_path / "watch.yaml"
    config.write_text(f"""
database: events.sqlite
data: media
http: {{host: 127.0.0.1, port: {free_port()}}}
cameras:
  yard: {{source: "{video}", loop: true, run: "{run}", events: {{gap: 2, min_frames: 3}}}}
""")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "DDLVAD_CACHE": str(cache)}
    child = subprocess.Popen([sys.executable, "-m", "ddlvad", "watch", str(config)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = tmp_path / "events.sqlite"

    def states() -> list[tuple[int, int]]:
        if not database.exists():
            return []
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT id, open FROM events ORDER BY id").fetchall()
        except sqlite3.Error:
            return []

    try:
        ok = wait_until(lambda: any(o == 0 for _, o in states()) and any(o == 1 for _, o in states()[1:]), 120)
        assert ok, f"no open event after a closed one: {states()}; {child.stderr.read1().decode()[-2000:] if not ok else ''}"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    closed_before = [i for i, o in states() if o == 0]
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with EventStore(database) as store:
        interrupted = store.close_open_events()
        assert interrupted
        for event_id in closed_before:
            e = store.event(event_id)
            assert not e["open"] and e["peak_score"] > 0 and e["end_frame"] >= e["start_frame"]
        assert all(store.event(i)["interrupted"] for i in interrupted)


def test_sigterm_closes_the_open_event_and_finishes_its_clip(tmp_path, scene, tiny_run):
    """What a service manager does to stop ``ddlvad watch``: SIGTERM while an event is open; the
    process exits 0 with the event closed, its snapshot and clip in place and named in SQLite."""
    run, cache = tiny_run
    frames = scene_frames(scene)[:40]
    image = planted(frames, set(range(8, 40)))  # the anomaly lasts to the end of the loop
    video = write_video(tmp_path / "cam.avi", [image(i) for i in range(len(frames))])
    config = tmp_path / "watch.yaml"
    config.write_text(f"""
database: events.sqlite
data: media
http: {{host: 127.0.0.1, port: {free_port()}}}
cameras:
  yard: {{source: "{video}", loop: true, run: "{run}", events: {{gap: 2, min_frames: 3, post_roll: 30}}}}
""")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "DDLVAD_CACHE": str(cache)}
    child = subprocess.Popen([sys.executable, "-m", "ddlvad", "watch", str(config)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    database = tmp_path / "events.sqlite"

    def open_events() -> int:
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM events WHERE open = 1").fetchone()[0]
        except sqlite3.Error:
            return 0

    try:
        assert wait_until(lambda: open_events() > 0, 120), "no event opened"
        child.send_signal(signal.SIGTERM)
        assert child.wait(60) == 0, child.stderr.read().decode()[-2000:]
    finally:
        if child.poll() is None:
            child.kill()
    with EventStore(database) as store:
        events = store.events().events
        assert events and not any(e["open"] for e in events) and not any(e["interrupted"] for e in events)
        last = events[0]
        assert last["snapshot"] and last["clip"]  # the clip was finished at once, post-roll cut short
        assert (tmp_path / "media" / last["clip"]).stat().st_size > 0


def test_bad_configurations_are_one_line_each_and_exit_2(tmp_path, cli, tiny_run):
    """Every bad value is a line naming the camera and key; nothing is started, nothing written."""
    run, _ = tiny_run
    config = tmp_path / "watch.yaml"
    config.write_text(f"""
database: db/events.sqlite
data: media
cameras:
  gate: {{source: nowhere.mp4, run: "{run}", fps: -3, threshold: .nan}}
  "bad name": {{source: 0, run: "{tmp_path / 'no-run'}"}}
  yard: {{source: 0, run: "{run}", colour: red}}
""")
    code, out, err = cli("watch", config)
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("ddlvad: error:")
    keys = ("cameras.gate.fps:", "cameras.gate.threshold:", "cameras.gate.source:", "cameras.bad name:",
            "cameras.bad name.run:", "cameras.yard.colour:")
    for key in keys:  # one line per problem, naming the camera and the key
        assert sum(key in line for line in lines) == 1, (key, err)
    assert len(lines) == len(keys)
    assert not (tmp_path / "db").exists() and not (tmp_path / "media").exists()
    code, out, err = cli("watch", "rtsp://user:secret@10.9.9.9/stream")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--run" in err and "secret" not in err
    code, out, err = cli("watch", config, "--run", run)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_check_opens_each_source_once(tmp_path, cli, scene, tiny_run):
    run, _ = tiny_run
    video = write_video(tmp_path / "cam.avi", scene_frames(scene)[:5])
    code, out, err = cli("watch", video, "--run", run, "--check")
    assert code == 0, err
    assert "1 camera(s) ready" in out and "160" in err + out


def test_token_guards_the_running_service(tmp_path, scene, tiny_run):
    """With a token (needed off loopback), requests without it get 401 and media paths cannot
    leave the data folder, on the real service."""
    import httpx

    run, _ = tiny_run
    video = write_video(tmp_path / "cam.avi", scene_frames(scene)[:20])
    token = "t" * 24
    cfg = watch_config(str(video), str(run))
    cfg.http.port, cfg.http.token = 0, token
    cfg.database, cfg.data = tmp_path / "events.sqlite", tmp_path / "media"
    service = Running(cfg)
    try:
        base = f"http://127.0.0.1:{service.ready.port}"
        assert httpx.get(f"{base}/api/cameras").status_code == 401
        assert httpx.get(f"{base}/api/cameras", headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = httpx.get(f"{base}/api/cameras", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["cameras"][0]["name"] == "cam"
        with EventStore(cfg.database) as store:
            event_id = store.open_event("cam", started_at=time.time(), start_frame=0, peak_score=1.0, peak_frame=0)
            store.close_event(event_id)
            with pytest.raises(ValueError):
                store.attach_media(event_id, snapshot="../../etc/passwd")
        r = httpx.get(f"{base}/api/events/{event_id}/snapshot.jpg/../../../../etc/passwd", params={"token": token})
        assert r.status_code in (400, 404) and b"root:" not in r.content
    finally:
        service.close()


def test_ignore_polygons_zero_the_error_where_they_lie():
    """An ignore polygon (source pixels) becomes a 0/1 mask at the error map's size, and the live
    scorer multiplies it into the error before scoring: an anomaly inside it no longer counts."""
    import torch

    from ddlvad.config import Config
    from ddlvad.score import LiveScorer
    from ddlvad.watch.service import ignore_mask

    keep = ignore_mask([[[0, 0], [120, 0], [120, 80], [0, 80]]], (160, 240), (32, 48))  # the top-left quarter
    assert keep.shape == (32, 48) and keep[:16, :24].sum() == 0 and keep[17:, 25:].min() == 1
    assert ignore_mask([], (160, 240), (32, 48)) is None

    class Blank(torch.nn.Module):  # reconstructs black: the error is the frame
        frames = 3

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def encode_frames(self, frames):
            return [frames]

        def decode_windows(self, windows):
            return torch.zeros_like(windows[0][:, :, 0])

    score = Config.preset("tiny").score
    frame = np.zeros((32, 48, 1), np.uint8)
    frame[2:10, 2:10] = 255  # an "anomaly" inside the ignored quarter
    results = {}
    for name, mask in (("plain", None), ("ignored", keep)):
        live = LiveScorer(Blank(), score)
        for i in range(3):
            out = live.step({"cam": (i, frame, i)}, {"cam": mask})
        results[name] = out["cam"].score
    assert results["plain"] > 0.5 and results["ignored"] == 0.0
