"""Webhook and MQTT notifications against a real HTTP server and a real MQTT broker on 127.0.0.1.

The broker is Debian's mosquitto (or amqtt) started by the test on a free port; the tests
skip, saying so, when neither is installed. The publisher whose connection dies abruptly is
a child process killed with SIGKILL, so the broker really sees a socket closed without an
MQTT DISCONNECT and sends the last will.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ddlvad.errors import UserError
from ddlvad.watch.notify import Mqtt, Notifier, Webhook
from watch_servers import WebhookReceiver, free_port, mqtt_broker

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """Loopback servers must be reached directly, whatever proxy the machine sets."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def timed_sends(hook: Webhook, payloads) -> float:
    """The longest time one ``send`` took, in seconds."""
    worst = 0.0
    for payload in payloads:
        started = time.perf_counter()
        hook.send(payload)
        worst = max(worst, time.perf_counter() - started)
    return worst


def test_webhook_posts_json():
    with WebhookReceiver() as server:
        hook = Webhook(server.url)
        hook.send({"camera": "gate", "score": np.float32(0.75), "frames": np.arange(3), "path": Path("/x/y.mp4")})
        [body] = server.wait_for(1, timeout=5)
        assert hook.close(timeout=2)
    assert body == {"camera": "gate", "score": 0.75, "frames": [0, 1, 2], "path": "/x/y.mp4"}
    assert server.headers[0]["Content-Type"] == "application/json"
    assert hook.stats() | {"url": None} == {"url": None, "sent": 1, "failed": 0, "retried": 0, "dropped": 0,
                                              "pending": 0, "last_error": None}


def test_webhook_retries_a_failing_slow_server_while_send_returns_at_once():
    with WebhookReceiver(fail_first=3, delay=0.2) as server:
        hook = Webhook(server.url, backoff=(0.05, 0.2))
        worst = timed_sends(hook, [{"n": n} for n in range(5)])
        assert worst < 0.05, worst  # the server takes 0.2 s per request and fails: send never waits
        received = server.wait_for(5, timeout=10)
        assert hook.close(timeout=2)
    assert [body["n"] for body in received] == [0, 1, 2, 3, 4]  # in order, the first after 3 retries
    stats = hook.stats()
    assert (stats["sent"], stats["retried"], stats["failed"], stats["dropped"]) == (5, 3, 0, 0)
    assert "HTTP 500" in stats["last_error"] and server.requests == 8


def test_webhook_gives_up_after_its_retries_and_on_4xx():
    with WebhookReceiver(fail_first=100) as server:
        hook = Webhook(server.url, retries=2, backoff=(0.05, 0.1))
        hook.send({"n": 0})
        assert _wait(lambda: hook.stats()["failed"] == 1, 5)
        assert server.requests == 3 and hook.stats()["retried"] == 2
        hook.close(timeout=1)
    hook = Webhook(server.url, retries=3)
    # (the receiver is closed now: refused connections are retried, not permanent)
    hook.send({"n": 1})
    assert _wait(lambda: hook.stats()["retried"] >= 1, 5)
    assert "cannot reach" in hook.stats()["last_error"]
    started = time.monotonic()
    assert hook.close(timeout=0.5)  # close cuts the backoff waits: the last retries fail at once
    assert time.monotonic() - started < 1.0
    assert (hook.stats()["failed"], hook.stats()["retried"], hook.stats()["dropped"]) == (1, 3, 0)


def test_webhook_close_gives_up_on_a_slow_server_in_time():
    with WebhookReceiver(delay=1.0) as server:
        hook = Webhook(server.url)
        for n in range(3):
            hook.send({"n": n})
        time.sleep(0.1)
        started = time.monotonic()
        assert not hook.close(timeout=0.3)
        assert time.monotonic() - started < 2.0
        stats = hook.stats()
        assert stats["pending"] == 0 and stats["sent"] + stats["dropped"] == 3 and stats["dropped"] >= 2
        time.sleep(1.0)
        assert hook.stats()["sent"] + hook.stats()["dropped"] == 3  # a late answer is not counted twice


def test_webhook_outbox_overflow_drops_the_oldest_and_counts_them():
    with WebhookReceiver(delay=0.3) as server:
        hook = Webhook(server.url, outbox=3)
        worst = timed_sends(hook, [{"n": n} for n in range(10)])
        assert worst < 0.05
        stats = hook.stats()
        assert stats["pending"] <= 4 and stats["dropped"] >= 6  # 3 queued + at most 1 in flight
        assert hook.close(timeout=5)
        received = [body["n"] for body in server.received]
    stats = hook.stats()
    assert stats["sent"] + stats["dropped"] == 10 and stats["sent"] == len(received) <= 4
    assert received[-3:] == [7, 8, 9]  # the newest survive


def _wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


class Subscriber:
    """A test-side MQTT client that records every message under ``topic``."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes, bool, int]] = []  # (topic, payload, retain, qos)
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "the test subscriber could not subscribe"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append((message.topic, message.payload, bool(message.retain), message.qos))
            self._lock.notify_all()

    def wait_for(self, topic: str, payload: bytes | None = None, timeout: float = 5) -> tuple[str, bytes, bool, int]:
        def find():
            return next((m for m in self.messages if m[0] == topic and (payload is None or m[1] == payload)), None)
        with self._lock:
            self._lock.wait_for(find, timeout)
            found = find()
        assert found is not None, f"no {topic} {payload!r} within {timeout} s; got {self.messages}"
        return found

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_mqtt_publishes_events_retained_state_and_availability(tmp_path):
    with mqtt_broker(tmp_path) as (host, port, _):
        subscribers = [Subscriber(host, port, "cams/#")]
        early = subscribers[0]
        pub = Mqtt(host, port, prefix="cams")
        try:
            assert early.wait_for("cams/availability", b"online")[2:] == (False, 1)  # live delivery: no retain flag
            assert pub.event("gate", {"start": 10, "end": 42, "peak": np.float64(0.9)})
            assert pub.state("gate", {"state": "connected", "fps": 12.5})
            topic, payload, retain, qos = early.wait_for("cams/gate/events")
            assert json.loads(payload) == {"start": 10, "end": 42, "peak": 0.9} and qos == 1
            early.wait_for("cams/gate/state")
            assert _wait(lambda: pub.stats()["delivered"] == 3, 5), pub.stats()  # online, event, state acknowledged
            # a subscriber that comes later gets the retained state and availability, not the event
            late = Subscriber(host, port, "cams/#")
            subscribers.append(late)
            assert json.loads(late.wait_for("cams/gate/state")[1]) == {"state": "connected", "fps": 12.5}
            assert late.wait_for("cams/availability", b"online")[2] is True
            time.sleep(0.2)
            assert not [m for m in late.messages if m[0] == "cams/gate/events"]
            pub.close()
            early.wait_for("cams/availability", b"offline")
            stats = pub.stats()
            assert stats["connects"] == 1 and stats["dropped"] == 0 and stats["last_error"] is None
            last = Subscriber(host, port, "cams/availability")
            subscribers.append(last)
            assert last.wait_for("cams/availability")[1:3] == (b"offline", True)  # retained
        finally:
            pub.close()
            for sub in subscribers:
                sub.close()


CHILD = """
import sys, time
from ddlvad.watch.notify import Mqtt
mqtt = Mqtt("127.0.0.1", int(sys.argv[1]), prefix="child", keepalive=5)
mqtt.event("gate", {"n": 1})
print("published", flush=True)
time.sleep(60)
"""


def test_mqtt_last_will_says_offline_when_the_publisher_dies(tmp_path):
    with mqtt_broker(tmp_path) as (host, port, _):
        sub = Subscriber(host, port, "child/#")
        env = dict(os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(port)], env=env, stdout=subprocess.PIPE)
        try:
            sub.wait_for("child/availability", b"online", timeout=10)
            sub.wait_for("child/gate/events")
            child.send_signal(signal.SIGKILL)  # no DISCONNECT: the kernel just closes the socket
            child.wait(5)
            killed = time.monotonic()
            sub.wait_for("child/availability", b"offline", timeout=5)
            assert time.monotonic() - killed < 3  # the broker saw the socket close; no keepalive wait
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            sub.close()


def test_mqtt_never_blocks_while_the_broker_is_down_and_catches_up_when_it_comes(tmp_path):
    port = free_port()
    pub = Mqtt("127.0.0.1", port, prefix="late", max_queued=5)
    try:
        started = time.perf_counter()
        sent = [pub.event("gate", {"n": n}) for n in range(8)]
        assert time.perf_counter() - started < 0.05 * 8
        assert sent == [True] * 5 + [False] * 3  # 5 wait in paho's queue, the rest are dropped and counted
        stats = pub.stats()
        assert (stats["connected"], stats["published"], stats["dropped"]) == (False, 5, 3)
        with mqtt_broker(tmp_path, port=port) as (host, port, _):
            assert _wait(lambda: pub.stats()["delivered"] == 6, 10), pub.stats()  # 5 queued events + online
            stats = pub.stats()
            assert stats["connected"] and stats["pending"] == 0
            pub.close()
    finally:
        pub.close()


def test_notifier_fans_out_to_webhook_and_mqtt(tmp_path):
    with WebhookReceiver() as server, mqtt_broker(tmp_path) as (host, port, _):
        sub = Subscriber(host, port, "fan/#")
        notifier = Notifier(webhook=Webhook(server.url), mqtt=Mqtt(host, port, prefix="fan"))
        try:
            notifier.event("gate/1", {"start": 3})
            notifier.state("gate/1", {"state": "reconnecting"})
            assert server.wait_for(2, timeout=5) == [{"type": "event", "camera": "gate/1", "start": 3},
                                                     {"type": "state", "camera": "gate/1", "state": "reconnecting"}]
            assert json.loads(sub.wait_for("fan/gate_1/events")[1]) == {"start": 3}
            assert json.loads(sub.wait_for("fan/gate_1/state")[1]) == {"state": "reconnecting"}
        finally:
            notifier.close(timeout=2)
            sub.close()
        stats = notifier.stats()
        assert stats["webhook"]["sent"] == 2 and stats["mqtt"]["dropped"] == 0
    Notifier().event("gate", {"start": 1})  # nothing configured: nothing to do


@pytest.mark.parametrize("make, message", [(lambda: Webhook("ftp://host/x"), "http"),
                                           (lambda: Webhook("http://host/x", outbox=0), "outbox"),
                                           (lambda: Mqtt("127.0.0.1", 1, prefix="a/#"), "prefix")])
def test_bad_settings_are_user_errors(make, message):
    with pytest.raises(UserError, match=message):
        make()
