"""The page of ``ddlvad watch`` in headless Chromium (Debian's ``/usr/bin/chromium``), driven with
Playwright for Python against the real app on a free loopback port, with a token.

Playwright rather than Selenium: it drives the installed Chromium over its DevTools pipe with no
separate driver process whose version must match the browser, and it waits for conditions inside
the page (``wait_for_function``), which the live view, the event poll and clip playback need. It
never downloads a browser here (``executable_path`` only; ``playwright install`` is never run).

One test walks what a person does: opens ``/?token=...``, sees the live image change, the score
trace drawn and the stats line; an event the test adds to the store appears with its snapshot; its
VP8 WebM clip plays; "False alarm" is recorded in the store; the threshold suggestion that this
third false alarm makes possible is applied only when "Apply" is clicked."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web page needs fastapi (pyproject must list fastapi, uvicorn, prometheus-client)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the page test drives Chromium with playwright")

from ddlvad.watch.store import EventStore, prepare_media_dir  # noqa: E402
from ddlvad.watch.web import serve  # noqa: E402
from test_watch_web import PASSWORD, SOURCES, TOKEN, ToyView, add_event  # noqa: E402


def _chromium() -> str | None:
    found = shutil.which("chromium")
    return found or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
"""Launch flags (we run as root: no sandbox). Playwright adds ``--headless`` and the fresh
``--user-data-dir`` of ``launch_persistent_context``."""

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed (apt-get install chromium)")]


def _wait(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _until(page, expression: str, timeout: float = 20.0) -> None:
    """Poll the JavaScript ``expression`` in the page until it is true. (``page.wait_for_function``
    evaluates its predicate with ``eval``, which the page's Content-Security-Policy forbids; CDP's
    ``evaluate`` is not subject to it, and the policy stays on for the page's own code.)"""
    guarded = f"(() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }})()"  # not there yet
    assert _wait(lambda: page.evaluate(guarded), timeout), f"never true in the page: {expression}"


def _image(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.int16)


def test_the_page_in_headless_chromium(tmp_path):
    store = EventStore(tmp_path / "events.sqlite")
    view = ToyView(store, prepare_media_dir(tmp_path / "media"), SOURCES)
    now = time.time()
    for i, (score, review) in enumerate([(0.04, "false_alarm"), (0.05, "false_alarm"), (0.09, "confirmed")]):
        add_event(view, "gate", now - 600 + i, score, review, media=False)
    errors: list[str] = []
    try:
        with serve(view, "127.0.0.1", 0, token=TOKEN) as server, sync_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=_chromium(), headless=True, args=FLAGS,
                viewport={"width": 1200, "height": 1000})
            try:
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.set_default_timeout(20_000)
                page.goto(server.url + f"?token={TOKEN}", wait_until="domcontentloaded")

                # the token left the address bar; the server set the cookie
                assert TOKEN not in page.url
                cookie = next(c for c in context.cookies() if c["name"] == "ddlvad_token")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

                # the live view (MJPEG <img>) shows frames that change
                live = page.locator('.camera[data-name="gate"] img.live')
                _until(page, "document.querySelector('.camera[data-name=\"gate\"] img.live').naturalWidth === 160")
                assert "/api/cameras/gate/live?token=" in live.get_attribute("src")
                first = _image(live.screenshot())
                time.sleep(0.6)
                second = _image(live.screenshot())
                assert first.shape == second.shape and np.abs(first - second).max() > 100  # the bar moved

                # its score trace is drawn, its stats line is filled, no password anywhere
                _until(page, """(() => {
                    const c = document.querySelector('.camera[data-name="gate"] canvas.trace');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true;
                    return false; })()""")
                assert "10.0 scored" in page.locator('.camera[data-name="gate"] .stats').inner_text()
                assert "rtsp://admin:***@10.0.0.5/stream1" in page.content() and PASSWORD not in page.content()

                # two false alarms: no suggestion yet
                suggestion = page.locator('.camera[data-name="gate"] .suggestion')
                _until(page, "document.querySelector('.camera[data-name=\"gate\"] .suggestion').textContent"
                                       ".includes('at least 3')")
                assert page.locator('.camera[data-name="gate"] button.apply').is_hidden()

                # an event the service stores appears, with its snapshot
                event_id = add_event(view, "gate", time.time(), 0.048)
                item = page.locator(f'li.event[data-id="{event_id}"]')
                item.wait_for()
                _until(page, f"document.querySelector('li.event[data-id=\"{event_id}\"] img.snapshot')"
                                       f".naturalWidth === 160")

                # its clip plays in a <video>
                item.get_by_role("button", name="Play clip").click()
                _until(page, f"document.querySelector('li.event[data-id=\"{event_id}\"] video').currentTime > 0")
                video = item.locator("video")
                assert video.is_visible() and f"/api/events/{event_id}/clip?token=" in video.get_attribute("src")

                # "False alarm" is recorded in the store, and shown as pressed
                item.get_by_role("button", name="False alarm").click()
                assert _wait(lambda: store.event(event_id)["review"] == "false_alarm")
                _until(page, f"document.querySelector('li.event[data-id=\"{event_id}\"] button.false-alarm')"
                                       f".getAttribute('aria-pressed') === 'true'")

                # the third false alarm makes a suggestion (just above 0.05); applied only on click
                apply = page.locator('.camera[data-name="gate"] button.apply')
                apply.wait_for(state="visible")
                assert "0.05050" in suggestion.inner_text() and store.thresholds("gate") == []
                apply.click()
                assert _wait(lambda: len(store.thresholds("gate")) == 1)
                record = store.thresholds("gate")[0]
                assert record["origin"] == "suggested-applied" and record["value"] == pytest.approx(0.0505)
                _until(page, "document.querySelector('.camera[data-name=\"gate\"] .current').textContent"
                                       " === '0.05050'")
                assert view.thresholds["gate"] == pytest.approx(0.0505)
                page.screenshot(path=str(tmp_path / "page.png"), full_page=True)  # for a person to look at on failure
            finally:
                context.close()
    finally:
        view.close()
        store.close()
    assert errors == []


def test_the_page_of_a_running_service(tmp_path, scene, tiny_run):
    """``ddlvad watch`` itself (a trained model scoring a camera with a planted anomaly) behind the
    page in headless Chromium: the live image changes, the planted anomaly's event appears with its
    snapshot, and its clip plays."""
    from ddlvad.commands.watch import watch_config
    from test_watch_service import Running, planted, scene_frames, write_video

    run, _ = tiny_run
    frames = scene_frames(scene)[:60]
    image = planted(frames, set(range(25, 40)))
    video = write_video(tmp_path / "yard.avi", [image(i) for i in range(len(frames))])
    cfg = watch_config(str(video), str(run), fps=10)
    cfg.http.port = 0
    cfg.database, cfg.data = tmp_path / "events.sqlite", tmp_path / "media"
    cfg.cameras["yard"].loop = True
    cfg.cameras["yard"].events.post_roll = 0.5
    service = Running(cfg)
    errors: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=_chromium(), headless=True, args=FLAGS,
                viewport={"width": 1200, "height": 1000})
            try:
                page = context.new_page()
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.set_default_timeout(60_000)
                page.goto(f"http://127.0.0.1:{service.ready.port}/", wait_until="domcontentloaded")
                live = page.locator('.camera[data-name="yard"] img.live')
                _until(page, "(() => { const i = document.querySelector('.camera[data-name=\"yard\"] img.live');"
                             " return i !== null && i.naturalWidth > 0; })()", 60)
                first = _image(live.screenshot())
                assert _wait(lambda: np.abs(_image(live.screenshot()) - first).max() > 40, 30), "the live image is frozen"
                item = page.locator("li.event").first
                item.wait_for(timeout=120_000)  # the planted anomaly's event
                _until(page, "(() => { const i = document.querySelector('li.event img.snapshot');"
                             " return i !== null && i.naturalWidth > 0; })()", 60)
                _until(page, "document.querySelector('li.event button') !== null", 10)
                assert _wait(lambda: page.evaluate("document.querySelector('li.event').dataset.id") is not None)
                # the clip exists once its post-roll has passed and the list has refreshed
                event_id = int(page.evaluate("document.querySelector('li.event').dataset.id"))
                with EventStore(cfg.database) as store:
                    assert _wait(lambda: store.event(event_id)["clip"] is not None, 60)
                page.reload(wait_until="domcontentloaded")
                item = page.locator(f'li.event[data-id="{event_id}"]')
                item.wait_for()
                item.get_by_role("button", name="Play clip").click()
                _until(page, f"document.querySelector('li.event[data-id=\"{event_id}\"] video').currentTime > 0", 30)
                page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            finally:
                context.close()
    finally:
        service.close()
    assert errors == []
