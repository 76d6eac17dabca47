"""Camera readers against a real MJPEG-over-HTTP server on 127.0.0.1 and real video files.

The server (tests/watch_servers.py) draws each frame's number into it, so the test can tell
which frames a reader got. Timings are checked with tolerances, never for exactness.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2
import pytest

from ddlvad.errors import UserError
from ddlvad.watch.readers import CONNECTED, CONNECTING, RECONNECTING, STOPPED, CameraReader
from watch_servers import MjpegServer, counter_image, frame_number, free_port


def write_video(path: Path, frames: int, fps: float) -> Path:
    """An MJPG .avi of ``frames`` numbered frames at ``fps``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 96))
    for number in range(frames):
        writer.write(counter_image(number))
    writer.release()
    return path


def wait_until(condition, timeout: float, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(step)
    return condition()


class Drain:
    """A consumer thread that takes every frame a reader offers and notes what it saw."""

    def __init__(self, reader: CameraReader, pause: float = 0.0) -> None:
        self.reader, self.pause = reader, pause
        self.got: list[tuple[int, float, int]] = []  # (frame_index, arrival_time, number drawn in the image)
        self.states: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.states or self.states[-1] != self.reader.state:
                self.states.append(self.reader.state)
            item = self.reader.get(timeout=0.02)
            if item is not None:
                index, arrival, image = item
                self.got.append((index, arrival, frame_number(image)))
                time.sleep(self.pause)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def test_stream_reconnects_after_drop_and_refusal_while_file_camera_keeps_going(tmp_path):
    video = write_video(tmp_path / "lobby.avi", frames=20, fps=25)
    with MjpegServer(fps=20) as server, \
            CameraReader("gate", server.url, backoff=(0.2, 1.0), read_timeout=2.0) as gate, \
            CameraReader("lobby", video, loop=True) as lobby:
        gate_seen, lobby_seen = Drain(gate), Drain(lobby)
        try:
            assert wait_until(lambda: len(gate_seen.got) >= 10, 10), gate.stats()
            before = [number for _, _, number in gate_seen.got]
            lobby_before = lobby.frames
            outage = time.monotonic()
            server.refuse(1.5)  # drop the connection mid-stream, refuse new ones for 1.5 s
            assert wait_until(lambda: gate.state == RECONNECTING, 3), gate.stats()
            assert gate.last_error
            assert wait_until(lambda: gate.state == CONNECTED, 10), gate.stats()
            back = time.monotonic()
            count = len(gate_seen.got)
            assert wait_until(lambda: len(gate_seen.got) >= count + 10, 5), gate.stats()
            lobby_during = lobby.frames - lobby_before
        finally:
            gate_seen.stop()
            lobby_seen.stop()
        stats = gate.stats()
        assert stats["reconnects"] >= 1 and stats["state"] == CONNECTED
        assert back - outage >= 1.4  # it could not come back while the server refused
        # connected -> reconnecting -> connected, and frames from both sides of the outage arrived
        states = gate_seen.states
        first_reconnect = states.index(RECONNECTING)
        assert CONNECTED in states[:first_reconnect] and CONNECTED in states[first_reconnect:]
        after = [number for _, _, number in gate_seen.got[len(before):]]
        assert before and after and min(after) > max(before)
        indices = [index for index, _, _ in gate_seen.got]
        assert indices == sorted(set(indices))  # indices run on across the reconnect
        # the file camera never paused: ~25 fps all along, and it never reconnected
        assert lobby_during >= 0.6 * 25 * (back - outage)
        assert lobby.reconnects == 0 and lobby.state == CONNECTED and CONNECTING not in lobby_seen.states[1:]


def test_stalled_stream_is_abandoned_and_reopened():
    """A camera that keeps its connection open but sends nothing: no frame for read_timeout
    means reconnect (FFmpeg's read timeout or the watchdog, whichever fires first)."""
    with MjpegServer(fps=20) as server, CameraReader("gate", server.url, backoff=(0.2, 0.5), read_timeout=1.0) as gate:
        assert wait_until(lambda: gate.frames >= 5, 10), gate.stats()
        server.stall()
        stalled = time.monotonic()
        assert wait_until(lambda: gate.state == RECONNECTING, 4), gate.stats()
        assert 0.8 <= time.monotonic() - stalled <= 3.0
        assert "no frame" in gate.last_error  # the watchdog decided (FFmpeg's own timeout is 1 s longer)
        frames = gate.frames
        server.stall(False)
        assert wait_until(lambda: gate.state == CONNECTED and gate.frames > frames + 5, 10), gate.stats()
        assert gate.stats()["reconnects"] >= 1


def test_slow_consumer_gets_the_newest_frames_and_skips_are_counted():
    with MjpegServer(fps=25) as server, CameraReader("gate", server.url, queue_size=3) as gate:
        assert wait_until(lambda: gate.frames >= 3, 10), gate.stats()
        got = []
        for _ in range(6):
            time.sleep(0.3)  # a consumer 7x slower than the camera
            assert gate.stats()["queued"] <= 3
            before = gate.frames
            index, arrival, image = gate.get(timeout=2)
            assert index >= before - 3  # at most queue_size behind the newest read
            got.append((index, frame_number(image)))
        stats = gate.stats()
        assert stats["skipped"] > 20 and stats["skipped_fps"] > 5
        assert 12 <= stats["camera_fps"] <= 35
        assert stats["frames"] == stats["skipped"] + stats["queued"] + len(got)  # every frame accounted for
        numbers = [number for _, number in got]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)

    with MjpegServer(fps=25) as server, CameraReader("gate", server.url, queue_size=1) as gate:
        assert wait_until(lambda: gate.frames >= 3, 10), gate.stats()
        for _ in range(3):
            time.sleep(0.2)
            before = gate.frames
            index, _, _ = gate.get(timeout=2)
            assert index >= before - 1  # queue_size 1: get returns the newest frame


def test_looped_file_plays_at_its_frame_rate(tmp_path):
    video = write_video(tmp_path / "clip.avi", frames=20, fps=25)  # 0.8 s per pass
    with CameraReader("clip", video, loop=True, queue_size=100) as clip:
        time.sleep(2.5)
        frames, fps = clip.frames, clip.camera_fps
    assert 0.75 * 25 * 2.5 <= frames <= 1.15 * 25 * 2.5, frames
    assert 18 <= fps <= 30, fps
    assert clip.state == STOPPED and clip.reconnects == 0
    numbers = [frame_number(image) for _, _, image in iter(lambda: clip.get(timeout=0), None)]
    assert numbers[:25] == list(range(20)) + list(range(5))  # played again from the start


def test_file_without_loop_ends_and_fps_cap_holds_back_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for number in range(15):
        cv2.imwrite(str(folder / f"{number:03d}.jpg"), counter_image(number))
    with CameraReader("folder", folder, queue_size=100) as reader:  # a folder plays at 25 fps
        assert wait_until(lambda: reader.state == STOPPED, 5)
        assert reader.ended and reader.frames == 15 and reader.last_error is None
        items = list(iter(lambda: reader.get(timeout=0), None))
    assert [frame_number(image) for _, _, image in items] == list(range(15))
    assert reader.get(timeout=1) is None  # stopped and empty: no wait

    video = write_video(tmp_path / "clip.avi", frames=50, fps=25)
    with CameraReader("capped", video, fps_cap=10, queue_size=100) as capped:
        assert wait_until(lambda: capped.ended, 5)
    queued = capped.stats()["queued"]
    assert capped.frames == 50 and capped.capped + queued == 50
    assert 17 <= queued <= 23, queued  # 2 s of video at <= 10 fps


def test_stop_ends_the_thread_while_reconnecting_or_stuck_opening():
    refused = f"http://127.0.0.1:{free_port()}/video.mjpg"
    reader = CameraReader("gone", refused, backoff=(10, 30)).start()
    assert wait_until(lambda: reader.last_error is not None, 5)
    assert reader.state == CONNECTING and "cannot open" in reader.last_error
    started = time.monotonic()
    assert reader.stop(timeout=2)
    assert time.monotonic() - started < 1.0 and reader.state == STOPPED and not reader.is_alive()

    # a server that accepts connections and never answers: FFmpeg's open blocks inside OpenCV
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/video.mjpg"
    try:
        reader = CameraReader("silent", url, read_timeout=5.0).start()
        time.sleep(0.5)
        started = time.monotonic()
        assert reader.stop(timeout=2)
        assert time.monotonic() - started < 1.0 and reader.state == STOPPED
        assert reader.get(timeout=1) is None
    finally:
        listener.close()


def test_watchdog_gives_up_on_an_open_that_hangs():
    """OpenCV blocks inside FFmpeg's open: the watchdog abandons it at read_timeout; the
    abandoned I/O thread ends by itself when FFmpeg's timeout (a second later) fires."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/video.mjpg"
    try:
        with CameraReader("silent", url, read_timeout=0.5, backoff=(3, 3)) as reader:
            assert wait_until(lambda: reader.last_error is not None, 3), reader.stats()
            assert reader.state == CONNECTING and "did not open within 0.5 s" in reader.last_error
            assert reader.stats()["stuck"] == 1
            assert wait_until(lambda: reader.stats()["stuck"] == 0, 2.5)
    finally:
        listener.close()


@pytest.mark.parametrize("kwargs, message", [({"queue_size": 0}, "queue_size"), ({"fps_cap": -1}, "fps_cap"),
                                             ({"backoff": (5, 1)}, "backoff"), ({"read_timeout": 0}, "read_timeout")])
def test_bad_settings_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        CameraReader("gate", 0, **kwargs)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        CameraReader("gate", tmp_path / "nope.mp4")
