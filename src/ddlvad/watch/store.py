"""The events of ``ddlvad watch`` and every threshold change, in one SQLite file.

    store = EventStore("watch/events.sqlite")
    event_id = store.open_event("gate", started_at=t, start_frame=120, peak_score=0.031, peak_frame=120)
    store.update_event(event_id, ended_at=t + 2.5, end_frame=145, peak_score=0.044, peak_frame=131)
    store.close_event(event_id, regions=event.peak_regions, tracks=event.tracks, box=event.box)
    store.attach_media(event_id, snapshot="gate/2024-05-01/17.jpg", clip="gate/2024-05-01/17.mp4")
    page = store.events(camera="gate", reviewed=False, limit=50)   # page.events, page.total

**Durability.** WAL journal (readers never block the writer, nor the writer readers) with
``synchronous=FULL``: every commit is fsynced, so an event whose id has been sent by webhook or MQTT
survives a power cut, not only a crash of the process (``NORMAL`` survives a killed process but may
lose the last commits on power loss). Events are written a few times each, not per frame, so the
fsync costs nothing that matters; the service should update an open event at most about once a second.

**Threads.** Any thread may call any method. Writes go through one connection under a lock (so they
are serialised inside the process) and run as ``BEGIN IMMEDIATE`` transactions (so they are
serialised with other processes too, waiting up to :data:`BUSY_TIMEOUT` seconds); reads borrow a
connection from a small pool and see the last committed state. A page view therefore never waits for
the detection loop's write, and the loop never waits for a page.

**Schema.** ``PRAGMA user_version`` holds the schema version; :data:`MIGRATIONS` are applied in order,
each in its own transaction together with the version bump, so a crash during one leaves the
database at the previous version. A database of a newer version is refused.

**Media.** Snapshot and clip paths are stored relative to the data folder (``watch.data``);
:func:`media_path` turns one into a real path and refuses anything that would lead outside that
folder. The service writes a file first (:func:`ddlvad.files.atomic_write`), then names it with
:meth:`EventStore.attach_media`; :meth:`EventStore.retention` deletes rows first, then their files
(a crash in between leaves unreferenced files, which the next retention removes, never a row that
points to a missing file). The data folder is for media only: retention deletes any other file in
it that no event names once it is :data:`ORPHAN_GRACE` old. A row can still name a missing file
when someone deletes files by hand: readers check that the path exists and answer "not found".

The store imports neither torch nor OpenCV.

One concern, in one module though it is long: the event database: schema and migrations, writes from
the service, reads for the page, retention of rows and files together, safe media paths.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from ..errors import UserError
from ..files import atomic_write, writable_dir

REVIEWS = ("false_alarm", "confirmed")
"""What a person can say about an event (or None: not reviewed)."""
ORIGINS = ("run", "config", "suggested-applied", "user")
"""Where a camera's threshold came from: stored by training, the YAML file, a suggestion the user
applied, typed by the user."""
BUSY_TIMEOUT = 10.0
"""Seconds a write waits for another process's write transaction before failing."""
MAX_LIMIT = 1000
"""Most events one :meth:`EventStore.events` call returns."""
ORPHAN_GRACE = 3600.0
"""Seconds a file under the data folder that no event names is kept before retention deletes it
(the service writes a file before it attaches it to its event)."""
READ_POOL = 4
"""Idle read connections kept for reuse."""
MEDIA_MARKER = ".ddlvad-watch-media"
"""File that :func:`prepare_media_dir` puts into a data folder it has made sure is ddlvad's own; without
it retention deletes no file that no event names (a ``data:`` pointing at a home folder must not
lose its files)."""

# ====================================================================== schema
_SCHEMA_1 = [
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, also after retention (ids go out in webhooks)
        camera TEXT NOT NULL,
        open INTEGER NOT NULL DEFAULT 1 CHECK (open IN (0, 1)),  -- 1: still in progress
        interrupted INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),  -- closed at start-up after a crash
        started_at REAL NOT NULL,            -- unix seconds of start_frame
        ended_at REAL NOT NULL,              -- unix seconds of end_frame (the last anomalous frame so far)
        closed_at REAL,                      -- unix seconds when the row was closed
        start_frame INTEGER NOT NULL,
        end_frame INTEGER NOT NULL,
        peak_score REAL NOT NULL,
        peak_frame INTEGER NOT NULL,
        peak_at REAL NOT NULL,               -- unix seconds of peak_frame
        threshold REAL,                      -- the frame threshold in force
        regions TEXT NOT NULL DEFAULT '[]',  -- JSON: the peak frame's regions, [[x1, y1, x2, y2, score], ...]
        tracks TEXT NOT NULL DEFAULT '[]',   -- JSON: [[[frame, x1, y1, x2, y2], ...], ...], longest first
        box TEXT,                            -- JSON: [x1, y1, x2, y2], union of the regions; NULL: none
        snapshot TEXT,                       -- relative to the data folder; NULL until written
        clip TEXT,                           -- relative to the data folder; NULL until written
        review TEXT CHECK (review IN ('false_alarm', 'confirmed')),  -- NULL: not reviewed
        reviewed_at REAL,
        note TEXT,
        CHECK (end_frame >= start_frame AND ended_at >= started_at)
    )""",
    "CREATE INDEX events_started ON events (started_at)",
    "CREATE INDEX events_camera_started ON events (camera, started_at)",
    "CREATE INDEX events_review_started ON events (review, started_at)",
    "CREATE INDEX events_open ON events (id) WHERE open = 1",
    """CREATE TABLE thresholds (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        value REAL NOT NULL,
        origin TEXT NOT NULL CHECK (origin IN ('run', 'config', 'suggested-applied', 'user')),
        set_at REAL NOT NULL,                -- unix seconds
        note TEXT
    )""",
    "CREATE INDEX thresholds_camera ON thresholds (camera, set_at)",
]

Migration = Sequence[str] | Callable[[sqlite3.Connection], None]
MIGRATIONS: list[Migration] = [_SCHEMA_1]
"""Migration ``i`` (from 0) takes a database from version ``i`` to ``i + 1``: SQL statements, or a
function of the connection. Append only; never edit one that has shipped."""
SCHEMA_VERSION = len(MIGRATIONS)
"""The version this code writes."""

_COLUMNS = ("id", "camera", "open", "interrupted", "started_at", "ended_at", "closed_at", "start_frame", "end_frame",
            "peak_score", "peak_frame", "peak_at", "threshold", "regions", "tracks", "box", "snapshot", "clip",
            "review", "reviewed_at", "note")
_JSON = ("regions", "tracks", "box")
_MUTABLE = ("ended_at", "end_frame", "peak_score", "peak_frame", "peak_at", "threshold", "regions", "tracks", "box")


class EventPage(NamedTuple):
    """One page of :meth:`EventStore.events`."""

    events: list[dict]
    """The events, newest first (see :meth:`EventStore.event` for the keys)."""
    total: int
    """How many events match the filters in all (for paging)."""


@dataclass
class RetentionResult:
    """What :meth:`EventStore.retention` deleted."""

    events: list[int] = field(default_factory=list)
    """Ids of the deleted events (rows)."""
    files: list[str] = field(default_factory=list)
    """Deleted files, relative to the data folder: the events' media and unreferenced files."""
    bytes: int = 0
    """Bytes freed."""
    media_bytes: int = 0
    """Bytes of the files under the data folder afterwards."""


# ====================================================================== the store
class EventStore:
    """Events and threshold changes in the SQLite file ``path`` (created, with its folder, if missing).

    Raises :class:`UserError` naming ``what`` (the setting that chose the file) when the file cannot be
    opened, is not a ddlvad watch database or was written by a newer ddlvad. See the module docstring
    for durability, threads, migrations and media.
    """

    def __init__(self, path: str | Path, *, what: str = "database") -> None:
        self.path = Path(path)
        self.what = what
        if str(path) == ":memory:" or str(path).startswith("file:"):
            raise UserError(f"{what}: give a file path (each thread opens its own connection to it), not {path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{what}: cannot create the folder of {self.path} ({exc.strerror or exc}); "
                            f"choose another path") from None
        self._lock = threading.Lock()
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect()
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            self._writer.close()
            raise UserError(f"{what}: {self.path} cannot use SQLite's WAL journal on this file system (got {mode}); "
                            f"put the database on a local disk")
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ connections
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA schema_version").fetchone()  # reads the header: fails now on a file that is no database
        except sqlite3.DatabaseError as exc:
            raise UserError(f"{self.what}: cannot open {self.path} as an SQLite database ({exc}); give a new file or "
                            f"an events database of ddlvad watch") from None
        conn.row_factory = sqlite3.Row
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on a clean exit, else rolled back."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the event store is closed")
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # also when COMMIT itself failed (a full disk)
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A pooled connection inside one read transaction (a consistent snapshot)."""
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("the event store is closed")
            conn = self._pool.pop() if self._pool else None
        conn = conn or self._connect()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        with self._pool_lock:
            if self._closed or len(self._pool) >= READ_POOL:
                conn.close()
            else:
                self._pool.append(conn)

    def close(self) -> None:
        """Close every connection (the last close checkpoints the WAL into the database file)."""
        with self._lock, self._pool_lock:
            if self._closed:
                return
            self._closed = True
            for conn in self._pool:
                conn.close()
            self._pool.clear()
            self._writer.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ schema
    @property
    def version(self) -> int:
        """The schema version of the file (``PRAGMA user_version``)."""
        with self._read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        """Apply the missing :data:`MIGRATIONS`, each with its version bump in one transaction."""
        while True:
            with self._write() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > len(MIGRATIONS):
                    raise UserError(f"{self.what}: {self.path} was written by a newer ddlvad (schema version {version}, "
                                    f"this one knows up to {len(MIGRATIONS)}): upgrade ddlvad or choose another file")
                if version == len(MIGRATIONS):
                    return
                if version == 0:
                    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                         "AND name NOT LIKE 'sqlite_%'")]
                    if tables:
                        raise UserError(f"{self.what}: {self.path} is an SQLite database of something else (tables "
                                        f"{', '.join(sorted(tables))}): choose another file for the events")
                migration = MIGRATIONS[version]
                if callable(migration):
                    migration(conn)
                else:
                    for statement in migration:
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version + 1}")

    # ------------------------------------------------------------ events: the service writes
    def open_event(self, camera: str, *, started_at: float, start_frame: int, peak_score: float, peak_frame: int,
                   peak_at: float | None = None, ended_at: float | None = None, end_frame: int | None = None,
                   threshold: float | None = None, regions: list | None = None, tracks: list | None = None,
                   box: list | None = None) -> int:
        """Record a new event in progress; returns its id.

        Times are unix seconds; ``ended_at``/``end_frame`` default to the start, ``peak_at`` to
        ``started_at``. ``regions``: the peak frame's regions ``[[x1, y1, x2, y2, score], ...]``
        (:attr:`ddlvad.stream.Event.peak_regions`), ``tracks`` and ``box`` as in
        :class:`ddlvad.stream.Event`, boxes in source pixels. ValueError for NaN or infinite numbers."""
        values = {"camera": camera, "started_at": started_at, "start_frame": start_frame, "peak_score": peak_score,
                  "peak_frame": peak_frame, "peak_at": started_at if peak_at is None else peak_at,
                  "ended_at": started_at if ended_at is None else ended_at,
                  "end_frame": start_frame if end_frame is None else end_frame, "threshold": threshold,
                  "regions": regions or [], "tracks": tracks or [], "box": box}
        if not isinstance(camera, str) or not camera:
            raise ValueError(f"camera must be a name, not {camera!r}")
        row = _row(values)
        with self._write() as conn:
            names = ", ".join(row)
            cursor = conn.execute(f"INSERT INTO events ({names}) VALUES ({', '.join('?' * len(row))})",
                                  tuple(row.values()))
            return int(cursor.lastrowid)

    def update_event(self, event_id: int, **values: Any) -> None:
        """Change an open event as it grows: any of ``ended_at``, ``end_frame``, ``peak_score``,
        ``peak_frame``, ``peak_at``, ``threshold``, ``regions``, ``tracks``, ``box`` (as in
        :meth:`open_event`). ValueError when the event does not exist or is closed."""
        self._change(event_id, values, close=False)

    def close_event(self, event_id: int, *, closed_at: float | None = None, **values: Any) -> None:
        """Close an open event, with its final values (as :meth:`update_event`); ``closed_at``: unix
        seconds, default now. ValueError when the event does not exist or is already closed."""
        self._change(event_id, values, close=True, closed_at=time.time() if closed_at is None else closed_at)

    def _change(self, event_id: int, values: dict[str, Any], close: bool, closed_at: float | None = None) -> None:
        unknown = set(values) - set(_MUTABLE)
        if unknown:
            raise TypeError(f"cannot change {sorted(unknown)} of an event; these can change: {', '.join(_MUTABLE)}")
        row = _row(values)
        if close:
            row.update(open=0, closed_at=_finite("closed_at", closed_at))
        with self._write() as conn:
            if row:
                assignments = ", ".join(f"{name} = ?" for name in row)
                changed = conn.execute(f"UPDATE events SET {assignments} WHERE id = ? AND open = 1",
                                       (*row.values(), event_id)).rowcount
            else:
                changed = conn.execute("SELECT count(*) FROM events WHERE id = ? AND open = 1", (event_id,)).fetchone()[0]
            if not changed:
                state = conn.execute("SELECT open FROM events WHERE id = ?", (event_id,)).fetchone()
                raise ValueError(f"event {event_id} " + ("does not exist" if state is None else "is already closed"))

    def attach_media(self, event_id: int, *, snapshot: str | None = None, clip: str | None = None) -> None:
        """Name the event's snapshot and/or clip, relative to the data folder (``CAMERA/DAY/ID.jpg``),
        once the file has been written. ValueError for an absolute path, ``..``, or a missing event."""
        row = {name: _relative(name, value) for name, value in (("snapshot", snapshot), ("clip", clip))
               if value is not None}
        if not row:
            return
        with self._write() as conn:
            assignments = ", ".join(f"{name} = ?" for name in row)
            cursor = conn.execute(f"UPDATE events SET {assignments} WHERE id = ?", (*row.values(), event_id))
            if cursor.rowcount == 0:
                raise ValueError(f"event {event_id} does not exist")

    def close_open_events(self, now: float | None = None) -> list[int]:
        """At start-up: close the events a stopped or crashed service left open, at their last known
        end (``ended_at``, ``end_frame`` as last written), marked ``interrupted``; ``closed_at`` =
        ``now`` (default: now). Returns their ids."""
        now = time.time() if now is None else _finite("now", now)
        with self._write() as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM events WHERE open = 1 ORDER BY id")]
            conn.execute("UPDATE events SET open = 0, interrupted = 1, closed_at = ? WHERE open = 1", (now,))
        return ids

    # ------------------------------------------------------------ events: people read and review
    def event(self, event_id: int) -> dict | None:
        """The event as a dict (None when there is none): the columns of the ``events`` table (see
        :data:`MIGRATIONS`), ``open`` and ``interrupted`` as bools, ``regions``/``tracks``/``box``
        decoded from JSON, and ``frames`` (``end_frame - start_frame + 1``)."""
        with self._read() as conn:
            row = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else _event(row)

    def events(self, camera: str | None = None, since: float | None = None, until: float | None = None,
               min_score: float | None = None, reviewed: bool | None = None, review: str | None = None,
               limit: int = 50, offset: int = 0) -> EventPage:
        """Events newest first (by ``started_at``) and how many match in all.

        ``camera``: only this camera's. ``since``/``until``: ``started_at`` in ``[since, until)``,
        unix seconds. ``min_score``: ``peak_score >= min_score``. ``reviewed``: True only reviewed
        events, False only unreviewed ones. ``review``: only events reviewed as ``false_alarm`` or
        ``confirmed``. ``limit`` (1 to :data:`MAX_LIMIT`) events from ``offset``. ValueError for a
        bad filter value (the page should answer 400)."""
        where, args = [], []
        if camera is not None:
            where.append("camera = ?")
            args.append(camera)
        if since is not None:
            where.append("started_at >= ?")
            args.append(_finite("since", since))
        if until is not None:
            where.append("started_at < ?")
            args.append(_finite("until", until))
        if min_score is not None:
            where.append("peak_score >= ?")
            args.append(_finite("min_score", min_score))
        if reviewed is not None:
            where.append("review IS NOT NULL" if reviewed else "review IS NULL")
        if review is not None:
            if review not in REVIEWS:
                raise ValueError(f"review must be one of {', '.join(REVIEWS)}, not {review!r}")
            where.append("review = ?")
            args.append(review)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset must be a whole number >= 0, not {offset!r}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._read() as conn:
            total = conn.execute(f"SELECT count(*) FROM events{clause}", args).fetchone()[0]
            rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM events{clause} "
                                f"ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
        return EventPage([_event(row) for row in rows], total)

    def cameras(self) -> list[str]:
        """Names of the cameras that have events or thresholds, sorted."""
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT camera FROM events UNION SELECT camera FROM thresholds "
                                                "ORDER BY 1")]

    def review(self, event_id: int, review: str | None, note: str | None = None, *, at: float | None = None
               ) -> dict | None:
        """Mark an event ``false_alarm`` or ``confirmed`` (None: not reviewed again) at ``at`` (unix
        seconds, default now); ``note`` replaces the note when given (``""`` clears it). Returns the
        event afterwards, None when there is no such event. ValueError for another review value."""
        if review is not None and review not in REVIEWS:
            raise ValueError(f"review must be one of {', '.join(REVIEWS)} or None, not {review!r}")
        reviewed_at = None if review is None else (time.time() if at is None else _finite("at", at))
        with self._write() as conn:
            cursor = conn.execute("UPDATE events SET review = ?, reviewed_at = ?, note = coalesce(?, note) WHERE id = ?",
                                  (review, reviewed_at, note, event_id))
            if cursor.rowcount == 0:
                return None
        return self.event(event_id)

    # ------------------------------------------------------------ thresholds
    def record_threshold(self, camera: str, value: float, origin: str, *, note: str | None = None,
                         at: float | None = None) -> int:
        """Record that ``camera``'s threshold became ``value`` at ``at`` (unix seconds, default now);
        ``origin`` one of :data:`ORIGINS`. Returns the record's id."""
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {', '.join(ORIGINS)}, not {origin!r}")
        row = (camera, _finite("value", value), origin, time.time() if at is None else _finite("at", at), note)
        with self._write() as conn:
            cursor = conn.execute("INSERT INTO thresholds (camera, value, origin, set_at, note) VALUES (?, ?, ?, ?, ?)",
                                  row)
            return int(cursor.lastrowid)

    def thresholds(self, camera: str | None = None) -> list[dict]:
        """The threshold changes of ``camera`` (None: every camera), oldest first: dicts of ``id``,
        ``camera``, ``value``, ``origin``, ``set_at``, ``note``. The last is the one in force."""
        query = "SELECT id, camera, value, origin, set_at, note FROM thresholds"
        args: tuple = ()
        if camera is not None:
            query, args = query + " WHERE camera = ?", (camera,)
        with self._read() as conn:
            return [dict(row) for row in conn.execute(query + " ORDER BY set_at, id", args)]

    # ------------------------------------------------------------ retention
    def retention(self, now: float | None = None, *, data_dir: str | Path, days: float | None = None,
                  gigabytes: float | None = None, orphan_grace: float = ORPHAN_GRACE) -> RetentionResult:
        """Delete closed events that started more than ``days`` before ``now`` (unix seconds, default
        now), then the oldest closed events that have media until the files under ``data_dir`` take at
        most ``gigabytes`` (10^9 bytes), each row with its snapshot and clip. Open events are kept.

        Order: the rows are deleted (one transaction) before their files, so that no row ever names a
        file that is gone; a crash in between leaves files no row names, which this method deletes
        when they are older than ``orphan_grace`` seconds (files the service has written but not yet
        attached are younger), with empty folders as old, if the folder holds :data:`MEDIA_MARKER`
        (:func:`prepare_media_dir`). A file still named by a kept event is kept.
        Files are only ever deleted inside ``data_dir`` (:func:`media_path`)."""
        now = time.time() if now is None else _finite("now", now)
        data_dir = Path(data_dir)
        result = RetentionResult()
        with self._read() as conn:
            named = {p for row in conn.execute("SELECT snapshot, clip FROM events") for p in row if p is not None}
        files = _media_files(data_dir)
        own = (data_dir / MEDIA_MARKER).is_file()
        for rel, (size, mtime) in sorted(files.items()):  # unreferenced files first (a crash, a missing attach)
            if own and rel not in named and now - mtime > orphan_grace and _unlink(data_dir, rel):
                result.files.append(rel)
                result.bytes += size
                del files[rel]
        with self._read() as conn:
            closed = conn.execute("SELECT id, started_at, snapshot, clip FROM events WHERE open = 0 "
                                  "ORDER BY started_at, id").fetchall()
        total = sum(size for size, _ in files.values())
        counted: set[str] = set()
        doomed: list[int] = []

        def doom(event_id: int, media: tuple[str | None, ...]) -> None:
            nonlocal total
            doomed.append(event_id)
            for rel in media:
                if rel is not None and rel in files and rel not in counted:
                    counted.add(rel)
                    total -= files[rel][0]

        if days is not None:
            cutoff = now - _finite("days", days) * 86400.0
            for event_id, started_at, *media in closed:
                if started_at < cutoff:
                    doom(event_id, media)
        if gigabytes is not None:
            budget, by_age = _finite("gigabytes", gigabytes) * 1e9, set(doomed)
            for event_id, _, *media in closed:
                if total <= budget:
                    break
                if event_id not in by_age and any(rel in files for rel in media):
                    doom(event_id, media)
        if doomed:
            with self._write() as conn:
                names: set[str] = set()
                for chunk in _chunks(doomed, 500):
                    marks = ", ".join("?" * len(chunk))
                    for row in conn.execute(f"SELECT snapshot, clip FROM events WHERE id IN ({marks})", chunk):
                        names.update(p for p in row if p is not None)
                    conn.execute(f"DELETE FROM events WHERE id IN ({marks}) AND open = 0", chunk)
                still = {p for row in conn.execute("SELECT snapshot, clip FROM events") for p in row if p is not None}
            result.events = sorted(doomed)
            for rel in sorted(names - still):
                if rel in files and _unlink(data_dir, rel):
                    result.files.append(rel)
                    result.bytes += files.pop(rel)[0]
        if own:
            _remove_empty_folders(data_dir, now - orphan_grace)
        result.media_bytes = sum(size for size, _ in files.values())
        return result


# ====================================================================== media paths
def prepare_media_dir(data_dir: str | Path, *, what: str = "data") -> Path:
    """Create the data folder (``watch.data``) or check that it is ddlvad's own, and mark it with
    :data:`MEDIA_MARKER`: a new or empty folder, or one marked before. A folder that already holds
    other files is refused with a :class:`UserError` naming ``what``: retention deletes files there
    that no event names. Returns the folder."""
    data_dir = writable_dir(data_dir, what)
    marker = data_dir / MEDIA_MARKER
    if not marker.is_file():
        present = sorted(p.name for p in data_dir.iterdir())
        if present:
            raise UserError(f"{what}: {data_dir} already holds files ddlvad watch did not write ({', '.join(present[:3])}"
                            f"{', ...' if len(present) > 3 else ''}), which retention would delete: choose a new or "
                            f"empty folder for snapshots and clips")
        atomic_write(marker, "This folder holds the snapshots and clips of ddlvad watch; retention deletes files in it "
                             "that no event names.\n", what=what)
    return data_dir


def media_path(data_dir: str | Path, relative: str) -> Path:
    """The real path of ``relative`` (a snapshot or clip as stored) under ``data_dir``. ValueError when
    it is empty, absolute, holds ``..`` or a NUL, or resolves (following symbolic links) outside
    ``data_dir``: the page serves only what this returns. The file need not exist (check before
    serving). Safe against the paths stored in the database; not against someone who can write
    symbolic links into the data folder between this check and the open."""
    _relative("path", relative)
    root = Path(data_dir).resolve()
    target = (root / relative).resolve()
    if target == root or not target.is_relative_to(root):
        raise ValueError(f"{relative!r} leads outside the data folder {root}")
    return target


def _relative(name: str, value: str) -> str:
    """``value`` if it is a relative path without ``..``; else ValueError."""
    if not isinstance(value, str) or not value or "\0" in value or "\\" in value:
        raise ValueError(f"{name} must be a path relative to the data folder, not {value!r}")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or value.startswith("~"):
        raise ValueError(f"{name} must be a path relative to the data folder without '..', not {value!r}")
    return value


def _media_files(data_dir: Path) -> dict[str, tuple[int, float]]:
    """Every regular file under ``data_dir`` (links not followed): relative POSIX path -> (bytes, mtime)."""
    out: dict[str, tuple[int, float]] = {}
    if not data_dir.is_dir():
        return out
    for folder, _dirs, names in os.walk(data_dir):
        for name in names:
            path = Path(folder, name)
            try:
                stat = path.lstat()
            except OSError:
                continue
            rel = path.relative_to(data_dir).as_posix()
            if not path.is_symlink() and rel != MEDIA_MARKER:
                out[rel] = (stat.st_size, stat.st_mtime)
    return out


def _unlink(data_dir: Path, relative: str) -> bool:
    try:
        media_path(data_dir, relative).unlink()
    except (OSError, ValueError):
        return False
    return True


def _remove_empty_folders(data_dir: Path, older_than: float) -> None:
    """Remove empty folders under ``data_dir`` (never itself) last changed before ``older_than``, as
    they were before this pass (removing an empty child changes its parent's time)."""
    if not data_dir.is_dir():
        return
    before = {}
    for folder, _dirs, _names in os.walk(data_dir):
        with contextlib.suppress(OSError):
            before[folder] = os.stat(folder).st_mtime
    for folder, dirs, names in os.walk(data_dir, topdown=False):
        if Path(folder) == data_dir or names or any(Path(folder, d).exists() for d in dirs):
            continue
        if before.get(folder, older_than) < older_than:
            with contextlib.suppress(OSError):
                os.rmdir(folder)


# ====================================================================== rows
def _row(values: dict[str, Any]) -> dict[str, Any]:
    """Column values from Python values: numbers checked finite, JSON encoded."""
    row = {}
    for name, value in values.items():
        if name in _JSON:
            row[name] = None if value is None else json.dumps(value, default=_plain, allow_nan=False,
                                                               separators=(",", ":"))
        elif name in ("start_frame", "end_frame", "peak_frame"):
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError(f"{name} must be a whole frame number, not {value!r}")
            row[name] = int(value)
        elif name in ("started_at", "ended_at", "peak_score", "peak_at", "threshold"):
            row[name] = None if value is None and name == "threshold" else _finite(name, value)
        else:
            row[name] = value
    return row


def _finite(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, not {value!r}")
    return number


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays (``tolist`` gives Python numbers)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def _event(row: sqlite3.Row) -> dict:
    event = dict(row)
    for name in _JSON:
        event[name] = None if event[name] is None else json.loads(event[name])
    event["open"], event["interrupted"] = bool(event["open"]), bool(event["interrupted"])
    event["frames"] = event["end_frame"] - event["start_frame"] + 1
    return event


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
