"""The HTTP API of ``ddlvad watch`` (:mod:`ddlvad.watch.web`), served by uvicorn on a free loopback
port and spoken to over real sockets (httpx, and http.client where a path must reach the server
exactly as written). The view behind it is :class:`ToyView`, a small but real :class:`WatchView`: a
real :class:`EventStore` in tmp_path, events whose snapshots are real JPEGs and whose clips are real
VP8 WebM files, and a thread that draws frames that change over time. Also the threshold suggestion
(:mod:`ddlvad.watch.review`) with hand-worked numbers."""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web page needs fastapi (pyproject must list fastapi, uvicorn, prometheus-client)")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from ddlvad import UserError  # noqa: E402
from ddlvad.watch.config import redact  # noqa: E402
from ddlvad.watch.review import candidate_threshold, silenced_by, suggest_threshold  # noqa: E402
from ddlvad.watch.store import EventStore, prepare_media_dir  # noqa: E402
from ddlvad.watch.web import LIVE_WAIT, serve  # noqa: E402

TOKEN = "s3cret-token-0123456789abcdef"
PASSWORD = "hunter2pass"
SOURCES = {"gate": f"rtsp://admin:{PASSWORD}@10.0.0.5/stream1", "door": "/videos/door.mp4"}


# ====================================================================== a small real WatchView
class ToyView:
    """A WatchView of ``sources`` (name -> source): a thread draws a 160x120 frame per camera every
    ``1 / fps`` seconds (a bright bar that moves, and with overlay a red box), and records a score
    trace. ``waiting``: :meth:`wait_frame` calls in progress (the live view's threads)."""

    def __init__(self, store: EventStore, data_dir: Path, sources: dict[str, str], fps: float = 10.0) -> None:
        self.store, self.data_dir, self.sources = store, data_dir, dict(sources)
        self.thresholds = dict.fromkeys(sources, 0.03)
        self.states = dict.fromkeys(sources, "connected")
        self.frames: dict[str, tuple[int, bytes, bytes]] = {}
        self.traces: dict[str, deque] = {name: deque(maxlen=2000) for name in sources}
        self.waiting = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._fps = fps
        self._thread = threading.Thread(target=self._draw, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _draw(self) -> None:
        seq = 0
        while not self._stop.is_set():
            seq += 1
            for k, name in enumerate(self.sources):
                plain = np.full((120, 160, 3), 40 + 30 * k, np.uint8)
                x = (seq * 7) % 150
                plain[:, x:x + 10] = 255  # the moving bar
                cv2.putText(plain, str(seq), (4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)
                drawn = plain.copy()
                cv2.rectangle(drawn, (20, 30), (90, 100), (0, 0, 255), 2)
                score = 0.03 + 0.02 * math.sin(seq / 5.0)
                with self._cond:
                    self.frames[name] = (seq, _jpeg(drawn), _jpeg(plain))
                    self.traces[name].append((time.time(), score))
                    self._cond.notify_all()
            self._stop.wait(1.0 / self._fps)

    def _check(self, camera: str) -> None:
        if camera not in self.sources:
            raise KeyError(camera)

    # the WatchView methods
    def cameras(self) -> list[dict]:
        out = []
        for name, source in self.sources.items():
            with self._cond:
                seq = self.frames.get(name, (0,))[0]
            out.append({"name": name, "label": redact(source), "run": "/runs/toy", "state": self.states[name],
                        "threshold": self.thresholds[name],
                        "stats": {"camera_fps": 12.5, "process_fps": self._fps, "skipped_fps": 2.5,
                                  "latency_median_ms": 41.0, "latency_p95_ms": 88.0, "last_frame_at": time.time(),
                                  "frames": seq, "skipped": 3 * seq}})
        return out

    def latest_frame(self, camera: str, overlay: bool = True) -> tuple[int, bytes] | None:
        self._check(camera)
        with self._cond:
            got = self.frames.get(camera)
        return None if got is None else (got[0], got[1] if overlay else got[2])

    def wait_frame(self, camera: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        self._check(camera)
        with self._cond:
            self.waiting += 1
            try:
                if self._cond.wait_for(lambda: self.frames.get(camera, (-1,))[0] > after, timeout):
                    seq, drawn, _ = self.frames[camera]
                    return seq, drawn
                return None
            finally:
                self.waiting -= 1

    def trace(self, camera: str, seconds: float = 60.0) -> list[tuple[float, float]]:
        self._check(camera)
        since = time.time() - seconds
        with self._cond:
            return [p for p in self.traces[camera] if p[0] >= since]

    def set_threshold(self, camera: str, value: float, origin: str, note: str | None = None) -> None:
        self._check(camera)
        self.store.record_threshold(camera, value, origin, note=note)
        self.thresholds[camera] = value


def _jpeg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data.tobytes()


def write_clip(path: Path, frames: int = 30, fps: float = 10.0, fourcc: str = "VP80") -> Path:
    """A real video file: a white square that moves across a dark frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (160, 120))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for i in range(frames):
        image = np.full((120, 160, 3), 30, np.uint8)
        image[40:80, 4 * i % 140:4 * i % 140 + 20] = 255
        writer.write(image)
    writer.release()
    assert path.stat().st_size > 0
    return path


def add_event(view: ToyView, camera: str, started_at: float, score: float, review: str | None = None, *,
              media: bool = True, clip_suffix: str = ".webm") -> int:
    """A closed event of ``camera``, with a snapshot JPEG and a clip under the data folder."""
    store = view.store
    event_id = store.open_event(camera, started_at=started_at, start_frame=int(started_at), peak_score=score,
                                peak_frame=int(started_at) + 3, threshold=view.thresholds.get(camera))
    store.close_event(event_id, ended_at=started_at + 2.0, end_frame=int(started_at) + 20, closed_at=started_at + 3,
                      regions=[[10, 20, 50, 60, score]], box=[10, 20, 50, 60])
    if media:
        snapshot = f"{camera}/day/{event_id}.jpg"
        (view.data_dir / snapshot).parent.mkdir(parents=True, exist_ok=True)
        (view.data_dir / snapshot).write_bytes(_jpeg(np.full((120, 160, 3), (event_id * 40) % 255, np.uint8)))
        clip = f"{camera}/day/{event_id}{clip_suffix}"
        write_clip(view.data_dir / clip, fourcc="VP80" if clip_suffix == ".webm" else "mp4v")
        store.attach_media(event_id, snapshot=snapshot, clip=clip)
    if review is not None:
        store.review(event_id, review)
    return event_id


# ====================================================================== fixtures
@pytest.fixture
def view(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    toy = ToyView(store, prepare_media_dir(tmp_path / "media"), SOURCES)
    yield toy
    toy.close()
    store.close()


@pytest.fixture
def server(view):
    with serve(view, "127.0.0.1", 0, token=TOKEN) as running:
        yield running


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url.rstrip("/"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=20) as c:
        yield c


def error_of(response) -> str:
    """The one-line error of a JSON error response."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:200]
    text = response.json()["error"]
    assert isinstance(text, str) and text and "\n" not in text and "\n" not in response.text
    return text


def raw_get(server, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..`` or ``%2e``)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ====================================================================== review.py: hand-worked
def test_candidate_threshold_is_just_above_the_highest_false_alarm():
    assert candidate_threshold([]) is None
    assert candidate_threshold([0.02, 0.05, 0.04]) == pytest.approx(0.0505)  # 0.05 * 1.01
    assert candidate_threshold([0.05], margin=0.1) == pytest.approx(0.055)
    assert candidate_threshold([0.0]) > 0.0  # a peak of 0 is silenced too (the next float above it)


def test_silenced_by_counts_peaks_at_or_below_the_threshold():
    events = [{"peak_score": 0.02, "review": "false_alarm"}, {"peak_score": 0.05, "review": None},
              {"peak_score": 0.06, "review": "confirmed"}, {"peak_score": 0.07, "review": None}]
    # 0.05 <= 0.05 is silenced (a frame fires only above the threshold); 0.06 and 0.07 are not
    assert silenced_by(events, 0.05) == {"false_alarm": 1, "confirmed": 0, "unreviewed": 1, "total": 2}


def E(i, score, review=None):
    return {"id": i, "peak_score": score, "review": review}


def test_a_suggestion_from_three_false_alarms():
    events = [E(1, 0.04, "false_alarm"), E(2, 0.05, "false_alarm"), E(3, 0.045, "false_alarm"),
              E(4, 0.09, "confirmed"), E(5, 0.02), E(6, 0.05), E(7, 0.051), E(8, 0.2)]
    s = suggest_threshold(events, current=0.03)
    # highest false alarm 0.05 -> 0.0505; silenced: the three false alarms, unreviewed 0.02 and 0.05
    assert s.value == pytest.approx(0.0505) and s.refused is None and s.candidate == s.value
    assert (s.false_alarms, s.confirmed, s.highest_false_alarm, s.lowest_confirmed) == (3, 1, 0.05, 0.09)
    assert s.silenced == {"false_alarm": 3, "confirmed": 0, "unreviewed": 2, "total": 5} and s.blocking == []
    assert s.as_dict()["value"] == s.value


def test_a_suggestion_is_refused_with_the_reason():
    two = [E(1, 0.04, "false_alarm"), E(2, 0.05, "false_alarm")]
    s = suggest_threshold(two, current=0.03)
    assert s.value is None and s.refused.startswith("2 reviewed false alarm(s); at least 3 are needed")
    assert s.candidate == pytest.approx(0.0505)  # shown, not suggested
    assert suggest_threshold([], 0.03).candidate is None
    overlap = [*two, E(3, 0.03, "false_alarm"), E(4, 0.045, "confirmed"), E(5, 0.08, "confirmed")]
    s = suggest_threshold(overlap, current=0.03)  # 0.0505 would silence confirmed #4 (0.045)
    assert s.value is None and s.blocking == [4] and "would also silence 1 confirmed event(s)" in s.refused
    assert s.silenced == {"false_alarm": 3, "confirmed": 1, "unreviewed": 0, "total": 4}
    s = suggest_threshold([*two, E(3, 0.03, "false_alarm")], current=0.06)  # already above them all
    assert s.value is None and "already silences every reviewed false alarm" in s.refused
    assert suggest_threshold([*two, E(3, 0.03, "false_alarm")], current=0.06, min_false_alarms=1).value is None
    assert suggest_threshold(two, current=None, min_false_alarms=2).value == pytest.approx(0.0505)


# ====================================================================== cameras
def test_cameras_are_listed_with_stats_and_redacted_labels(client, view):
    response = client.get("/api/cameras")
    assert response.status_code == 200
    assert PASSWORD not in response.text and "source" not in response.json()["cameras"][0]
    gate, door = response.json()["cameras"]
    assert gate["name"] == "gate" and gate["label"] == "rtsp://admin:***@10.0.0.5/stream1"
    assert door["label"] == "/videos/door.mp4" and gate["state"] == "connected" and gate["threshold"] == 0.03
    assert gate["stats"]["process_fps"] == 10.0 and gate["stats"]["latency_p95_ms"] == 88.0
    view.set_threshold("gate", 0.04, "user", "by hand")
    detail = client.get("/api/cameras/gate").json()
    assert detail["threshold"] == 0.04 and [(t["value"], t["origin"], t["note"]) for t in detail["thresholds"]] == [
        (0.04, "user", "by hand")]
    assert PASSWORD not in client.get("/api/cameras/gate").text
    page = client.get("/") .text + client.get("/static/app.js").text
    assert PASSWORD not in page


def test_unknown_cameras_are_404(client):
    for path in ("/api/cameras/nope", "/api/cameras/nope/frame.jpg", "/api/cameras/nope/live",
                 "/api/cameras/nope/trace", "/api/cameras/nope/threshold-suggestion"):
        response = client.get(path)
        assert response.status_code == 404 and "nope" in error_of(response), path
    response = client.post("/api/cameras/nope/threshold", json={"value": 0.1})
    assert response.status_code == 404


def test_the_latest_frame_with_and_without_overlay(client):
    drawn = client.get("/api/cameras/gate/frame.jpg")
    plain = client.get("/api/cameras/gate/frame.jpg?overlay=0")
    assert drawn.status_code == plain.status_code == 200 and drawn.headers["content-type"] == "image/jpeg"
    a = cv2.imdecode(np.frombuffer(drawn.content, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(plain.content, np.uint8), cv2.IMREAD_COLOR)
    assert a.shape == b.shape == (120, 160, 3)
    assert a[30, 40, 2] > 150 and b[30, 40, 2] < 120  # the red box is on the overlay only (row 30: its top edge)
    assert int(drawn.headers["x-frame-sequence"]) >= 1


def test_the_score_trace(client):
    data = client.get("/api/cameras/gate/trace", params={"seconds": 30}).json()
    assert data["seconds"] == 30 and data["threshold"] == 0.03 and data["points"]
    now = time.time()
    assert all(now - 31 <= t <= now + 1 and 0.0 <= s <= 0.06 for t, s in data["points"])


# ====================================================================== events
def test_events_are_listed_filtered_and_paged(client, view):
    t = 1_700_000_000.0
    ids = {i: add_event(view, "gate" if i % 2 else "door", t + 10 * i, score=0.01 * i, media=False)
           for i in range(1, 8)}
    view.store.review(ids[3], "false_alarm")
    view.store.review(ids[5], "confirmed")
    page = client.get("/api/events").json()
    assert page["total"] == 7 and [e["id"] for e in page["events"]] == [ids[i] for i in range(7, 0, -1)]
    assert page["events"][0]["snapshot_url"] is None and page["limit"] == 50 and page["offset"] == 0
    page = client.get("/api/events", params={"limit": 3, "offset": 2}).json()
    assert page["total"] == 7 and [e["id"] for e in page["events"]] == [ids[5], ids[4], ids[3]]
    gate = client.get("/api/events", params={"camera": "gate"}).json()
    assert [e["id"] for e in gate["events"]] == [ids[7], ids[5], ids[3], ids[1]]
    strong = client.get("/api/events", params={"min_score": 0.045}).json()
    assert [e["id"] for e in strong["events"]] == [ids[7], ids[6], ids[5]]
    assert client.get("/api/events", params={"reviewed": "true"}).json()["total"] == 2
    assert client.get("/api/events", params={"reviewed": "false"}).json()["total"] == 5
    assert [e["id"] for e in client.get("/api/events", params={"review": "false_alarm"}).json()["events"]] == [ids[3]]
    window = client.get("/api/events", params={"since": t + 20, "until": t + 50}).json()  # [since, until)
    assert [e["id"] for e in window["events"]] == [ids[4], ids[3], ids[2]]
    one = client.get(f"/api/events/{ids[5]}").json()
    assert one["review"] == "confirmed" and one["camera"] == "gate" and one["regions"] == [[10, 20, 50, 60, 0.05]]


def test_bad_query_values_get_a_one_line_error(client, view):
    add_event(view, "gate", 100.0, 0.1, media=False)
    cases = {"/api/events?limit=-1": 400, "/api/events?limit=5000": 400, "/api/events?offset=-3": 400,
             "/api/events?limit=abc": 422, "/api/events?min_score=abc": 422, "/api/events?min_score=nan": 400,
             "/api/events?since=inf": 400, "/api/events?review=maybe": 400, "/api/events?reviewed=perhaps": 422,
             "/api/cameras/gate/trace?seconds=-1": 422, "/api/cameras/gate/trace?seconds=x": 422,
             "/api/cameras/gate/frame.jpg?overlay=sometimes": 422, "/api/events/abc": 422, "/api/events/999": 404,
             "/api/events/999/snapshot.jpg": 404, "/api/events/999/clip": 404, "/api/nothing-here": 404}
    for path, status in cases.items():
        response = client.get(path)
        assert response.status_code == status, (path, response.status_code, response.text)
        error_of(response)
    assert "min_score" in error_of(client.get("/api/events?min_score=abc"))
    assert "review must be one of false_alarm, confirmed" in error_of(client.get("/api/events?review=maybe"))
    for body, status in (({"review": "great"}, 422), ({}, 422), ({"review": None, "note": 5}, 422)):
        response = client.post("/api/events/1/review", json=body)
        assert response.status_code == status and error_of(response)
    for body in ({"value": -1}, {"value": "high"}, {"value": 0.1, "origin": "run"}, {}):
        response = client.post("/api/cameras/gate/threshold", json=body)
        assert response.status_code == 422 and error_of(response), body
    response = client.post("/api/cameras/gate/threshold", content=b'{"value": NaN}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and view.store.thresholds("gate") == []


def test_snapshot_and_clip_with_range_requests(client, view):
    event_id = add_event(view, "gate", 1000.0, 0.1)
    event = client.get(f"/api/events/{event_id}").json()
    assert event["snapshot_url"] == f"/api/events/{event_id}/snapshot.jpg" and event["clip_url"] == f"/api/events/{event_id}/clip"
    snapshot = client.get(event["snapshot_url"])
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
    assert snapshot.content == (view.data_dir / event["snapshot"]).read_bytes()
    data = (view.data_dir / event["clip"]).read_bytes()
    full = client.get(event["clip_url"])
    assert full.status_code == 200 and full.headers["content-type"] == "video/webm" and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and int(full.headers["content-length"]) == len(data)
    part = client.get(event["clip_url"], headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == data[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(data)}"
    tail = client.get(event["clip_url"], headers={"Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == data[100:]
    suffix = client.get(event["clip_url"], headers={"Range": "bytes=-50"})
    assert suffix.status_code == 206 and suffix.content == data[-50:]
    beyond = client.get(event["clip_url"], headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416
    mp4 = add_event(view, "door", 2000.0, 0.1, clip_suffix=".mp4")
    assert client.get(f"/api/events/{mp4}/clip").headers["content-type"] == "video/mp4"
    no_media = add_event(view, "door", 3000.0, 0.1, media=False)
    assert client.get(f"/api/events/{no_media}/clip").status_code == 404
    (view.data_dir / event["snapshot"]).unlink()  # deleted by hand: "gone", not a 500
    assert "is gone" in error_of(client.get(event["snapshot_url"]))


def test_a_review_round_trip(client, view):
    event_id = add_event(view, "gate", 1000.0, 0.1, media=False)
    response = client.post(f"/api/events/{event_id}/review", json={"review": "false_alarm", "note": "a moth"})
    assert response.status_code == 200 and response.json()["review"] == "false_alarm"
    stored = view.store.event(event_id)
    assert (stored["review"], stored["note"]) == ("false_alarm", "a moth") and stored["reviewed_at"] > 0
    assert client.get(f"/api/events/{event_id}").json()["note"] == "a moth"
    assert client.get("/api/events", params={"review": "false_alarm"}).json()["total"] == 1
    back = client.post(f"/api/events/{event_id}/review", json={"review": None}).json()
    assert back["review"] is None and back["note"] == "a moth" and view.store.event(event_id)["review"] is None
    assert client.post("/api/events/999/review", json={"review": "confirmed"}).status_code == 404


# ====================================================================== thresholds
def test_a_suggestion_is_applied_only_when_asked_and_recorded(client, view):
    # the hand-worked case above, through the store and HTTP: 0.0505, silencing 3 false alarms and 2 unreviewed
    for i, (score, review) in enumerate([(0.04, "false_alarm"), (0.05, "false_alarm"), (0.045, "false_alarm"),
                                         (0.09, "confirmed"), (0.02, None), (0.05, None), (0.051, None), (0.2, None)]):
        add_event(view, "gate", 1000.0 + i, score, review, media=False)
    add_event(view, "door", 5000.0, 0.01, "false_alarm", media=False)  # another camera's: not counted
    suggestion = client.get("/api/cameras/gate/threshold-suggestion").json()
    assert suggestion["value"] == pytest.approx(0.0505) and suggestion["refused"] is None
    assert suggestion["silenced"] == {"false_alarm": 3, "confirmed": 0, "unreviewed": 2, "total": 5}
    assert suggestion["current"] == 0.03 and view.store.thresholds("gate") == []  # asking applies nothing
    stale = client.post("/api/cameras/gate/threshold", json={"value": 0.07, "origin": "suggested-applied"})
    assert stale.status_code == 409 and "the suggestion has changed" in error_of(stale)
    applied = client.post("/api/cameras/gate/threshold", json={"value": suggestion["value"],
                                                               "origin": "suggested-applied", "note": "moths"})
    assert applied.status_code == 200 and applied.json()["threshold"] == suggestion["value"]
    assert view.thresholds["gate"] == suggestion["value"]
    after = client.get("/api/cameras/gate/threshold-suggestion").json()
    assert after["value"] is None and "already silences" in after["refused"]
    user = client.post("/api/cameras/gate/threshold", json={"value": 0.02})
    assert user.status_code == 200
    history = [(t["value"], t["origin"], t["note"]) for t in user.json()["thresholds"]]
    assert history == [(pytest.approx(0.0505), "suggested-applied", "moths"), (0.02, "user", None)]
    assert view.store.thresholds("gate")[-1]["value"] == 0.02
    door = client.get("/api/cameras/door/threshold-suggestion").json()
    assert door["value"] is None and "at least 3 are needed" in door["refused"] and door["false_alarms"] == 1


# ====================================================================== metrics
def test_metrics_are_prometheus_text(client, view):
    from prometheus_client.parser import text_string_to_metric_families

    add_event(view, "gate", 1000.0, 0.1, "false_alarm", media=False)
    add_event(view, "gate", 1001.0, 0.1, media=False)
    view.states["door"] = "reconnecting"
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(response.text) for s in family.samples}
    assert samples[("ddlvad_watch_process_fps", (("camera", "gate"),))] == 10.0
    assert samples[("ddlvad_watch_latency_seconds", (("camera", "gate"), ("quantile", "0.95")))] == pytest.approx(0.088)
    assert samples[("ddlvad_watch_camera_state", (("camera", "door"), ("state", "reconnecting")))] == 1.0
    assert samples[("ddlvad_watch_camera_state", (("camera", "door"), ("state", "connected")))] == 0.0
    assert samples[("ddlvad_watch_events", (("camera", "gate"), ("review", "false_alarm")))] == 1.0
    assert samples[("ddlvad_watch_events", (("camera", "gate"), ("review", "none")))] == 1.0
    assert samples[("ddlvad_watch_threshold", (("camera", "gate"),))] == 0.03
    assert samples[("ddlvad_watch_frames_total", (("camera", "gate"),))] >= 1
    assert PASSWORD not in response.text


# ====================================================================== security
def every_route(server, event_id: int) -> list[tuple[str, str]]:
    """(method, path) of every route the app has (so that a new route is checked too), the page's
    files and a path that does not exist."""
    out = [("GET", "/static/app.js"), ("GET", "/static/style.css"), ("GET", "/static/index.html"),
           ("GET", "/no-such-page")]
    for route in server.app.routes:
        path = getattr(route, "path", None)
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if path and method != "HEAD" and not path.startswith("/static"):
                out.append((method, path.replace("{name}", "gate").replace("{event_id}", str(event_id))))
    return out


def test_every_route_needs_the_token(server, view):
    event_id = add_event(view, "gate", 1000.0, 0.1)
    routes = every_route(server, event_id)
    paths = {p for _, p in routes}
    assert {"/", "/metrics", "/api/openapi.json", "/api/cameras/gate/live", f"/api/events/{event_id}/clip",
            f"/api/events/{event_id}/review", "/api/cameras/gate/threshold"} <= paths
    wrong = [{}, {"headers": {"Authorization": "Bearer wrong"}}, {"params": {"token": "wrong"}},
             {"headers": {"Authorization": f"Bearer {TOKEN[:-1]}"}}, {"params": {"token": ""}},
             {"headers": {"Cookie": "ddlvad_token=wrong"}}, {"headers": {"Authorization": TOKEN}}]
    base = server.url.rstrip("/")
    anonymous = httpx.Client(timeout=10)  # one client: a new one per request costs an SSL context
    for method, path in routes:
        for extra in wrong:
            anonymous.cookies.clear()
            response = anonymous.request(method, base + path, json={"review": "confirmed"} if method == "POST" else None,
                                         **extra)
            assert response.status_code == 401, (method, path, extra, response.status_code)
            assert response.headers["www-authenticate"] == "Bearer" and "set-cookie" not in response.headers
            assert response.json() == {"error": "missing or wrong token: send Authorization: Bearer TOKEN, or open "
                                                "/?token=TOKEN"}
    assert view.store.event(event_id)["review"] is None and view.store.thresholds() == []
    right = [{"headers": {"Authorization": f"Bearer {TOKEN}"}}, {"params": {"token": TOKEN}},
             {"headers": {"Cookie": f"ddlvad_token={TOKEN}"}}]
    for extra in right:
        for path in ("/", "/static/app.js", "/api/cameras", f"/api/events/{event_id}/snapshot.jpg", "/metrics"):
            anonymous.cookies.clear()
            assert anonymous.get(base + path, **extra).status_code == 200, (path, extra)
    anonymous.close()


def test_a_token_in_the_query_sets_a_cookie_for_the_page(server):
    base = server.url.rstrip("/")
    with httpx.Client(base_url=base, timeout=10) as browser:
        first = browser.get("/", params={"token": TOKEN})
        assert first.status_code == 200 and "<title>ddlvad watch</title>" in first.text
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"ddlvad_token={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert browser.get("/api/cameras").status_code == 200  # the cookie alone now
        assert "set-cookie" not in browser.get("/", params={"token": TOKEN}).headers  # already set
    assert httpx.get(base + "/", params={"token": "wrong"}, timeout=10).headers.get("set-cookie") is None


def test_post_from_another_origin_is_refused(client, view):
    event_id = add_event(view, "gate", 1000.0, 0.1, media=False)
    response = client.post(f"/api/events/{event_id}/review", json={"review": "confirmed"},
                           headers={"Origin": "http://evil.example"})
    assert response.status_code == 403 and view.store.event(event_id)["review"] is None
    same = client.post(f"/api/events/{event_id}/review", json={"review": "confirmed"},
                       headers={"Origin": client.base_url.scheme + "://" + client.base_url.netloc.decode()})
    assert same.status_code == 200


def test_without_a_token_only_loopback(view):
    with pytest.raises(UserError) as info:
        serve(view, "0.0.0.0", 0, token=None)
    assert "\n" not in str(info.value) and "set http.token" in str(info.value)
    with serve(view, "127.0.0.1", 0, token=None) as server:
        base = server.url.rstrip("/")
        assert httpx.get(base + "/api/cameras", timeout=10).status_code == 200
        assert httpx.get(base + "/api/cameras", headers={"Host": f"localhost:{server.port}"}, timeout=10).status_code == 200
        rebound = httpx.get(base + "/api/cameras", headers={"Host": "evil.example"}, timeout=10)  # DNS rebinding
        assert rebound.status_code == 421 and "gate" not in rebound.text


def test_a_port_in_use_is_a_user_error(server, view):
    with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        serve(view, "127.0.0.1", server.port, token=TOKEN)


def test_no_path_leads_out_of_the_data_folder(server, view, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    (view.data_dir / "gate").mkdir(exist_ok=True)
    os.symlink(secret, view.data_dir / "gate" / "link.jpg")  # a link out of the data folder
    os.symlink("/etc/passwd", view.data_dir / "gate" / "passwd.webm")
    linked = add_event(view, "gate", 1000.0, 0.1, media=False)
    view.store.attach_media(linked, snapshot="gate/link.jpg", clip="gate/passwd.webm")
    bad_paths = ["../secret.txt", str(secret), "/etc/passwd", "gate/../../secret.txt", "%2e%2e%2fsecret.txt",
                 "..%2fsecret.txt"]
    tampered = {add_event(view, "gate", 2000.0 + i, 0.1, media=False): bad for i, bad in enumerate(bad_paths)}
    conn = sqlite3.connect(view.store.path)  # rows the store itself would refuse (a tampered database)
    with conn:
        conn.executemany("UPDATE events SET snapshot = ?, clip = ? WHERE id = ?", [(b, b, i) for i, b in tampered.items()])
    conn.close()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for event_id in [linked, *tampered]:
        for what in ("snapshot.jpg", "clip"):
            status, body = raw_get(server, f"/api/events/{event_id}/{what}", auth)
            assert status == 404 and b"TOP-SECRET" not in body and b"root:" not in body, (event_id, what, status)
    for path in ("/static/../../secret.txt", "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fetc%2fpasswd",
                 "/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/static//etc/passwd", "/static/%2Fetc%2Fpasswd",
                 "/api/events/..%2f..%2fetc%2fpasswd/clip", "/api/events/%2e%2e/snapshot.jpg",
                 "/api/events/1/../../../etc/passwd", "/../../../etc/passwd", "/static/../web.py",
                 "/static/%2e%2e/web.py", f"/static/..%2f..%2f..%2f..%2f..%2f..{secret}"):
        status, body = raw_get(server, path, auth)
        assert status in (400, 404, 405, 422), (path, status)
        assert b"TOP-SECRET" not in body and b"root:" not in body and b"import" not in body, path


# ====================================================================== the live view
def read_parts(response: http.client.HTTPResponse, count: int) -> list[bytes]:
    """``count`` JPEG parts of a ``multipart/x-mixed-replace; boundary=frame`` body."""
    parts = []
    while len(parts) < count:
        line = response.readline()
        assert line, "the stream ended"
        if line.strip() != b"--frame":
            continue
        headers = {}
        while (line := response.readline().strip()):
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg"
        parts.append(response.read(int(headers["content-length"])))
    return parts


def open_live(server, camera: str = "gate") -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=20)
    conn.request("GET", f"/api/cameras/{camera}/live?token={TOKEN}")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type") == "multipart/x-mixed-replace; boundary=frame"
    return conn, response


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_the_live_view_streams_new_frames_and_stops_when_the_client_goes(server, view):
    conn, response = open_live(server)
    parts = read_parts(response, 4)
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(i is not None and i.shape == (120, 160, 3) for i in images)
    assert len({p for p in parts}) == 4  # each part a newer frame: the bar has moved
    assert server.app.state.live == 1
    conn.close()  # the client goes away
    assert wait_until(lambda: server.app.state.live == 0 and view.waiting == 0, 5 * LIVE_WAIT + 5)


def test_the_live_view_ends_when_the_server_stops(view):
    server = serve(view, "127.0.0.1", 0, token=TOKEN)
    conn, response = open_live(server)
    read_parts(response, 2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 10 and not server._thread.is_alive()
    with pytest.raises((http.client.IncompleteRead, ConnectionError, AssertionError, OSError)):
        read_parts(response, 1000)  # the stream ends rather than hanging
    conn.close()
    assert wait_until(lambda: view.waiting == 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url, timeout=5)


# ====================================================================== logs
def test_log_lines_hold_no_token_and_no_password(server, view, caplog):
    caplog.set_level(logging.DEBUG)
    base = server.url.rstrip("/")
    event_id = add_event(view, "gate", 1000.0, 0.1)
    for path in ("/", f"/api/events/{event_id}/clip", "/api/cameras", "/api/cameras/gate/frame.jpg"):
        assert httpx.get(base + path, params={"token": TOKEN}, timeout=10).status_code == 200
    assert httpx.get(base + "/api/cameras", params={"token": "wrong-guess"}, timeout=10).status_code == 401
    httpx.post(base + f"/api/events/{event_id}/review", json={"review": "confirmed"}, params={"token": TOKEN}, timeout=10)
    text = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith(("ddlvad", "uvicorn")))  # the server's
    assert "GET /api/cameras?token=*** 200" in text and "GET /api/cameras?token=*** 401" in text
    assert TOKEN not in text and "wrong-guess" not in text and PASSWORD not in text
    assert f"event {event_id} reviewed as confirmed" in text
    json.dumps(text)  # plain text
