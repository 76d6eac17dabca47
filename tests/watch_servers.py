"""Real loopback servers for the ``ddlvad watch`` tests: an MJPEG camera, a webhook receiver and
an MQTT broker. Nothing here is a mock: each listens on a free port of 127.0.0.1 and speaks the
real protocol, so the code under test runs exactly as it would against a camera or a broker.

- :class:`MjpegServer`: ``multipart/x-mixed-replace`` JPEG frames at a set rate, each showing its
  frame number (as text, and as a row of black/white blocks that :func:`frame_number` reads
  back after JPEG compression). ``refuse(seconds)`` drops every connection and closes the
  listening socket (clients get "connection refused"), then listens again on the same port;
  ``stall()`` keeps connections open but sends nothing, like a camera that hangs.
- :class:`WebhookReceiver`: an ``http.server`` that records JSON POST bodies; it can answer 500
  to the first N requests and wait before answering.
- :func:`mqtt_broker`: Debian's ``mosquitto`` on a free port (or the pure-Python ``amqtt``);
  ``pytest.skip`` with the reason when neither is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

BITS = 16
"""Frame-number bits drawn as blocks along the top of every MJPEG frame."""
BLOCK = 8
"""Side of one block in pixels."""


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def counter_image(number: int, size: tuple[int, int] = (96, 160)) -> np.ndarray:
    """A BGR image showing ``number`` as text and as :data:`BITS` blocks (white = 1), MSB first."""
    height, width = size
    image = np.full((height, width, 3), 96, np.uint8)
    for bit in range(BITS):
        on = (number >> (BITS - 1 - bit)) & 1
        image[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = 255 if on else 0
    cv2.putText(image, str(number), (4, height - 12), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return image


def frame_number(image: np.ndarray) -> int:
    """The number :func:`counter_image` drew into ``image`` (read from the block row)."""
    grey = image if image.ndim == 2 else image.mean(axis=2)
    centre = BLOCK // 2
    bits = [int(grey[centre, bit * BLOCK + centre] > 128) for bit in range(BITS)]
    return int("".join(map(str, bits)), 2)


class MjpegServer:
    """An MJPEG-over-HTTP camera on ``127.0.0.1:port`` sending numbered frames at ``fps``.

    ``url`` is the stream's address. ``sent`` is the number of the next frame: numbers run on
    across connections and outages, so a client sees which frames it missed. ``image``: the
    picture of frame ``number`` (default: :func:`counter_image`).
    """

    def __init__(self, fps: float = 20.0, size: tuple[int, int] = (96, 160),
                 image: Callable[[int], np.ndarray] | None = None) -> None:
        self.fps, self.size = fps, size
        self.image = image or (lambda number: counter_image(number, size))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/video.mjpg"
        self.sent = 0
        self.connections = 0
        self.stalled = False
        self._lock = threading.Lock()
        self._clients: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._start_clock = threading.Thread(target=self._tick, daemon=True)
        self._frame: bytes = self._encode(0)
        self._new_frame = threading.Condition(self._lock)
        self.listen()
        self._start_clock.start()

    # -- control ---------------------------------------------------------------------------
    def listen(self) -> None:
        """Accept connections (again) on :attr:`port`."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def drop(self) -> None:
        """Close every client connection at once (no more bytes, then FIN)."""
        with self._lock:
            clients, self._clients = list(self._clients), set()
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def refuse(self, seconds: float) -> None:
        """Drop every connection and refuse new ones for ``seconds``, then listen again."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self.drop()
        timer = threading.Timer(seconds, lambda: None if self._closed.is_set() else self.listen())
        timer.daemon = True
        timer.start()

    def stall(self, on: bool = True) -> None:
        """Keep connections open but send nothing (``on=False`` resumes sending)."""
        self.stalled = on

    def close(self) -> None:
        self._closed.set()
        if self._listener is not None:
            self._listener.close()
        self.drop()
        with self._new_frame:
            self._new_frame.notify_all()

    def __enter__(self) -> MjpegServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- serving ---------------------------------------------------------------------------
    def _encode(self, number: int) -> bytes:
        ok, jpeg = cv2.imencode(".jpg", self.image(number), [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return jpeg.tobytes()

    def _tick(self) -> None:
        """The camera's clock: a new numbered frame every 1/fps seconds, while not stalled."""
        period, due = 1.0 / self.fps, time.monotonic()
        while not self._closed.is_set():
            due += period
            time.sleep(max(0.0, due - time.monotonic()))
            if self.stalled:
                continue
            frame = self._encode(self.sent)
            with self._new_frame:
                self._frame, self.sent = frame, self.sent + 1
                self._new_frame.notify_all()

    def _accept(self, listener: socket.socket) -> None:
        while not self._closed.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by refuse() or close()
            with self._lock:
                self._clients.add(client)
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = client.recv(4096)
                if not chunk:
                    return
                request += chunk
            client.sendall(b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\n"
                           b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
            last = -1
            while not self._closed.is_set():
                with self._new_frame:
                    while self.sent - 1 == last and not self._closed.is_set():
                        self._new_frame.wait(1.0)
                    if client not in self._clients:
                        return
                    frame, last = self._frame, self.sent - 1
                client.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(frame)
                               + frame + b"\r\n")
        except OSError:
            pass
        finally:
            with self._lock:
                self._clients.discard(client)
            client.close()


class WebhookReceiver:
    """An HTTP server on ``127.0.0.1`` that records the JSON bodies POSTed to it.

    ``fail_first``: answer 500 to that many requests before accepting any. ``delay``: seconds
    to wait before answering each request. ``received``: the accepted bodies, decoded;
    ``requests``: every request seen (accepted or not).
    """

    def __init__(self, fail_first: int = 0, delay: float = 0.0) -> None:
        self.fail_first, self.delay = fail_first, delay
        self.received: list[dict] = []
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                with receiver._lock:
                    receiver.requests += 1
                    fail = receiver.requests <= receiver.fail_first
                    if not fail:
                        receiver.received.append(json.loads(body))
                        receiver.headers.append(dict(self.headers))
                        receiver.arrived.notify_all()
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float) -> list[dict]:
        """The received bodies once there are ``count`` of them (or what came within ``timeout``)."""
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
            return list(self.received)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _mosquitto() -> str | None:
    """The mosquitto binary (Debian installs it in /usr/sbin, often off a user's PATH)."""
    return shutil.which("mosquitto") or next(
        (str(p) for p in (Path("/usr/sbin/mosquitto"), Path("/usr/local/sbin/mosquitto")) if p.exists()), None)


def wait_port(port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on ``127.0.0.1:port``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def mqtt_broker(tmp_path: Path, port: int | None = None) -> Iterator[tuple[str, int, str]]:
    """A real MQTT broker on ``port`` of 127.0.0.1 (a free one by default): ``(host, port, name)``
    of the broker used.

    Debian's ``mosquitto`` when installed (``apt-get install mosquitto``), else ``amqtt`` when
    importable; ``pytest.skip`` names both when neither is.
    """
    binary = _mosquitto()
    port = port or free_port()
    if binary:
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "log_dest stderr\nlog_type error\nlog_type warning\n")
        log = open(tmp_path / "mosquitto.log", "wb")  # noqa: SIM115 (closed below)
        process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        try:
            if not wait_port(port, 10):
                pytest.fail(f"mosquitto did not listen on port {port}: {(tmp_path / 'mosquitto.log').read_text()}")
            yield "127.0.0.1", port, "mosquitto"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        return
    try:
        from amqtt.broker import Broker
    except ImportError:
        pytest.skip("no MQTT broker: install Debian's mosquitto (apt-get install mosquitto) or amqtt (pip)")
    config = {"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},  # amqtt >= 0.12's format
              "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}}
    loop = asyncio.new_event_loop()
    broker = Broker(config, loop=loop)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(broker.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not started.wait(10):  # (start() returns once it listens)
        pytest.fail("amqtt broker did not start")
    try:
        yield "127.0.0.1", port, "amqtt"
    finally:
        # amqtt 0.12's shutdown waits 5 s for its broadcast loop: the fallback is the slower one
        asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
