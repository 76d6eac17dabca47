"""The event store of ``ddlvad watch``: events written, listed, filtered, paged and reviewed; threshold
history; schema migrations; retention with real files; safe media paths; threads; and a writer
killed with SIGKILL mid-way."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import ddlvad
from ddlvad import UserError
from ddlvad.watch import store as store_module
from ddlvad.watch.store import MEDIA_MARKER, SCHEMA_VERSION, EventStore, media_path, prepare_media_dir


@pytest.fixture
def store(tmp_path):
    with EventStore(tmp_path / "db" / "events.sqlite") as s:
        yield s


def add(store: EventStore, camera: str, started_at: float, *, score: float = 0.5, close: bool = True, **media) -> int:
    """One event of 10 frames starting at frame ``started_at * 10``; closed unless ``close=False``."""
    frame = int(started_at * 10)
    event_id = store.open_event(camera, started_at=started_at, start_frame=frame, peak_score=score, peak_frame=frame)
    if close:
        store.close_event(event_id, ended_at=started_at + 0.9, end_frame=frame + 9, closed_at=started_at + 1)
    if media:
        store.attach_media(event_id, **media)
    return event_id


# ====================================================================== events
def test_an_event_from_open_to_closed(store):
    event_id = store.open_event("gate", started_at=1000.0, start_frame=50, peak_score=0.02, peak_frame=50,
                                threshold=0.015)
    event = store.event(event_id)
    assert event["open"] and (event["ended_at"], event["end_frame"], event["peak_at"]) == (1000.0, 50, 1000.0)
    assert (event["regions"], event["tracks"], event["box"], event["snapshot"], event["review"]) == ([], [], None,
                                                                                                     None, None)
    store.update_event(event_id, ended_at=1001.5, end_frame=65, peak_score=np.float32(0.25), peak_frame=60,
                       peak_at=1001.0)
    assert store.event(event_id)["open"] and store.event(event_id)["frames"] == 16
    regions = [[10.0, 20.0, 50.0, 80.0, 0.25]]
    tracks = [[[58, 10.0, 20.0, 50.0, 80.0], [60, 12.0, 20.0, 52.0, 80.0]]]
    store.close_event(event_id, ended_at=1002.0, end_frame=70, regions=regions, tracks=tracks,
                      box=np.array([10.0, 20.0, 52.0, 80.0]), closed_at=1003.0)
    store.attach_media(event_id, snapshot="gate/2024-05-01/1.jpg")
    store.attach_media(event_id, clip="gate/2024-05-01/1.mp4")
    assert store.event(event_id) == {
        "id": event_id, "camera": "gate", "open": False, "interrupted": False, "started_at": 1000.0, "ended_at": 1002.0,
        "closed_at": 1003.0, "start_frame": 50, "end_frame": 70, "peak_score": 0.25, "peak_frame": 60, "peak_at": 1001.0,
        "threshold": 0.015, "regions": regions, "tracks": tracks, "box": [10.0, 20.0, 52.0, 80.0],
        "snapshot": "gate/2024-05-01/1.jpg", "clip": "gate/2024-05-01/1.mp4", "review": None, "reviewed_at": None,
        "note": None, "frames": 21}
    assert store.event(event_id + 1) is None


def test_wrong_changes_are_refused(store):
    event_id = add(store, "gate", 1.0)
    with pytest.raises(ValueError, match="is already closed"):
        store.update_event(event_id, end_frame=99)
    with pytest.raises(ValueError, match="is already closed"):
        store.close_event(event_id)
    with pytest.raises(ValueError, match="event 99 does not exist"):
        store.update_event(99, end_frame=1)
    with pytest.raises(TypeError, match="cannot change"):
        store.update_event(event_id, camera="door")
    with pytest.raises(ValueError, match="peak_score must be a finite number"):
        store.open_event("gate", started_at=1.0, start_frame=1, peak_score=float("nan"), peak_frame=1)
    with pytest.raises(ValueError, match="start_frame must be a whole frame number"):
        store.open_event("gate", started_at=1.0, start_frame=1.5, peak_score=1.0, peak_frame=1)
    with pytest.raises(ValueError):
        store.open_event("gate", started_at=1.0, start_frame=1, peak_score=1.0, peak_frame=1, regions=[[0, 0, 1, float("inf")]])
    with pytest.raises(sqlite3.IntegrityError):  # the schema's own check: an event ends after it starts
        store.open_event("gate", started_at=5.0, start_frame=9, peak_score=1.0, peak_frame=9, end_frame=3)
    for bad in ("../x.jpg", "/etc/passwd", "", "a/../../b", "~/x"):
        with pytest.raises(ValueError, match="relative to the data folder"):
            store.attach_media(event_id, snapshot=bad)
    with pytest.raises(ValueError, match="does not exist"):
        store.attach_media(99, clip="a.mp4")
    assert store.events().total == 1


def test_list_filter_and_page(store):
    ids = {}
    for i in range(12):  # started at 100, 110, ... 210; cameras alternate; scores rise
        ids[i] = add(store, "gate" if i % 2 == 0 else "door", 100.0 + 10 * i, score=0.1 * i)
    open_id = add(store, "gate", 300.0, score=0.05, close=False)
    page = store.events(limit=5)
    assert page.total == 13 and [e["id"] for e in page.events] == [open_id, ids[11], ids[10], ids[9], ids[8]]
    assert page.events[0]["open"]
    assert [e["id"] for e in store.events(limit=5, offset=10).events] == [ids[2], ids[1], ids[0]]
    assert store.events(offset=50).events == [] and store.events(offset=50).total == 13
    gate = store.events(camera="gate")
    assert gate.total == 7 and {e["camera"] for e in gate.events} == {"gate"}
    window = store.events(since=120.0, until=150.0)  # started_at in [120, 150)
    assert [e["id"] for e in window.events] == [ids[4], ids[3], ids[2]]
    assert [e["id"] for e in store.events(min_score=0.95).events] == [ids[11], ids[10]]
    both = store.events(camera="door", since=150.0, min_score=0.6)
    assert [e["id"] for e in both.events] == [ids[11], ids[9], ids[7]] and both.total == 3
    assert store.cameras() == ["door", "gate"]
    for bad in ({"limit": 0}, {"limit": 10_000}, {"offset": -1}, {"limit": "5"}, {"since": float("nan")},
                {"review": "maybe"}):
        with pytest.raises(ValueError):
            store.events(**bad)


def test_review(store):
    a, b, c = (add(store, "gate", t) for t in (1.0, 2.0, 3.0))
    event = store.review(a, "false_alarm", "a cat", at=50.0)
    assert (event["review"], event["reviewed_at"], event["note"]) == ("false_alarm", 50.0, "a cat")
    store.review(b, "confirmed")
    assert time.time() - store.event(b)["reviewed_at"] < 60
    assert [e["id"] for e in store.events(reviewed=True).events] == [b, a]
    assert [e["id"] for e in store.events(reviewed=False).events] == [c]
    assert [e["id"] for e in store.events(review="false_alarm").events] == [a]
    assert store.review(a, "confirmed")["note"] == "a cat"  # note kept when not given
    assert store.review(a, None, "")["review"] is None and store.event(a)["note"] == "" and not store.event(a)["reviewed_at"]
    assert store.review(99, "confirmed") is None
    with pytest.raises(ValueError, match="review must be one of"):
        store.review(a, "true_alarm")


def test_threshold_history(store):
    store.record_threshold("gate", 0.031, "run", at=10.0)
    store.record_threshold("door", 0.5, "config", at=11.0)
    store.record_threshold("gate", 0.040, "suggested-applied", note="p99 of 3 days", at=20.0)
    store.record_threshold("gate", 0.035, "user", at=30.0)
    history = store.thresholds("gate")
    assert [(t["value"], t["origin"], t["set_at"]) for t in history] == [
        (0.031, "run", 10.0), (0.040, "suggested-applied", 20.0), (0.035, "user", 30.0)]
    assert history[1]["note"] == "p99 of 3 days" and history[-1]["value"] == 0.035  # the last is in force
    assert [t["camera"] for t in store.thresholds()] == ["gate", "door", "gate", "gate"]
    assert store.thresholds("nobody") == []
    with pytest.raises(ValueError, match="origin must be one of"):
        store.record_threshold("gate", 0.1, "guess")
    with pytest.raises(ValueError, match="finite"):
        store.record_threshold("gate", float("inf"), "user")


def test_events_left_open_by_a_crash_are_closed_at_start_up(store):
    done = add(store, "gate", 1.0)
    open_a = add(store, "gate", 2.0, close=False)
    store.update_event(open_a, ended_at=2.5, end_frame=25)
    open_b = add(store, "door", 3.0, close=False)
    assert store.close_open_events(now=99.0) == [open_a, open_b]
    a = store.event(open_a)
    assert (a["open"], a["interrupted"], a["ended_at"], a["end_frame"], a["closed_at"]) == (False, True, 2.5, 25, 99.0)
    assert store.event(done)["interrupted"] is False and store.event(done)["closed_at"] == 2.0
    assert store.close_open_events(now=100.0) == []


def test_threads_read_while_one_writes(store):
    errors: list[BaseException] = []
    stop = threading.Event()

    def write():
        try:
            for i in range(30):
                event_id = add(store, "gate", float(i), close=False)
                store.update_event(event_id, end_frame=i * 10 + 5, ended_at=i + 0.5)
                store.close_event(event_id)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)
        finally:
            stop.set()

    def read():
        try:
            while not stop.is_set():
                page = store.events(limit=1000)
                assert page.total >= len(page.events) and all(e["end_frame"] >= e["start_frame"] for e in page.events)
                store.review(page.events[0]["id"], "confirmed") if page.events else None
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and store.events().total == 30
    assert len(store._pool) <= store_module.READ_POOL


# ====================================================================== schema
def test_a_new_database_is_wal_with_the_current_schema(tmp_path):
    path = tmp_path / "events.sqlite"
    with EventStore(path) as store:
        assert store.version == SCHEMA_VERSION
        assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store._writer.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"events", "thresholds", "events_started", "events_camera_started", "events_open"} <= names
    plan = " ".join(r[3] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE camera = 'a' ORDER BY started_at DESC LIMIT 5"))
    assert "events_camera_started" in plan
    conn.close()


def test_a_version_0_database_is_migrated(tmp_path):
    path = tmp_path / "events.sqlite"
    sqlite3.connect(path).close()  # an empty SQLite file: user_version 0, no tables
    with EventStore(path) as store:
        assert store.version == SCHEMA_VERSION
        assert store.events().total == 0


def test_migrations_apply_in_order_and_a_failing_one_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "events.sqlite"
    with EventStore(path) as store:  # a database of version 1 with an event
        event_id = add(store, "gate", 1.0)
    second = ["ALTER TABLE events ADD COLUMN colour TEXT", "UPDATE events SET colour = 'red'"]
    broken = ["ALTER TABLE events ADD COLUMN size INTEGER", "UPDATE no_such_table SET x = 1"]
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, second, broken])
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        EventStore(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2  # the second applied, the third rolled back
    assert [r[1] for r in conn.execute("PRAGMA table_info(events)")][-1] == "colour"
    assert conn.execute("SELECT colour FROM events").fetchall() == [("red",)]
    conn.close()
    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS[:2], lambda c: c.execute(
        "ALTER TABLE events ADD COLUMN size INTEGER DEFAULT 3")])  # a migration may be a function
    with EventStore(path) as store:
        assert store.version == 3 and store.event(event_id)["camera"] == "gate"


def test_a_newer_database_is_refused(tmp_path):
    path = tmp_path / "events.sqlite"
    EventStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UserError) as info:
        EventStore(path, what="database (watch.yaml)")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"database (watch.yaml): {path} was written by a newer ddlvad "
                                                      f"(schema version {SCHEMA_VERSION + 1}")


def test_other_files_are_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(UserError, match="is an SQLite database of something else \\(tables songs\\)"):
        EventStore(other)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is no database, but long enough to look like a header" * 20)
    with pytest.raises(UserError, match="cannot open .* as an SQLite database"):
        EventStore(junk)
    with pytest.raises(UserError, match="give a file path"):
        EventStore(":memory:")


# ====================================================================== retention
DAY = 86400.0


def media(data: Path, rel: str, size: int, mtime: float | None = None) -> str:
    path = data / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return rel


def test_retention_by_days(store, tmp_path):
    data, now = tmp_path / "media", 100 * DAY
    old = add(store, "gate", now - 20 * DAY, snapshot=media(data, "gate/old.jpg", 10), clip=media(data, "gate/old.mp4", 30))
    older_open = add(store, "gate", now - 30 * DAY, close=False)  # still in progress: kept
    new = add(store, "gate", now - 1 * DAY, snapshot=media(data, "gate/new.jpg", 10))
    bare = add(store, "door", now - 15 * DAY)  # no media
    result = store.retention(now, data_dir=data, days=14)
    assert result.events == [old, bare] and result.files == ["gate/old.jpg", "gate/old.mp4"] and result.bytes == 40
    assert result.media_bytes == 10
    assert not (data / "gate" / "old.jpg").exists() and (data / "gate" / "new.jpg").exists()
    assert [e["id"] for e in store.events().events] == [new, older_open]
    assert store.retention(now, data_dir=data, days=14).events == []


def test_retention_by_size(store, tmp_path):
    data, now = tmp_path / "media", 100 * DAY
    ids = [add(store, "gate", now - (10 - i) * 3600, snapshot=media(data, f"gate/{i}.jpg", 400),
               clip=media(data, f"gate/{i}.mp4", 600)) for i in range(5)]  # 5 events of 1000 bytes, oldest first
    shared = add(store, "door", now - 20 * 3600, snapshot="gate/4.jpg")  # the oldest, but names a file of ids[4]
    result = store.retention(now, data_dir=data, gigabytes=2500e-9)  # 2500 bytes: keep the newest 2 (2000 bytes)
    assert result.events == sorted([shared, *ids[:3]])
    assert result.bytes == 3000 and result.media_bytes == 2000
    assert sorted(p.name for p in (data / "gate").iterdir()) == ["3.jpg", "3.mp4", "4.jpg", "4.mp4"]  # 4.jpg still named
    assert store.events().total == 2
    assert store.retention(now, data_dir=data, gigabytes=2500e-9).events == []


def test_retention_removes_unnamed_files_after_a_grace_period(store, tmp_path):
    data, now = prepare_media_dir(tmp_path / "media"), 100 * DAY
    kept = add(store, "gate", now - 3600, snapshot=media(data, "gate/a.jpg", 5, mtime=now - DAY))
    media(data, "gate/orphan.jpg", 7, mtime=now - 2 * 3600)       # a crash between a delete and its files
    media(data, "gate/fresh.jpg", 9, mtime=now - 60)              # written, not attached yet
    media(data, "gate/day/.x.jpg.123.tmp", 3, mtime=now - 2 * 3600)  # a write a crash interrupted
    os.symlink("/etc/hostname", data / "gate" / "link")           # links are neither counted nor followed
    (data / "empty" / "day").mkdir(parents=True)
    os.utime(data / "empty" / "day", (now - DAY, now - DAY))
    os.utime(data / "empty", (now - DAY, now - DAY))
    result = store.retention(now, data_dir=data)
    assert result.events == [] and result.files == ["gate/day/.x.jpg.123.tmp", "gate/orphan.jpg"] and result.bytes == 10
    # old empty folders go; "day", emptied just now, goes in a later pass (the service may be about to write there)
    assert sorted(p.name for p in (data / "gate").iterdir()) == ["a.jpg", "day", "fresh.jpg", "link"]
    assert not (data / "empty").exists() and data.is_dir()
    assert store.event(kept)["snapshot"] == "gate/a.jpg" and (data / MEDIA_MARKER).is_file()


def test_no_unnamed_file_is_deleted_from_a_folder_not_marked_as_ddlvad_own(store, tmp_path):
    home, now = tmp_path / "home", 100 * DAY  # `data: ~` by mistake
    media(home, "videos/holiday.mp4", 100, mtime=now - 300 * DAY)
    old = add(store, "gate", now - 30 * DAY, snapshot=media(home, "gate/1.jpg", 10))
    result = store.retention(now, data_dir=home, days=14)
    assert result.events == [old] and result.files == ["gate/1.jpg"] and (home / "videos" / "holiday.mp4").is_file()
    with pytest.raises(UserError, match="home already holds files ddlvad watch did not write \\(gate, videos\\)"):
        prepare_media_dir(home)
    assert prepare_media_dir(tmp_path / "new" / "media") == tmp_path / "new" / "media"  # made and marked
    assert prepare_media_dir(tmp_path / "new" / "media").is_dir()  # marked: accepted again, whatever it holds
    (tmp_path / "empty").mkdir()
    assert (prepare_media_dir(tmp_path / "empty") / MEDIA_MARKER).is_file()


def test_a_crash_between_rows_and_files_leaves_no_broken_row(store, tmp_path, monkeypatch):
    data, now = prepare_media_dir(tmp_path / "media"), 100 * DAY
    for i in range(3):
        add(store, "gate", now - 30 * DAY + i, snapshot=media(data, f"gate/{i}.jpg", 10, mtime=now - 30 * DAY))
    add(store, "gate", now, snapshot=media(data, "gate/new.jpg", 10, mtime=now))

    def crash(*args):
        raise KeyboardInterrupt  # the process dies after the rows went, before any file did

    monkeypatch.setattr(store_module, "_unlink", crash)
    with pytest.raises(KeyboardInterrupt):
        store.retention(now, data_dir=data, days=14)
    for event in store.events().events:  # what the page can show all exists
        assert media_path(data, event["snapshot"]).is_file()
    assert store.events().total == 1 and len(list((data / "gate").iterdir())) == 4
    monkeypatch.undo()
    result = store.retention(now, data_dir=data, days=14)  # the next pass removes the unnamed files
    assert result.files == ["gate/0.jpg", "gate/1.jpg", "gate/2.jpg"]


# ====================================================================== media paths
def test_media_path_stays_inside_the_data_folder(tmp_path):
    data = tmp_path / "media"
    (data / "gate").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("no")
    (data / "gate" / "a.jpg").write_bytes(b"")
    assert media_path(data, "gate/a.jpg") == (data / "gate" / "a.jpg").resolve()
    assert media_path(data, "gate/not-yet.jpg").name == "not-yet.jpg"  # need not exist
    os.symlink(tmp_path / "secret.txt", data / "out.txt")
    os.symlink(tmp_path, data / "up")
    os.symlink(data / "gate" / "a.jpg", data / "gate" / "same.jpg")
    assert media_path(data, "gate/same.jpg") == (data / "gate" / "a.jpg").resolve()  # a link inside is fine
    for bad in ("../secret.txt", "gate/../../secret.txt", str(tmp_path / "secret.txt"), "/etc/passwd", "out.txt",
                "up/secret.txt", "", ".", "gate/a\0.jpg", "~/x"):
        with pytest.raises(ValueError):
            media_path(data, bad)


# ====================================================================== a writer killed mid-way
CHILD = """
import sys
from ddlvad.watch.store import EventStore

store = EventStore(sys.argv[1])
long_id = store.open_event("long", started_at=0.0, start_frame=0, peak_score=1.0, peak_frame=0)
print("long", long_id, flush=True)
i = 0
while True:
    i += 1
    event_id = store.open_event(f"cam{i % 3}", started_at=float(i), start_frame=10 * i, peak_score=0.1,
                                peak_frame=10 * i, threshold=0.05)
    for k in range(1, 4):
        store.update_event(event_id, ended_at=i + k / 10, end_frame=10 * i + k, peak_score=0.1 * (k + 1),
                           peak_frame=10 * i + k)
    store.close_event(event_id, closed_at=i + 1.0, regions=[[0, 0, i, i, 0.4]], tracks=[[[10 * i + 3, 0, 0, i, i]]],
                      box=[0, 0, i, i])
    print("closed", event_id, i, flush=True)
    store.update_event(long_id, ended_at=float(i), end_frame=i)
    print("long-end", i, flush=True)
"""


def test_a_writer_killed_with_sigkill_leaves_a_sound_database(tmp_path):
    path = tmp_path / "events.sqlite"
    src = str(Path(ddlvad.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True).start()
    closed: dict[int, int] = {}
    long_id, long_end = None, 0
    deadline = time.monotonic() + 60
    try:
        while len(closed) < 60:
            word, *numbers = lines.get(timeout=max(0.1, deadline - time.monotonic())).split()
            if word == "long":
                long_id = int(numbers[0])
            elif word == "closed":
                closed[int(numbers[0])] = int(numbers[1])
            else:
                long_end = int(numbers[0])
    finally:
        os.kill(child.pid, signal.SIGKILL)  # mid-way through the next event
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with EventStore(path) as store:
        for event_id, i in closed.items():  # every event reported closed is there, intact
            event = store.event(event_id)
            assert event is not None and not event["open"] and not event["interrupted"]
            assert (event["camera"], event["started_at"], event["start_frame"], event["end_frame"]) == (
                f"cam{i % 3}", float(i), 10 * i, 10 * i + 3)
            assert (event["ended_at"], event["peak_frame"], event["closed_at"], event["threshold"]) == (
                pytest.approx(i + 0.3), 10 * i + 3, i + 1.0, 0.05)
            assert event["peak_score"] == pytest.approx(0.4) and event["box"] == [0, 0, i, i]
            assert event["regions"] == [[0, 0, i, i, 0.4]] and event["tracks"] == [[[10 * i + 3, 0, 0, i, i]]]
        still_open = [e["id"] for e in store.events(limit=1000).events if e["open"]]
        assert long_id in still_open and set(still_open) <= {long_id, max(closed) + 1}
        assert store.close_open_events(now=1e9) == sorted(still_open)
        long = store.event(long_id)
        assert long["interrupted"] and not long["open"] and long["end_frame"] >= long_end  # its last known end
        assert store.events(limit=1000).total in (len(closed) + 1, len(closed) + 2)  # and perhaps the one in progress
        json.dumps(store.events(limit=1000).events)  # every row reads back as plain JSON
