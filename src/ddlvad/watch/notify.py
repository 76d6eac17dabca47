"""Notifications for ``ddlvad watch``: a webhook and MQTT, neither able to stall scoring.

Every call the service makes here returns at once. :class:`Webhook` puts the JSON body in a
bounded outbox that a worker thread POSTs, retrying failures with backoff; :class:`Mqtt`
hands messages to paho-mqtt's background loop, which queues them (up to a bound) while the
broker is away and reconnects by itself. What cannot be delivered is dropped and counted,
never waited for. :class:`Notifier` fans each event or state out to whichever is configured.

Messages are JSON objects. numpy numbers and arrays, paths and datetimes in a payload are
converted (``tolist()``, ``str``, ISO 8601); anything else unknown becomes its ``str``.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from datetime import date, datetime
from pathlib import PurePath
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .. import __version__
from ..errors import UserError


def encode(payload: dict) -> bytes:
    """``payload`` as compact UTF-8 JSON (numpy values, paths and datetimes converted)."""
    return json.dumps(payload, default=_jsonable, separators=(",", ":"), ensure_ascii=False).encode()


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    return str(value)


class Webhook:
    """POST each message as JSON to ``url``, from a worker thread; :meth:`send` never waits.

    ``timeout``: seconds for one request. ``retries``: further attempts after a failed one
    (connection error, timeout, HTTP 5xx, 408 or 429; other 4xx answers are not retried), the
    n-th after ``min(cap, first * 2**(n-1))`` seconds, jittered down to half, with
    ``backoff = (first, cap)``. ``outbox``: messages waiting at most; when full, the oldest is
    dropped and counted. Messages go out one at a time, in order.

    Uses the standard library's ``urllib.request`` (no extra dependency; a message is one short
    POST, so connection reuse would buy nothing); it honours ``https_proxy``/``no_proxy``.
    """

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 5, backoff: tuple[float, float] = (0.5, 30.0),
                 outbox: int = 1000) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UserError(f"webhook URL {parts.scheme}://{parts.hostname}...: give an http:// or https:// address")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise UserError(f"webhook timeout {timeout}: must be a positive number of seconds")
        if not (isinstance(retries, int) and retries >= 0):
            raise UserError(f"webhook retries {retries}: must be a whole number >= 0")
        if not (0 < backoff[0] <= backoff[1] and math.isfinite(backoff[1])):
            raise UserError(f"webhook backoff {backoff}: must be (first, cap) seconds with 0 < first <= cap")
        if not (isinstance(outbox, int) and outbox >= 1):
            raise UserError(f"webhook outbox {outbox}: must be a whole number >= 1")
        self.url = url
        self.label = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"
        """Scheme and host only: a webhook's path or query often is its secret."""
        self.timeout, self.retries, self.backoff, self.size = float(timeout), retries, backoff, outbox
        self.sent = 0
        """Messages the server accepted (2xx)."""
        self.failed = 0
        """Messages given up after their retries, or refused with a 4xx."""
        self.retried = 0
        """Repeated attempts (a message sent on its third try counts 2)."""
        self.dropped = 0
        """Messages dropped unsent: the outbox was full, or :meth:`close` ran out of time."""
        self.last_error: str | None = None
        self._outbox: deque[bytes] = deque()
        self._inflight = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._deadline = math.inf
        self._finished = False
        self._random = random.Random()
        self._thread = threading.Thread(target=self._work, name="ddlvad-webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict) -> None:
        """Queue ``payload`` for POSTing and return at once (after :meth:`close`, it is dropped)."""
        body = encode(payload)
        with self._wake:
            if self._closing.is_set():
                self.dropped += 1
                return
            if len(self._outbox) >= self.size:
                self._outbox.popleft()
                self.dropped += 1
            self._outbox.append(body)
            self._wake.notify()

    @property
    def pending(self) -> int:
        """Messages queued or being sent."""
        with self._lock:
            return len(self._outbox) + self._inflight

    def stats(self) -> dict:
        with self._lock:
            return {"url": self.label, "sent": self.sent, "failed": self.failed, "retried": self.retried,
                    "dropped": self.dropped, "pending": len(self._outbox) + self._inflight, "last_error": self.last_error}

    def close(self, timeout: float = 5.0) -> bool:
        """Send what is queued within ``timeout`` seconds (retries included, without their
        waits), then stop; what is left is counted as dropped. True when nothing was left."""
        with self._wake:
            self._deadline = time.monotonic() + timeout
            self._closing.set()
            self._wake.notify()
        self._thread.join(timeout + 1.0)
        with self._lock:
            left = len(self._outbox) + self._inflight
            self.dropped += left
            self._outbox.clear()
            self._inflight = 0
            self._finished = True  # a request still running past the join is not counted again
        return left == 0

    def __enter__(self) -> Webhook:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._outbox or self._closing.is_set())
                if not self._outbox or time.monotonic() >= self._deadline:
                    return
                body = self._outbox.popleft()
                self._inflight = 1
            outcome = self._deliver(body)
            with self._lock:
                if self._finished:
                    return
                if outcome == "sent":
                    self.sent += 1
                elif outcome == "failed":
                    self.failed += 1
                else:  # out of time while closing: close() counts it as dropped
                    self._outbox.appendleft(body)
                self._inflight = 0

    def _deliver(self, body: bytes) -> str:
        """POST ``body`` until it is accepted or its retries are spent: sent, failed or late."""
        attempt = 0
        while True:
            timeout = min(self.timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                return "late"
            error, permanent = self._post(body, timeout)
            if error is None:
                return "sent"
            with self._lock:
                self.last_error = error
            if permanent or attempt >= self.retries:
                return "failed"
            attempt += 1
            with self._lock:
                self.retried += 1
            first, cap = self.backoff
            delay = min(cap, first * 2 ** (attempt - 1))
            self._closing.wait(self._random.uniform(delay / 2, delay))  # close() cuts the wait short

    def _post(self, body: bytes, timeout: float) -> tuple[str | None, bool]:
        """One POST: ``(None, False)`` when accepted, else ``(why, whether retrying is pointless)``."""
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": f"ddlvad/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return None, False
        except urllib.error.HTTPError as exc:
            exc.close()
            return f"{self.label} answered HTTP {exc.code} {exc.reason}", 400 <= exc.code < 500 and exc.code not in (408, 429)
        except urllib.error.URLError as exc:
            return f"cannot reach {self.label}: {exc.reason}", False
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return f"cannot reach {self.label}: {type(exc).__name__}: {exc}", False


class Mqtt:
    """Publish events and camera states to an MQTT broker with paho-mqtt (2.x API).

    Topics: ``<prefix>/availability`` (retained ``online`` on every connect; the broker's
    last will publishes a retained ``offline`` when the connection dies without a goodbye;
    :meth:`close` publishes it itself), ``<prefix>/<camera>/events`` (QoS 1) and
    ``<prefix>/<camera>/state`` (QoS 1, retained). A camera name's ``/ + #`` become ``_``.

    paho's network loop runs in its own thread and reconnects by itself (waiting 1 s, doubling
    up to 30 s). Publishing never waits: while the broker is away, paho keeps up to
    ``max_queued`` messages and sends them after reconnecting; beyond that, a message is
    dropped and counted. ``keepalive``: seconds between pings, so the broker notices a dead
    connection (and sends the will) within 1.5 times that.
    """

    def __init__(self, host: str, port: int = 1883, prefix: str = "ddlvad", username: str | None = None,
                 password: str | None = None, client_id: str | None = None, *, keepalive: int = 30,
                 max_queued: int = 1000) -> None:
        prefix = prefix.strip("/")
        if not prefix or any(c in prefix for c in "+#\0"):
            raise UserError(f"MQTT prefix {prefix!r}: give a topic prefix without wildcards (+ #), e.g. ddlvad")
        if not (isinstance(max_queued, int) and max_queued >= 1):
            raise UserError(f"MQTT max_queued {max_queued}: must be a whole number >= 1")
        self.host, self.port, self.prefix = host, int(port), prefix
        self.availability = f"{prefix}/availability"
        self.connected = False
        self.connects = 0
        self.published = 0
        """Messages handed to paho (sent, or queued until the broker is back)."""
        self.delivered = 0
        """Messages the broker acknowledged (PUBACK)."""
        self.dropped = 0
        """Messages refused because paho's queue was full (or after :meth:`close`)."""
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._closed = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or "", reconnect_on_failure=True)
        client.will_set(self.availability, "offline", qos=1, retain=True)
        if username is not None:
            client.username_pw_set(username, password)
        self.max_queued = max_queued
        client.max_queued_messages_set(max_queued + 8)  # room for availability beyond events and states
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        client.connect_async(host, self.port, keepalive)
        client.loop_start()

    def event(self, camera: str, payload: dict) -> bool:
        """Publish ``payload`` to ``<prefix>/<camera>/events`` (QoS 1); False when dropped."""
        return self._publish(f"{self.prefix}/{_topic_part(camera)}/events", encode(payload), retain=False, bounded=True)

    def state(self, camera: str, payload: dict) -> bool:
        """Publish ``payload`` to ``<prefix>/<camera>/state`` (QoS 1, retained); False when dropped."""
        return self._publish(f"{self.prefix}/{_topic_part(camera)}/state", encode(payload), retain=True, bounded=True)

    def stats(self) -> dict:
        with self._lock:
            return {"broker": f"{self.host}:{self.port}", "connected": self.connected, "connects": self.connects,
                    "published": self.published, "delivered": self.delivered, "dropped": self.dropped,
                    "pending": self.published - self.delivered, "last_error": self.last_error}

    def close(self, timeout: float = 2.0) -> None:
        """Publish a retained ``offline`` (waiting up to ``timeout`` s for the broker's
        acknowledgement when connected), disconnect cleanly and stop the network thread."""
        if self._closed:
            return
        if self.connected:
            info = self._client.publish(self.availability, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (ValueError, RuntimeError):  # queue full or connection gone: the will says it
                pass
        self._closed = True
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Mqtt:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _publish(self, topic: str, body: bytes, retain: bool, bounded: bool = False) -> bool:
        """Hand a QoS 1 message to paho; events and states (``bounded``) only while fewer than
        ``max_queued`` messages await the broker's acknowledgement, so that ``online`` always fits."""
        with self._lock:
            full = bounded and self.published - self.delivered >= self.max_queued
            if self._closed or full:
                self.dropped += 1
                if full:
                    self.last_error = f"message to {topic} dropped: {self.max_queued} messages await the broker"
                return False
        try:
            info = self._client.publish(topic, body, qos=1, retain=retain)
            error = "paho's queue is full" if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE else None  # (a backstop)
        except ValueError as exc:  # e.g. a payload over the protocol's limit
            error = str(exc)
        with self._lock:
            if error is not None:
                self.dropped += 1
                self.last_error = f"message to {topic} dropped: {error}"
                return False
            self.published += 1  # also while disconnected: paho sends it after reconnecting
            return True

    # -- paho's callbacks (its network thread) ---------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            with self._lock:
                self.last_error = f"broker {self.host}:{self.port} refused the connection: {reason_code}"
            return
        with self._lock:
            self.connected = True
            self.connects += 1
        self._publish(self.availability, b"online", retain=True)

    def _on_connect_fail(self, client, userdata) -> None:
        with self._lock:
            self.last_error = f"cannot connect to MQTT broker {self.host}:{self.port}"

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self.connected = False
            if reason_code.is_failure and not self._closed:
                self.last_error = f"lost the MQTT broker {self.host}:{self.port}: {reason_code}"

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.delivered += 1


class Notifier:
    """Events and camera states to whichever of a webhook and MQTT is configured (either,
    both or neither), so the service calls one object.

    Webhook bodies are ``{"type": "event"|"state", "camera": camera, **payload}``; MQTT
    messages are the payload alone (the topic names the camera and kind).
    """

    def __init__(self, webhook: Webhook | None = None, mqtt: Mqtt | None = None) -> None:
        self.webhook, self.mqtt = webhook, mqtt

    def event(self, camera: str, payload: dict) -> None:
        if self.webhook is not None:
            self.webhook.send(_envelope("event", camera, payload))
        if self.mqtt is not None:
            self.mqtt.event(camera, payload)

    def state(self, camera: str, payload: dict) -> None:
        if self.webhook is not None:
            self.webhook.send(_envelope("state", camera, payload))
        if self.mqtt is not None:
            self.mqtt.state(camera, payload)

    def stats(self) -> dict:
        return {"webhook": self.webhook.stats() if self.webhook else None, "mqtt": self.mqtt.stats() if self.mqtt else None}

    def close(self, timeout: float = 5.0) -> None:
        """Flush the webhook (up to ``timeout`` s) and say ``offline`` on MQTT."""
        if self.mqtt is not None:
            self.mqtt.close(min(timeout, 2.0))
        if self.webhook is not None:
            self.webhook.close(timeout)

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _envelope(kind: str, camera: str, payload: dict) -> dict:
    body = {"type": kind, "camera": camera}
    body.update((k, v) for k, v in payload.items() if k not in body)
    return body


def _topic_part(name: str) -> str:
    """``name`` as one topic level: ``/``, ``+``, ``#`` and NUL become ``_``."""
    return "".join("_" if c in "/+#\0" else c for c in str(name)) or "_"
