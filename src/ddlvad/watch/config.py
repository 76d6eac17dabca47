"""The YAML file of ``ddlvad watch``: which cameras to score with which run, and where events go.

An example (relative paths are relative to the YAML file's folder)::

    database: watch/events.sqlite      # relative paths are relative to the YAML file's folder
    data: watch/media                  # snapshots and clips live under here (nothing is served from outside it)
    retention: {days: 14, gigabytes: 20}
    http: {host: 127.0.0.1, port: 8780, token: null}   # token may also come from env DDLVAD_WATCH_TOKEN
    webhook: {url: http://127.0.0.1:9000/hook, timeout: 5, retries: 5, outbox: 1000}
    mqtt: {host: 127.0.0.1, port: 1883, prefix: ddlvad, username: null, password: null, client_id: null}
    cameras:
      gate:
        source: rtsp://user:secret@10.0.0.5/stream1
        run: runs/gate
        threshold: null          # null: the run's stored threshold
        fps: 10                  # cap on frames scored per second (null: every frame)
        events: {gap: 5, min_frames: 3, pre_roll: 2.0, post_roll: 3.0, cooldown: 0}
        ignore: [[[0, 0], [200, 0], [200, 80], [0, 80]]]    # polygons in source pixels whose error is zeroed
      trial:
        source: videos/walkway.mp4
        loop: true               # files and folders play in real time; loop for trials
        run: runs/gate           # cameras may share a run (the model is loaded once)

Top-level keys that start with ``x-`` are ignored: a place for YAML anchors of settings that several
cameras share (``x-defaults: &d {run: runs/gate, fps: 10}`` and then ``gate: {<<: *d, source: ...}``).

:func:`load_watch_config` reads and checks such a file; :meth:`WatchConfig.single` builds the
configuration of ``ddlvad watch SOURCE --run RUN`` (one camera, defaults for the rest). Both check
everything before anything starts and report **every** problem at once: one :class:`UserError` whose
message has one line per problem, each naming the file (or ``ddlvad watch``) and the key, e.g.
``watch.yaml: cameras.gate.fps: must be > 0 (got -3)``; the lines are also in ``error.problems``.

Passwords never reach logs through this module: :func:`redact` hides the password of a URL, every
``repr``/``describe`` of a camera or webhook uses it, and the HTTP token and MQTT password are left
out of ``repr``. This module imports neither torch nor OpenCV.

One concern, in one module though it is long: the watch configuration file and every check of it
(each bad key or value is one line naming camera and key).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ..config import ENGINE_CHOICES, EventRules
from ..errors import UserError
from ..urls import SECRET_PARAMS, redact  # noqa: F401 (part of this module's API)

TOKEN_ENV = "DDLVAD_WATCH_TOKEN"
"""Environment variable that supplies ``http.token`` when the file leaves it null."""
LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""``http.host`` values reachable from this machine only: the page may run without a token there."""
MIN_TOKEN = 16
"""Fewest characters of ``http.token`` when the page is reachable from other machines."""
CAMERA_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Camera names (they become MQTT topics, folder names and URL parts)."""
MODEL_FILES = ("best.pt", "best-start.pt", "checkpoint.pt")
"""Files of a run folder that hold a model (:mod:`ddlvad.checkpoint`'s ``BEST``, ``START_BEST``,
``CHECKPOINT``; repeated here so that reading this file does not import torch)."""
MAX_COORDINATE = 1e6
"""Largest absolute coordinate of an ``ignore`` polygon point, pixels (it is drawn with int32 coordinates)."""


# ====================================================================== the settings
@dataclass
class RetentionConfig:
    """How long events and their media are kept (``retention``); the service applies it now and then."""

    days: float | None = 14.0
    """Events that started more than this many days ago are deleted with their snapshot and clip
    (null: no age limit)."""
    gigabytes: float | None = 20.0
    """The oldest events are deleted with their media until the files under ``data`` take at most
    this many gigabytes (10^9 bytes; null: no size limit)."""


@dataclass
class HttpConfig:
    """The web page (``http``)."""

    host: str = "127.0.0.1"
    """Address to listen on. Anything other than 127.0.0.1, localhost or ::1 is reachable from other
    machines and needs ``token``."""
    port: int = 8780
    """TCP port (0: any free port, for tests)."""
    token: str | None = field(default=None, repr=False)
    """Secret that every request must carry (null: taken from the environment variable
    ``DDLVAD_WATCH_TOKEN`` when set, else none, which only a loopback ``host`` allows). At least
    16 characters when ``host`` is not loopback. Never shown by ``repr``."""

    @property
    def loopback(self) -> bool:
        """True when the page is reachable from this machine only."""
        return self.host in LOOPBACK


@dataclass(repr=False)
class WebhookConfig:
    """The webhook that receives every opened and closed event as JSON (``webhook``)."""

    url: str | None = None
    """``http://`` or ``https://`` URL to POST to (null: no webhook)."""
    timeout: float = 5.0
    """Seconds to wait for the receiver's answer."""
    retries: int = 5
    """Further attempts after a failed POST, with growing pauses, before the message is dropped."""
    outbox: int = 1000
    """Messages kept while the receiver is down; beyond that the oldest are dropped."""

    def __repr__(self) -> str:
        url = None if self.url is None else redact(self.url)
        return f"WebhookConfig(url={url!r}, timeout={self.timeout!r}, retries={self.retries!r}, outbox={self.outbox!r})"


@dataclass
class MqttConfig:
    """The MQTT broker that receives every opened and closed event (``mqtt``), on
    ``PREFIX/CAMERA/event``."""

    host: str | None = None
    """Broker address (null: no MQTT)."""
    port: int = 1883
    """Broker TCP port."""
    prefix: str = "ddlvad"
    """First level(s) of every topic; no ``+``, ``#`` or leading/trailing ``/``."""
    username: str | None = None
    """User name at the broker (null: anonymous)."""
    password: str | None = field(default=None, repr=False)
    """Password at the broker (needs ``username``). Never shown by ``repr``."""
    client_id: str | None = None
    """MQTT client id (null: ``ddlvad-`` and the host name)."""


@dataclass
class EventConfig:
    """How one camera's anomalous frames become events and what an event records (``cameras.NAME.events``).
    ``gap`` and ``min_frames`` are those of :class:`ddlvad.config.EventRules` (``ddlvad detect``'s
    ``--gap``, ``--min-frames``), with the same defaults."""

    gap: int = EventRules.gap
    """Two runs of anomalous frames separated by at most this many other (scored) frames are one event."""
    min_frames: int = EventRules.min_frames
    """Events spanning fewer scored frames are dropped as blips."""
    pre_roll: float = 2.0
    """Seconds of video before an event's first frame that its clip starts with (kept in memory)."""
    post_roll: float = 3.0
    """Seconds of video after an event's last frame that its clip ends with."""
    cooldown: float = 0.0
    """Seconds after an event closes during which no new event of this camera is notified (0: none);
    events are still stored."""

    @property
    def rules(self) -> EventRules:
        """The merging rule for :class:`ddlvad.stream.EventTracker`."""
        return EventRules(self.gap, self.min_frames)


Polygon = list[tuple[float, float]]


@dataclass(repr=False)
class CameraConfig:
    """One camera (``cameras.NAME``): what to read and which trained run scores it."""

    name: str
    """The camera's key in ``cameras``: ``[A-Za-z0-9_-]``, 1 to 64 characters."""
    source: str
    """A video file or folder of frames (absolute; in the file, relative to its folder), a camera
    index (``0``) or a stream URL (``rtsp://user:password@host/...``). May hold a password: print
    :attr:`label` or :meth:`describe`, never this."""
    run: Path
    """The run folder (``ddlvad train --out``) or checkpoint file whose model scores this camera
    (absolute). Cameras may share a run."""
    threshold: float | None = None
    """Frame score above which a frame is anomalous (null: the threshold stored by training)."""
    fps: float | None = None
    """Most frames scored per second; the others are skipped (null: every frame)."""
    loop: bool = False
    """Start a file or folder again when it ends (trials). Files and folders play in real time."""
    events: EventConfig = field(default_factory=EventConfig)
    """How anomalous frames become events."""
    ignore: list[Polygon] = field(default_factory=list)
    """Polygons ``[[x, y], ...]`` in source pixels whose error is set to zero before scoring
    (a clock, a flag, a road outside the scene)."""

    @property
    def kind(self) -> str:
        """``file``, ``folder``, ``camera`` or ``stream``: what :class:`ddlvad.data.video.VideoSource` opens."""
        return source_kind(self.source)

    @property
    def label(self) -> str:
        """The source, with any password hidden (for logs, pages, messages)."""
        return redact(self.source)

    def describe(self) -> str:
        """One line for logs: name, source (redacted), run and settings."""
        threshold = "run's threshold" if self.threshold is None else f"threshold {self.threshold:g}"
        rate = "every frame" if self.fps is None else f"<= {self.fps:g} frames/s"
        extra = (", looped" if self.loop else "") + (f", {len(self.ignore)} ignored area(s)" if self.ignore else "")
        return f"{self.name}: {self.kind} {self.label}, run {self.run}, {threshold}, {rate}{extra}"

    def __repr__(self) -> str:
        return (f"CameraConfig(name={self.name!r}, source={self.label!r}, run={str(self.run)!r}, "
                f"threshold={self.threshold!r}, fps={self.fps!r}, loop={self.loop!r}, events={self.events!r}, "
                f"ignore={self.ignore!r})")


@dataclass
class WatchConfig:
    """Everything ``ddlvad watch`` needs. Paths are absolute once loaded (:func:`load_watch_config`)."""

    cameras: dict[str, CameraConfig]
    """The cameras by name, in the file's order."""
    database: Path = Path("watch/events.sqlite")
    """The SQLite file of events and threshold changes (:class:`ddlvad.watch.store.EventStore`).
    Must not lie inside ``data`` (the page serves files from there)."""
    data: Path = Path("watch/media")
    """Folder of snapshots and clips. The page serves files from inside it only."""
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    """How long events and their media are kept."""
    http: HttpConfig = field(default_factory=HttpConfig)
    """The web page."""
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    """The webhook (off unless ``webhook.url`` is set)."""
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    """MQTT (off unless ``mqtt.host`` is set)."""
    engine: str = "auto"
    """What runs the models (:mod:`ddlvad.engines`): ``auto`` (the fastest on this machine that matches
    torch's scores, chosen by a cached probe), ``torch``, ``onnxruntime`` or ``openvino``."""
    origin: str = "ddlvad watch"
    """Where the settings came from (the YAML file's path, or ``ddlvad watch`` for :meth:`single`):
    the prefix of every problem line."""

    @classmethod
    def single(cls, source: str | int | Path, run: str | Path, *, env: Mapping[str, str] | None = None,
               **overrides: Any) -> WatchConfig:
        """The configuration of ``ddlvad watch SOURCE --run RUN``: one camera named after the source,
        defaults for the rest; relative paths are relative to the current folder.

        ``overrides``: camera settings (``name``, ``threshold``, ``fps``, ``loop``, ``events``,
        ``ignore``) and top-level ones (``database``, ``data``, ``retention``, ``http``, ``webhook``,
        ``mqtt``), as they would be written in the YAML file (sections as mappings, or the
        dataclasses). Checked like a file: problems raise one :class:`UserError`. ``env`` (default
        ``os.environ``) supplies ``DDLVAD_WATCH_TOKEN``.
        """
        camera_keys = {f.name for f in dataclasses.fields(CameraConfig)} - {"source", "run"}
        top_keys = {f.name for f in dataclasses.fields(cls)} - {"cameras", "origin"}
        unknown = set(overrides) - camera_keys - top_keys
        if unknown:
            raise TypeError(f"WatchConfig.single: unknown settings {sorted(unknown)}")
        plain = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in overrides.items()}
        name = plain.pop("name", None) or camera_name(source)
        camera = {"source": source if isinstance(source, int) else str(source), "run": str(run),
                  **{k: v for k, v in plain.items() if k in camera_keys}}
        values = {**{k: str(v) if isinstance(v, Path) else v for k, v in plain.items() if k in top_keys},
                  "cameras": {name: camera}}
        return _parse(values, Path.cwd(), "ddlvad watch", os.environ if env is None else env, None)

    @property
    def runs(self) -> dict[Path, list[str]]:
        """Each distinct run (resolved path) and the cameras it scores: load each model once."""
        out: dict[Path, list[str]] = {}
        for camera in self.cameras.values():
            out.setdefault(camera.run.resolve(), []).append(camera.name)
        return out

    def describe(self) -> list[str]:
        """Lines for the start-up log (no passwords or tokens)."""
        lines = [f"database {self.database}, media under {self.data}"]
        r = self.retention
        lines.append("keep events " + (f"{r.days:g} days" if r.days is not None else "without age limit")
                     + (f", at most {r.gigabytes:g} GB of media" if r.gigabytes is not None else ""))
        lines.append(f"page on http://{self.http.host}:{self.http.port}/"
                     + (" (token required)" if self.http.token else " (no token: this machine only)"))
        if self.webhook.url:
            lines.append(f"webhook {redact(self.webhook.url)}")
        if self.mqtt.host:
            lines.append(f"mqtt {self.mqtt.host}:{self.mqtt.port}, topics {self.mqtt.prefix}/CAMERA/event")
        return lines + [camera.describe() for camera in self.cameras.values()]


# ====================================================================== reading and checking
def load_watch_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> WatchConfig:
    """Read and check the YAML file at ``path`` (see the module docstring). Relative paths in it are
    relative to its folder. ``env`` (default ``os.environ``) supplies ``DDLVAD_WATCH_TOKEN``.
    Raises one :class:`UserError` listing every problem, one line each."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"watch config {path} not found: give the YAML file that lists the cameras") from None
    except UnicodeDecodeError:
        raise UserError(f"watch config {path} is not UTF-8 text: give the YAML file that lists the cameras") from None
    except OSError as exc:
        raise UserError(f"cannot read watch config {path} ({exc.strerror or exc})") from None
    loader = _Loader(text)
    try:
        values = loader.get_single_data()
    except yaml.YAMLError as exc:  # PyYAML's own text quotes the line, which may hold a password: not shown
        mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise UserError(f"watch config {path} is not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"
                        + (f" ({context})" if context else "")) from None
    finally:
        loader.dispose()
    if not isinstance(values, dict):
        raise UserError(f"watch config {path} must be a YAML mapping with a `cameras:` section "
                        f"(got {type(values).__name__}); see `ddlvad watch --help`")
    return _parse(values, path.parent.absolute(), str(path), os.environ if env is None else env, path.absolute(),
                  [f"line {line}: key {key!r} appears twice (the later one would silently win); keep one"
                   for line, key in loader.duplicates])


def _parse(values: dict, base: Path, origin: str, env: Mapping[str, str], file: Path | None,
           problems: list[str] | None = None) -> WatchConfig:
    """Build and check a :class:`WatchConfig` from plain values; raise one :class:`UserError` for all problems."""
    p = _Problems(problems)
    values = {k: v for k, v in values.items() if not (isinstance(k, str) and k.startswith("x-"))}
    top = _fields(WatchConfig, values, "", p, skip=("origin",),
                  raw=("cameras", "retention", "http", "webhook", "mqtt"))
    sections = {}
    for name, cls in (("retention", RetentionConfig), ("http", HttpConfig), ("webhook", WebhookConfig),
                      ("mqtt", MqttConfig)):
        sections[name] = cls(**_fields(cls, top.pop(name, None), name, p))
    database = _path(base, top.get("database", WatchConfig.database))
    data = _path(base, top.get("data", WatchConfig.data))
    http = sections["http"]
    if http.token is None and env.get(TOKEN_ENV):
        http.token = env[TOKEN_ENV]
    cameras = {}
    raw = top.get("cameras")
    if raw is None or raw == {}:
        p.add("cameras", "list at least one camera: `cameras: {NAME: {source: ..., run: ...}}`")
    elif not isinstance(raw, dict):
        p.add("cameras", f"must be a mapping of camera names to settings (got {_kind(raw)})")
    else:
        for name, settings in raw.items():
            camera = _camera(name, settings, base, p)
            if camera is not None:
                cameras[camera.name] = camera
    engine = top.get("engine", WatchConfig.engine)
    if engine not in ENGINE_CHOICES:
        p.add("engine", f"choose one of {', '.join(ENGINE_CHOICES)} (got {engine!r})")
    cfg = WatchConfig(cameras, database, data, origin=origin, engine=engine, **sections)
    _check(cfg, p, file)
    if p:
        error = UserError("\n".join(f"{origin}: {line}" for line in p))
        error.problems = list(p)  # type: ignore[attr-defined]
        raise error
    return cfg


def _text(value: Any, key: str, p: _Problems, missing: str, expected: str) -> str | None:
    """A required text setting, stripped; None (with the problem recorded) when it is missing or not text."""
    if value is None:
        p.add(key, f"missing: {missing}")
    elif not isinstance(value, str) or not value.strip():
        p.add(key, f"must be {expected} (got {_kind(value)})")
    else:
        return value.strip()
    return None


def _camera(name: Any, settings: Any, base: Path, p: _Problems) -> CameraConfig | None:
    """One camera from its mapping, or None when it cannot be built (problems recorded)."""
    if not isinstance(name, str):
        p.add(f"cameras.{name}", f"camera names are text: quote it (\"{name}\")")
        return None
    key = f"cameras.{name}"
    if not CAMERA_NAME.fullmatch(name):
        p.add(key, "camera names are 1 to 64 letters, digits, '-' or '_' (they become MQTT topics and folder "
                   "names): rename it")
    if not isinstance(settings, dict):
        p.add(key, f"must be a mapping with at least `source:` and `run:` (got {_kind(settings)})")
        return None
    kwargs = _fields(CameraConfig, settings, key, p, skip=("name",), raw=("source", "run", "events", "ignore"))
    source, run = kwargs.pop("source", None), kwargs.pop("run", None)
    events = EventConfig(**_fields(EventConfig, kwargs.pop("events", None), f"{key}.events", p))
    ignore = _polygons(kwargs.pop("ignore", None), f"{key}.ignore", p)
    if isinstance(source, int) and not isinstance(source, bool) and source >= 0:
        source = str(source)  # a camera index
    source = _text(source, f"{key}.source", p, "give a video file, a folder of frames, a camera index (0) or a stream URL",
                   "a path, a camera index or a URL")
    run = _text(run, f"{key}.run", p, "give the run folder of a trained model (`ddlvad train ... --out RUN`)",
                "the path of a run folder")
    ok = source is not None and run is not None
    if source is not None:
        if source_kind(source) in ("file", "folder", "missing"):
            source = str(_path(base, source))
            if source_kind(source) == "missing":
                p.add(f"{key}.source", f"{source} not found (relative paths are relative to {base}): give an existing "
                                       f"video file or folder of frames, a camera index or a stream URL")
    if run is not None:
        run = _path(base, run)
        if run.is_dir() and not any((run / f).is_file() for f in MODEL_FILES):
            p.add(f"{key}.run", f"{run} holds no model ({' or '.join(MODEL_FILES)}): train one with "
                                f"`ddlvad train ... --out {run}`, or give another run folder")
        elif not run.exists():
            p.add(f"{key}.run", f"run folder {run} not found (relative paths are relative to {base}): train one "
                                f"with `ddlvad train ... --out {run}`, or fix the path")
    if not ok:  # built all the same, with placeholders, so that its other values are checked too
        source, run = source if isinstance(source, str) else "", run if isinstance(run, Path) else Path()
    return CameraConfig(name, source, run, events=events, ignore=ignore, **kwargs)


_LIMITS: dict[tuple[type, str], tuple[float, bool, float | None, str]] = {
    # (class, field): (lowest, lowest allowed itself, highest or None, what the number is)
    (RetentionConfig, "days"): (0, False, 36500, "days"),
    (RetentionConfig, "gigabytes"): (0, False, 1e6, "gigabytes"),
    (HttpConfig, "port"): (0, True, 65535, "TCP port"),
    (WebhookConfig, "timeout"): (0, False, 600, "seconds"),
    (WebhookConfig, "retries"): (0, True, 100, "attempts"),
    (WebhookConfig, "outbox"): (1, True, 1_000_000, "messages"),
    (MqttConfig, "port"): (1, True, 65535, "TCP port"),
    (EventConfig, "gap"): (0, True, 100_000, "frames"),
    (EventConfig, "min_frames"): (1, True, 100_000, "frames"),
    (EventConfig, "pre_roll"): (0, True, 300, "seconds; kept in memory"),
    (EventConfig, "post_roll"): (0, True, 300, "seconds"),
    (EventConfig, "cooldown"): (0, True, 86400, "seconds"),
    (CameraConfig, "threshold"): (0, True, None, "a frame score"),
    (CameraConfig, "fps"): (0, False, 1000, "frames per second"),
}
"""Allowed range of every number: checked with :func:`_in_range` on every section."""


def _check(cfg: WatchConfig, p: _Problems, file: Path | None) -> None:
    """Ranges and the checks that involve several keys."""
    sections: list[tuple[str, Any]] = [("retention", cfg.retention), ("http", cfg.http), ("webhook", cfg.webhook),
                                       ("mqtt", cfg.mqtt)]
    for camera in cfg.cameras.values():
        sections += [(f"cameras.{camera.name}", camera), (f"cameras.{camera.name}.events", camera.events)]
    for key, section in sections:
        for f in dataclasses.fields(section):
            limits = _LIMITS.get((type(section), f.name))
            value = getattr(section, f.name)
            if limits is not None and value is not None:
                _in_range(p, f"{key}.{f.name}", value, *limits)
    http, mqtt, webhook = cfg.http, cfg.mqtt, cfg.webhook
    if not http.host.strip():
        p.add("http.host", "must not be empty: use 127.0.0.1 (this machine only) or an address of this machine")
    if not http.loopback and http.token is None:
        p.add("http.token", f"http.host {http.host} makes the page reachable from other machines: set http.token (or "
                            f"the environment variable {TOKEN_ENV}) to a secret of at least {MIN_TOKEN} characters, "
                            f"or use http.host 127.0.0.1")
    elif http.token is not None and (not http.token.strip() or any(c.isspace() for c in http.token)):
        p.add("http.token", f"must be a secret without spaces (or null; also from {TOKEN_ENV})")
    elif not http.loopback and len(http.token) < MIN_TOKEN:
        p.add("http.token", f"too short for a page reachable from other machines ({len(http.token)} characters): use "
                            f"at least {MIN_TOKEN} (e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)")
    if webhook.url is not None and not re.fullmatch(r"https?://[^/\s?#]+(?:[/?#]\S*)?", webhook.url):
        p.add("webhook.url", f"must be an http:// or https:// URL (got {redact(webhook.url)!r}), or null for no webhook")
    if mqtt.host is not None and not mqtt.host.strip():
        p.add("mqtt.host", "must not be empty: give the broker's address, or null for no MQTT")
    if not mqtt.prefix or mqtt.prefix.startswith("/") or mqtt.prefix.endswith("/") or any(
            c in mqtt.prefix for c in "+#\0") or "//" in mqtt.prefix:
        p.add("mqtt.prefix", f"must be topic levels without '+', '#' or empty levels (got {mqtt.prefix!r}), e.g. ddlvad")
    if mqtt.password is not None and mqtt.username is None:
        p.add("mqtt.password", "needs mqtt.username")
    data = cfg.data.resolve()
    if cfg.database.resolve().is_relative_to(data):
        p.add("database", f"{cfg.database} lies inside the media folder `data` ({cfg.data}), from which the page "
                          f"serves files: put it beside that folder")
    inside = [(f"cameras.{c.name}.{key}", path) for c in cfg.cameras.values()
              for key, path in (("source", Path(c.source) if c.kind in ("file", "folder") else None), ("run", c.run))]
    for key, path in [("the config file", file), *inside]:
        if path is not None and str(path) not in ("", ".") and path.resolve().is_relative_to(data):
            p.add("data", f"the media folder {cfg.data} holds {key} ({path}): the page serves it and retention may "
                          f"delete it; give ddlvad watch a folder of its own, e.g. watch/media")
    for camera in cfg.cameras.values():
        if camera.loop and camera.kind in ("camera", "stream"):
            p.add(f"cameras.{camera.name}.loop", f"only files and folders can loop, not a {camera.kind}: remove it")


def _in_range(p: _Problems, key: str, value: float, low: float, low_allowed: bool, high: float | None, what: str
              ) -> None:
    if not math.isfinite(value):
        p.add(key, f"must be a finite number ({what}; got {value})")
    elif value < low or (value == low and not low_allowed):
        p.add(key, f"must be {'>=' if low_allowed else '>'} {low:g} ({what}; got {value:g})")
    elif high is not None and value > high:
        p.add(key, f"must be <= {high:g} ({what}; got {value:g})")


def _polygons(value: Any, key: str, p: _Problems) -> list[Polygon]:
    """``ignore``: a list of polygons, each >= 3 points of 2 finite numbers."""
    if value is None:
        return []
    if not isinstance(value, list):
        p.add(key, f"must be a list of polygons [[[x, y], [x, y], [x, y], ...], ...] (got {_kind(value)})")
        return []
    if value and all(_is_point(v) for v in value):
        p.add(key, "must be a list of polygons, not of points: a single polygon needs its own brackets, "
                   "ignore: [[[x, y], [x, y], [x, y]]]")
        return []
    out = []
    for i, polygon in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(polygon, list) or len(polygon) < 3:
            got = f"{len(polygon)} point(s)" if isinstance(polygon, list) else _kind(polygon)
            p.add(where, f"must be a polygon of at least 3 points [x, y] (got {got})")
            continue
        points = []
        for j, point in enumerate(polygon):
            if not _is_point(point):
                p.add(f"{where}[{j}]", f"must be a point [x, y] of 2 numbers (got {_show(point)})")
            elif not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in point):
                p.add(f"{where}[{j}]", f"coordinates must be finite source pixels within +-{MAX_COORDINATE:g} "
                                       f"(got {_show(point)})")
            else:
                points.append((float(point[0]), float(point[1])))
        if len(points) == len(polygon):
            out.append(points)
    return out


def _is_point(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value))


def _fields(cls: type, values: Any, key: str, p: _Problems, skip: tuple[str, ...] = (), raw: tuple[str, ...] = ()
            ) -> dict[str, Any]:
    """The keyword arguments of ``cls`` that ``values`` (a mapping, or None for the defaults) sets.
    ``skip``: fields that are no keys of the file; ``raw``: keys returned as written, for the caller to
    read (sections, lists). Unknown keys (with a did-you-mean) and values of the wrong type are
    recorded and left out."""
    known = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    if values is None:
        return {}
    if not isinstance(values, dict):
        p.add(key, f"must be a mapping of {', '.join(known)} (got {_kind(values)})")
        return {}
    hints = get_type_hints(cls)
    out = {}
    for name, value in values.items():
        full = f"{key}.{name}" if key else str(name)
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
            p.add(full, f"unknown key; did you mean {close[0]}?" if close else f"unknown key; expected one of "
                                                                              f"{', '.join(known)}")
        elif name in raw:
            out[name] = value
        else:
            try:
                out[name] = _coerce(value, hints[name])
            except TypeError as exc:
                p.add(full, f"{exc} (got {_show(value)})")
    return out


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as the plain type ``hint`` (int, float, str, bool, Path, optionally None);
    TypeError saying what was expected."""
    options = [h for h in getattr(hint, "__args__", (hint,)) if h is not type(None)]
    if value is None:
        if len(options) < len(getattr(hint, "__args__", (hint,))):
            return None
        raise TypeError("must not be null")
    base = options[0]
    if base is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("must be true or false")
    if base is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or (
                isinstance(value, float) and not value.is_integer()):
            raise TypeError("must be a whole number")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError("must be a number")
        return float(value)
    if base in (str, Path):
        if not isinstance(value, str):
            raise TypeError("must be text" if base is str else "must be a path")
        return value
    if isinstance(value, dict):  # a nested section: read by its own caller
        return value
    raise TypeError(f"must be a {getattr(base, '__name__', base)}")


class _Problems(list):
    """Problem lines, ``KEY: what is wrong and what to do``."""

    def __init__(self, lines: list[str] | None = None) -> None:
        super().__init__(lines or [])

    def add(self, key: str, message: str) -> None:
        self.append(f"{key}: {message}")


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader that records keys appearing twice in one mapping (plain PyYAML keeps the
    last silently: a second camera ``gate`` would replace the first)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, Any]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys: refused later as unknown keys
            if key in seen:
                self.duplicates.append((key_node.start_mark.line + 1, key))
            seen.add(key)
        return super().construct_mapping(node, deep)


def _path(base: Path, value: str | Path) -> Path:
    """``value`` (``~`` expanded) relative to ``base`` unless absolute, with ``..`` collapsed (not resolved)."""
    return Path(os.path.normpath(base / Path(value).expanduser()))


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {_show(value)}"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ====================================================================== sources and URLs
def source_kind(source: str) -> str:
    """What ``source`` names, as :class:`ddlvad.data.video.VideoSource` decides: ``file`` or ``folder``
    (existing), ``camera`` (digits: a camera index), ``stream`` (a URL, ``://``), else ``missing``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder"
    if path.is_file():
        return "file"
    if source.isdigit():
        return "camera"
    return "stream" if "://" in source else "missing"


def camera_name(source: str | int | Path) -> str:
    """A camera name (:data:`CAMERA_NAME`) for ``ddlvad watch SOURCE``: a file's or folder's name
    without suffix, ``cameraN`` for a camera index, a URL's last path part (else its host; never its
    user or password)."""
    text = str(source).strip()
    if text.isdigit():
        name = f"camera{text}"
    elif "://" in text:
        rest = text.split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
        host, _, path = rest.partition("/")
        host = host.rpartition("@")[2]
        parts = [part for part in path.split("/") if part]
        name = Path(parts[-1]).stem if parts else host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    else:
        name = Path(text.rstrip("/\\")).stem or Path(text).name
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:64]
    return name or "camera"


