"""The HTTP API and web page of ``ddlvad watch`` (FastAPI, served by uvicorn in a thread).

    server = serve(view, "127.0.0.1", 8780, token=None)    # view: anything that is a WatchView
    print(server.url)                                       # http://127.0.0.1:8780/
    server.stop()

:func:`create_app` builds the app from a :class:`WatchView` (what the service exposes: the cameras,
their frames and score traces, the event store); :func:`serve` runs it. Routes (JSON unless said
otherwise; errors are ``{"error": "one line"}``; the OpenAPI description is at ``/api/openapi.json``):

====================================================  ===============================================
``GET /``                                             the page (``static/index.html``, ``/static/*``)
``GET /api/cameras``                                  cameras with state, threshold and stats
``GET /api/cameras/{name}``                           one camera and its threshold history
``GET /api/cameras/{name}/frame.jpg``                 newest frame (``?overlay=0``: without drawings)
``GET /api/cameras/{name}/live``                      MJPEG (``multipart/x-mixed-replace``) live view
``GET /api/cameras/{name}/trace``                     ``?seconds=60``: (unix time, score) pairs
``GET /api/cameras/{name}/threshold-suggestion``      :mod:`ddlvad.watch.review` on its reviewed events
``POST /api/cameras/{name}/threshold``                ``{"value", "note", "origin"}``: apply a threshold
``GET /api/events``                                   filtered, paged, newest first, with the total
``GET /api/events/{id}``                              one event
``GET /api/events/{id}/snapshot.jpg``                 its JPEG snapshot
``GET /api/events/{id}/clip``                         its clip (HTTP Range requests: seekable)
``POST /api/events/{id}/review``                      ``{"review": "false_alarm"|"confirmed"|null, "note"}``
``GET /metrics``                                      Prometheus text
====================================================  ===============================================

**Security.** With ``token=None`` the app is meant for 127.0.0.1 only: :func:`serve` refuses another
address, and the app answers only requests whose ``Host`` is a loopback name (a web page elsewhere
cannot reach it by DNS rebinding). With a token, every request (API, live view, media, metrics, the
page and its static files) must carry it: ``Authorization: Bearer TOKEN``, a ``?token=TOKEN`` query
parameter (``<img>`` and ``<video>`` sources cannot send headers), or the ``ddlvad_token`` cookie
that a request with a correct ``?token=`` sets (HttpOnly, SameSite=Strict). Tokens are compared with
:func:`hmac.compare_digest`; a missing or wrong one gets 401 with a fixed body. POSTs from another
origin are refused (403). Media files are served only through :func:`ddlvad.watch.store.media_path`
(nothing outside the data folder, symbolic links included). Camera sources are shown only as their
redacted ``label``. The access log (logger ``ddlvad.watch.web``) shows ``token=***``.

This module imports neither torch nor OpenCV.

One concern, in one module though it is long: the HTTP API and page: routes, the access token, safe
file serving, live view, metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import anyio
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser

from ..errors import UserError
from .config import LOOPBACK, redact
from .review import suggest_threshold
from .store import MAX_LIMIT, EventStore, media_path

log = logging.getLogger(__name__)
T = TypeVar("T")

STATIC = Path(__file__).with_name("static")
"""The page's files (index.html, app.js, style.css): no build step, no external assets."""
COOKIE = "ddlvad_token"
"""Cookie that carries the token after the page was opened with ``?token=``."""
LIVE_WAIT = 0.5
"""Seconds one :meth:`WatchView.wait_frame` call of the live view blocks before it checks whether the
client has gone or the server is stopping."""
MAX_LIVE = 64
"""Live views open at once (all cameras together); more get 503."""
STATES = ("connecting", "connected", "reconnecting", "stopped")
"""Camera states (:meth:`WatchView.cameras`)."""
MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webm": "video/webm", ".mp4": "video/mp4"}
"""Content type of a media file by extension (others: application/octet-stream)."""
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
                                 b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]
"""Added to every response: no sniffing, no Referer (URLs may hold ``?token=``), no framing, and
nothing loaded from anywhere but the app itself."""


# ====================================================================== what the service provides
class WatchView(Protocol):
    """What the service shows the web app. Every method may be called from any thread, at any time,
    also concurrently; each must return quickly except :meth:`wait_frame`. Methods that take a camera
    name raise ``KeyError`` for an unknown camera (the app answers 404)."""

    store: EventStore
    """Events, reviews and the threshold history."""
    data_dir: Path
    """Root of the media: the snapshot and clip paths in the store are relative to it."""

    def cameras(self) -> list[dict]:
        """One dict per camera, in display order: ``name``; ``label`` (the source, password redacted
        by :func:`ddlvad.watch.config.redact`); ``run`` (the run folder, as text); ``state``
        (``"connecting"``, ``"connected"``, ``"reconnecting"`` or ``"stopped"``); ``threshold`` (the
        frame threshold in force, or None); ``stats``: ``camera_fps`` (frames/s the source delivers),
        ``process_fps`` (frames/s scored), ``skipped_fps`` (frames/s dropped), ``latency_median_ms``
        and ``latency_p95_ms`` (frame read to score), ``last_frame_at`` (unix seconds, or None),
        ``frames`` and ``skipped`` (counts since the service started). Numbers may be None when not
        known yet."""
        ...

    def latest_frame(self, camera: str, overlay: bool = True) -> tuple[int, bytes] | None:
        """``(sequence number, JPEG bytes)`` of the newest processed frame, with regions and the score
        trace drawn on it when ``overlay``; None before the first frame. Sequence numbers grow by at
        least one per frame."""
        ...

    def wait_frame(self, camera: str, after: int, timeout: float) -> tuple[int, bytes] | None:
        """Block until a frame with a sequence number above ``after`` exists and return it (as
        :meth:`latest_frame` with overlay), or None after ``timeout`` seconds: the live view."""
        ...

    def trace(self, camera: str, seconds: float = 60.0) -> list[tuple[float, float]]:
        """``(unix time, score)`` of the frames scored in the last ``seconds``, oldest first."""
        ...

    def set_threshold(self, camera: str, value: float, origin: str, note: str | None = None) -> None:
        """Apply ``value`` as the camera's threshold now and record it in the store
        (:meth:`EventStore.record_threshold` with ``origin`` and ``note``)."""
        ...


# ====================================================================== bodies
class ReviewBody(BaseModel):
    """``POST /api/events/{id}/review``."""

    review: Literal["false_alarm", "confirmed"] | None
    """What a person says about the event; null: not reviewed (again)."""
    note: str | None = Field(None, max_length=2000)
    """Replaces the event's note when given (``""`` clears it)."""


class ThresholdBody(BaseModel):
    """``POST /api/cameras/{name}/threshold``."""

    value: float = Field(ge=0, allow_inf_nan=False)
    """The new frame threshold."""
    note: str | None = Field(None, max_length=2000)
    """Why (kept in the threshold history)."""
    origin: Literal["user", "suggested-applied"] = "user"
    """``suggested-applied``: the value of ``threshold-suggestion`` (checked: 409 when the suggestion
    has changed since); ``user``: typed by the user."""


# ====================================================================== the app
def create_app(view: WatchView, *, token: str | None) -> FastAPI:
    """The FastAPI app of ``view``. ``token``: the secret every request must carry (None: no token;
    then only requests to a loopback ``Host`` are answered). See the module docstring for the routes."""
    if token is not None and (not token or any(c.isspace() for c in token)):
        raise UserError("http.token: must be a secret without spaces (or null)")
    app = FastAPI(title="ddlvad watch", version="1", docs_url=None, redoc_url=None,  # their pages load a CDN
                  openapi_url="/api/openapi.json")
    app.state.stopping = threading.Event()  # set by WebServer.stop(): live views end
    app.state.live = 0  # live views open now
    live_lock = threading.Lock()
    live_limiter = anyio.CapacityLimiter(MAX_LIVE)  # live views wait in threads of their own budget

    # ------------------------------------------------------------ errors: one line of JSON
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
            got = f" (got {error['input']!r:.40})" if "input" in error and not isinstance(error["input"], dict) else ""
            parts.append(f"{where or 'request'}: {error.get('msg', 'invalid')}{got}")
        return JSONResponse({"error": "; ".join(parts).replace("\n", " ")}, 422)

    def camera(name: str, call: Callable[..., T], *args: Any) -> T:
        """``call(name, *args)``; an unknown camera (KeyError) becomes 404."""
        try:
            return call(name, *args)
        except KeyError:
            raise HTTPException(404, f"no camera {name!r}") from None

    def camera_info(name: str) -> dict:
        for info in view.cameras():
            if info.get("name") == name:
                return _public(info)
        raise HTTPException(404, f"no camera {name!r}")

    def event_or_404(event_id: int) -> dict:
        event = view.store.event(event_id)
        if event is None:
            raise HTTPException(404, f"no event {event_id}")
        return _event_json(event)

    # ------------------------------------------------------------ the page
    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The page: live cameras, score traces, events with snapshots and clips, reviews, thresholds."""
        return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ------------------------------------------------------------ cameras
    @app.get("/api/cameras")
    def cameras() -> dict:
        """Every camera: ``name``, ``label`` (source with the password hidden), ``run``, ``state``,
        ``threshold``, ``stats`` (see :meth:`WatchView.cameras`)."""
        return {"cameras": [_public(c) for c in view.cameras()]}

    @app.get("/api/cameras/{name}")
    def camera_detail(name: str) -> dict:
        """One camera as in ``/api/cameras``, with ``thresholds``: its threshold history, oldest first
        (``value``, ``origin``, ``set_at``, ``note``; the last is the one in force)."""
        return {**camera_info(name), "thresholds": view.store.thresholds(name)}

    @app.get("/api/cameras/{name}/frame.jpg", response_class=Response)
    def frame(name: str, overlay: bool = True) -> Response:
        """The newest processed frame as JPEG (``overlay=0``: without regions and trace); 503 before
        the first frame. Header ``X-Frame-Sequence``: its sequence number."""
        got = camera(name, view.latest_frame, overlay)
        if got is None:
            raise HTTPException(503, f"camera {name!r} has no frame yet", headers={"Retry-After": "1"})
        return Response(got[1], media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "X-Frame-Sequence": str(got[0])})

    @app.get("/api/cameras/{name}/live", response_class=StreamingResponse)
    async def live(name: str, request: Request) -> StreamingResponse:
        """The live view: ``multipart/x-mixed-replace`` JPEG parts (boundary ``frame``), one per new
        frame (with overlay), starting with the newest; for an ``<img>``. Ends when the client goes
        away, the camera disappears or the server stops. 503 beyond :data:`MAX_LIVE` open views."""
        first = await anyio.to_thread.run_sync(camera, name, view.latest_frame)
        if app.state.live >= MAX_LIVE:
            raise HTTPException(503, f"{MAX_LIVE} live views are open already", headers={"Retry-After": "5"})

        async def parts():
            with live_lock:  # counted here, where the finally below is sure to run
                app.state.live += 1
            try:
                after = -1
                if first is not None:
                    after = first[0]
                    yield _part(first[1])
                while not app.state.stopping.is_set() and not await request.is_disconnected():
                    try:
                        got = await anyio.to_thread.run_sync(view.wait_frame, name, after, LIVE_WAIT,
                                                             limiter=live_limiter)
                    except KeyError:
                        return
                    if got is not None:
                        after = got[0]
                        yield _part(got[1])
            finally:
                with live_lock:
                    app.state.live -= 1

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/cameras/{name}/trace")
    def trace(name: str, seconds: float = Query(60.0, gt=0, le=86400)) -> dict:
        """The score trace: ``points`` ``[[unix time, score], ...]`` of the last ``seconds`` (oldest
        first) and the ``threshold`` in force."""
        points = camera(name, view.trace, seconds)
        return {"camera": name, "seconds": seconds, "threshold": camera_info(name).get("threshold"),
                "points": [[float(t), float(s)] for t, s in points if math.isfinite(t) and math.isfinite(s)]}

    @app.get("/api/cameras/{name}/threshold-suggestion")
    def threshold_suggestion(name: str) -> dict:
        """A threshold from the camera's reviewed events (:mod:`ddlvad.watch.review`): ``value`` (None
        when ``refused``, which then says why), ``candidate``, ``current``, ``false_alarms``,
        ``confirmed``, ``highest_false_alarm``, ``lowest_confirmed``, ``silenced`` (how many of its
        stored events ``candidate`` would have silenced: ``false_alarm``, ``confirmed``,
        ``unreviewed``, ``total``) and ``blocking`` (confirmed events it would silence). Nothing is
        applied here."""
        return {"camera": name, **_suggestion(view.store, name, camera_info(name).get("threshold"))}

    @app.post("/api/cameras/{name}/threshold")
    def apply_threshold(name: str, body: ThresholdBody) -> dict:
        """Apply ``value`` as the camera's threshold now (:meth:`WatchView.set_threshold`, recorded in
        the threshold history with ``origin`` and ``note``). With ``origin: "suggested-applied"`` the
        value must be the current suggestion (else 409). Returns the camera as ``/api/cameras/{name}``."""
        info = camera_info(name)
        if body.origin == "suggested-applied":
            suggestion = _suggestion(view.store, name, info.get("threshold"))
            if suggestion["value"] is None or not math.isclose(body.value, suggestion["value"], rel_tol=1e-9):
                now = suggestion["refused"] or f"it is {suggestion['value']:.6g}"
                raise HTTPException(409, f"the suggestion has changed ({now}): reload it")
        camera(name, view.set_threshold, body.value, body.origin, body.note)
        log.info("camera %s: threshold set to %g (%s)", name, body.value, body.origin)
        return camera_detail(name)

    # ------------------------------------------------------------ events
    @app.get("/api/events")
    def events(camera: str | None = None, since: float | None = None, until: float | None = None,
               min_score: float | None = None, reviewed: bool | None = None, review: str | None = None,
               limit: int = 50, offset: int = 0) -> dict:
        """Events newest first and how many match in all (``total``). Filters: ``camera``;
        ``since``/``until`` (unix seconds, start in ``[since, until)``); ``min_score`` (peak score);
        ``reviewed`` (true/false); ``review`` (``false_alarm`` or ``confirmed``). Paging: ``limit``
        (1 to 1000, default 50) events from ``offset``. 400 for a bad value. Each event is as
        :meth:`EventStore.event` returns it, with ``snapshot_url`` and ``clip_url`` (None without)."""
        try:
            page = view.store.events(camera=camera, since=since, until=until, min_score=min_score, reviewed=reviewed,
                                     review=review, limit=limit, offset=offset)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return {"events": [_event_json(e) for e in page.events], "total": page.total, "limit": limit, "offset": offset}

    @app.get("/api/events/{event_id}")
    def event(event_id: int) -> dict:
        """One event (as in ``/api/events``)."""
        return event_or_404(event_id)

    @app.get("/api/events/{event_id}/snapshot.jpg", response_class=FileResponse)
    def snapshot(event_id: int) -> FileResponse:
        """The event's JPEG snapshot; 404 when it has none (yet) or the file is gone."""
        return _media(view.data_dir, event_or_404(event_id)["snapshot"], event_id, "snapshot")

    @app.get("/api/events/{event_id}/clip", response_class=FileResponse)
    def clip(event_id: int) -> FileResponse:
        """The event's clip (``video/webm`` or ``video/mp4`` by extension), with HTTP Range requests
        (206 Partial Content) so that a ``<video>`` can seek; 404 when it has none (yet)."""
        return _media(view.data_dir, event_or_404(event_id)["clip"], event_id, "clip")

    @app.post("/api/events/{event_id}/review")
    def review(event_id: int, body: ReviewBody) -> dict:
        """Mark the event ``false_alarm`` or ``confirmed`` (null: unreviewed), with an optional
        ``note``; returns the event afterwards."""
        event = view.store.review(event_id, body.review, body.note)
        if event is None:
            raise HTTPException(404, f"no event {event_id}")
        log.info("event %d reviewed as %s", event_id, body.review)
        return _event_json(event)

    # ------------------------------------------------------------ metrics
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(view))

    @app.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text: per camera ``ddlvad_watch_*`` gauges and counters (fps, skipped, latency
        quantiles, state, threshold, events stored)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Guard, token=token)
    return app


# ====================================================================== helpers of the routes
def _public(info: dict) -> dict:
    """A camera dict for the page: no ``source`` (it may hold a password), the label redacted again
    (cheap insurance), non-finite numbers as None (JSON has none)."""
    out = {k: v for k, v in info.items() if k != "source"}
    if isinstance(out.get("label"), str):
        out["label"] = redact(out["label"])
    return _finite(out)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _event_json(event: dict) -> dict:
    base = f"/api/events/{event['id']}"
    return {**event, "snapshot_url": f"{base}/snapshot.jpg" if event.get("snapshot") else None,
            "clip_url": f"{base}/clip" if event.get("clip") else None}


def _media(data_dir: Path, relative: str | None, event_id: int, what: str) -> FileResponse:
    """The file ``relative`` under ``data_dir`` (through :func:`media_path` only); 404 otherwise."""
    if relative is None:
        raise HTTPException(404, f"event {event_id} has no {what}")
    try:
        path = media_path(data_dir, relative)
    except ValueError:
        log.warning("event %d: its %s path leads outside the data folder; not served", event_id, what)
        raise HTTPException(404, f"event {event_id} has no {what}") from None
    if not path.is_file():
        raise HTTPException(404, f"the {what} of event {event_id} is gone")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"),
                        headers={"Cache-Control": "private, max-age=3600"})


def _part(jpeg: bytes) -> bytes:
    return b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)


def _all_events(store: EventStore, **filters: Any) -> Iterator[dict]:
    offset = 0
    while True:
        page = store.events(**filters, limit=MAX_LIMIT, offset=offset)
        yield from page.events
        offset += len(page.events)
        if not page.events or offset >= page.total:
            return


def _suggestion(store: EventStore, camera: str, current: float | None) -> dict:
    """:func:`suggest_threshold` on the camera's reviewed events; unreviewed ones counted by the store."""
    reviewed = [e for review in ("false_alarm", "confirmed") for e in _all_events(store, camera=camera, review=review)]
    suggestion = suggest_threshold(reviewed, current).as_dict()
    if suggestion["candidate"] is not None and suggestion["silenced"]:
        above = math.nextafter(suggestion["candidate"], math.inf)
        unreviewed = (store.events(camera=camera, reviewed=False, limit=1).total
                      - store.events(camera=camera, reviewed=False, min_score=above, limit=1).total)
        silenced = suggestion["silenced"]
        silenced["total"] += unreviewed - silenced["unreviewed"]
        silenced["unreviewed"] = unreviewed
    return suggestion


class _Collector:
    """Prometheus metrics of ``view``, read when scraped (no global registry)."""

    def __init__(self, view: WatchView) -> None:
        self.view = view

    def collect(self):
        cameras = self.view.cameras()
        gauges = {
            "camera_fps": ("ddlvad_watch_camera_fps", "Frames per second the source delivers"),
            "process_fps": ("ddlvad_watch_process_fps", "Frames per second scored"),
            "skipped_fps": ("ddlvad_watch_skipped_fps", "Frames per second skipped"),
            "last_frame_at": ("ddlvad_watch_last_frame_timestamp_seconds", "Unix time of the newest frame"),
        }
        families = {key: GaugeMetricFamily(name, text, labels=["camera"]) for key, (name, text) in gauges.items()}
        frames = CounterMetricFamily("ddlvad_watch_frames", "Frames scored since the service started", labels=["camera"])
        skipped = CounterMetricFamily("ddlvad_watch_skipped_frames", "Frames skipped since the service started",
                                      labels=["camera"])
        latency = GaugeMetricFamily("ddlvad_watch_latency_seconds", "Frame read to score, quantile over recent frames",
                                    labels=["camera", "quantile"])
        state = GaugeMetricFamily("ddlvad_watch_camera_state", "1 for the state the camera is in", labels=["camera", "state"])
        threshold = GaugeMetricFamily("ddlvad_watch_threshold", "Frame threshold in force", labels=["camera"])
        stored = GaugeMetricFamily("ddlvad_watch_events", "Events stored (retention deletes old ones)",
                                   labels=["camera", "review"])
        store = self.view.store
        for info in cameras:
            name, stats = str(info["name"]), info.get("stats") or {}
            for key, family in families.items():
                _add(family, [name], stats.get(key))
            _add(frames, [name], stats.get("frames"))
            _add(skipped, [name], stats.get("skipped"))
            for quantile, key in (("0.5", "latency_median_ms"), ("0.95", "latency_p95_ms")):
                value = stats.get(key)
                _add(latency, [name, quantile], None if value is None else value / 1000.0)
            for s in STATES:
                state.add_metric([name, s], 1.0 if info.get("state") == s else 0.0)
            _add(threshold, [name], info.get("threshold"))
            counts = {r: store.events(camera=name, review=r, limit=1).total for r in ("false_alarm", "confirmed")}
            counts["none"] = store.events(camera=name, reviewed=False, limit=1).total
            for review, count in counts.items():
                stored.add_metric([name, review], count)
        yield from (*families.values(), frames, skipped, latency, state, threshold, stored)


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: Any) -> None:
    if value is not None and math.isfinite(float(value)):
        family.add_metric(labels, float(value))


# ====================================================================== the guard: token, host, log
class _Guard:
    """ASGI wrapper of the app: checks the token (or, without one, a loopback ``Host``), refuses
    cross-origin POSTs, sets the token cookie, adds :data:`SECURITY_HEADERS` and writes the access log
    (with ``token=***``). Added with ``app.add_middleware``: it wraps every route, mount and 404."""

    def __init__(self, app: Callable, token: str | None) -> None:
        self.app = app
        self.token = None if token is None else token.encode()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # no websockets here
        headers = Headers(scope=scope)
        query = scope.get("query_string", b"").decode("latin-1")
        started = time.perf_counter()
        status = [0]
        set_cookie = None
        refusal = self._refusal(scope, headers, query)
        if refusal is None and self.token is not None:
            given = dict(parse_qsl(query)).get("token")
            if given is not None and hmac.compare_digest(given.encode(), self.token) and (
                    cookie_parser(headers.get("cookie", "")).get(COOKIE) != given):
                set_cookie = (f"{COOKIE}={quote(given, safe='')}; Path=/; HttpOnly; SameSite=Strict").encode()

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                extra = list(SECURITY_HEADERS) + ([(b"set-cookie", set_cookie)] if set_cookie else [])
                message = {**message, "headers": [*message.get("headers", []), *extra]}
                log.info("%s %s%s %d %.1f ms", scope["method"], scope["path"], _redacted_query(query),
                         message["status"], (time.perf_counter() - started) * 1000)
            await send(message)

        if refusal is not None:
            code, text, extra_headers = refusal
            response = JSONResponse({"error": text}, code, headers=extra_headers)
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: dict, headers: Headers, query: str) -> tuple[int, str, dict | None] | None:
        """(status, message, headers) when the request is refused, else None."""
        if self.token is None:
            host = headers.get("host")
            if host is not None and _host_name(host) not in LOOPBACK:
                return 421, "without a token this page answers only to 127.0.0.1, localhost or ::1", None
        else:
            offered = []
            authorization = headers.get("authorization", "")
            if authorization[:7].lower() == "bearer ":
                offered.append(authorization[7:].strip())
            offered += [v for k, v in parse_qsl(query, keep_blank_values=True) if k == "token"]
            cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE)
            if cookie is not None:
                offered.append(unquote(cookie))
            if not any(hmac.compare_digest(o.encode(), self.token) for o in offered):
                return 401, "missing or wrong token: send Authorization: Bearer TOKEN, or open /?token=TOKEN", {
                    "WWW-Authenticate": "Bearer"}
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc != headers.get("host"):
                return 403, "requests from another origin are refused", None
        return None


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without port (``[::1]:8780`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_SECRET_QUERY = re.compile(r"([?&](?:token|password|pwd|key)=)[^&\s\"']*", re.IGNORECASE)


class _RedactFilter(logging.Filter):
    """Hides ``token=`` (and password-like) query values in the arguments of uvicorn's log records. Its
    access log is off (:func:`serve` logs each request itself), but a handler attached straight to
    ``uvicorn.access`` (a logging set-up, pytest's capture) would still get those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET_QUERY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET_QUERY.sub(r"\1***", record.msg)
        return True


def _redacted_query(query: str) -> str:
    """``?query`` for the log, with ``token`` (and other secret-looking parameters) shown as ``***``."""
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return "?" + urlencode([(k, "***" if k.lower() in ("token", "password", "pwd", "key") else v) for k, v in pairs],
                           safe="*")


# ====================================================================== serving
class WebServer:
    """A running :func:`serve`: ``app`` (the FastAPI app), ``host``, ``port`` (the bound one), ``url``;
    :meth:`stop`."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, app: FastAPI, host: str, port: int) -> None:
        self._server, self._thread = server, thread
        self.app, self.host, self.port = app, host, port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def stop(self, timeout: float = 10.0) -> None:
        """End live views, stop accepting, finish requests in flight and wait for the thread."""
        self.app.state.stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(view: WatchView, host: str = "127.0.0.1", port: int = 8780, token: str | None = None) -> WebServer:
    """Serve :func:`create_app` on ``host:port`` (0: a free port) from a thread; returns once it
    listens. Without ``token`` only a loopback ``host`` is allowed (:data:`ddlvad.watch.config.LOOPBACK`).
    :class:`UserError` when that is not so or the address cannot be bound."""
    if token is None and host not in LOOPBACK:
        raise UserError(f"http.host {host} is reachable from other machines: set http.token, or use 127.0.0.1")
    app = create_app(view, token=token)
    sock = None
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # accepted sockets inherit it: uvicorn answers
        # in several writes, and Nagle with delayed ACKs would add 40 ms to every keep-alive request
        sock.bind(address)
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise UserError(f"http: cannot listen on {host}:{port} ({exc.strerror or exc}); choose another http.port "
                        f"or stop what uses it") from None
    bound = sock.getsockname()[1]
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactFilter) for f in logger.filters):
            logger.addFilter(_RedactFilter())
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", ws="none", proxy_headers=False,
                            server_header=False, timeout_graceful_shutdown=int(4 * LIVE_WAIT) + 1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=_run, args=(server, sock), name=f"ddlvad-web-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise UserError(f"http: the web server on {host}:{bound} did not start (see the log above)")
        time.sleep(0.01)
    log.info("page on http://%s:%d/%s", host, bound, " (token required)" if token else " (this machine only)")
    return WebServer(server, thread, app, sock.getsockname()[0], bound)


def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        sock.close()

