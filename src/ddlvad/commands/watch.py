"""``ddlvad watch``: a long-running service for many cameras (:mod:`ddlvad.watch`)."""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import UserError
from ..urls import redact
from . import Log, sigterm_as_interrupt, to_stderr

YAML_SUFFIXES = (".yaml", ".yml")


def watch_config(target: str, run: str | None = None, **overrides):
    """The :class:`~ddlvad.watch.config.WatchConfig` of ``ddlvad watch CONFIG.yaml`` or of
    ``ddlvad watch SOURCE --run RUN`` (``overrides``: settings of the one camera)."""
    from ..watch.config import WatchConfig, load_watch_config

    given = {k: v for k, v in overrides.items() if v is not None}
    if Path(target).suffix.lower() in YAML_SUFFIXES:
        if run is not None or given:
            raise UserError(f"{target} is a configuration file: --run, --threshold and --fps go into it "
                            f"(cameras.NAME.run, .threshold, .fps)")
        return load_watch_config(target)
    if run is None:
        raise UserError(f"{redact(target)}: give a configuration file (.yaml) or a source with --run RUN "
                        f"(e.g. `ddlvad watch rtsp://host/stream --run runs/gate`)")
    return WatchConfig.single(int(target) if target.isdigit() else target, run, **given)


def check(cfg, log: Log = print) -> list[dict]:
    """``--check``: the configuration is valid (it is, once loaded), every run's model loads and every
    source gives a frame. Returns one line of facts per camera; a camera that fails raises
    :class:`UserError` naming it."""
    from ..data.video import VideoSource
    from ..stream import AnomalyDetector

    models = {run: AnomalyDetector.load(run) for run in cfg.runs}
    facts = []
    for camera in cfg.cameras.values():
        detector = models[camera.run.resolve()]
        try:
            with VideoSource(camera.source) as video:
                image = next(iter(video), None)
        except UserError as exc:
            raise UserError(f"camera {camera.name}: {redact(str(exc))}") from None
        if image is None:
            raise UserError(f"camera {camera.name}: {camera.label} gave no frame")
        threshold = camera.threshold if camera.threshold is not None else detector.threshold
        facts.append({"camera": camera.name, "source": camera.label, "size": list(image.shape[:2]),
                      "run": str(camera.run), "threshold": threshold})
        log(f"camera {camera.name}: {camera.label}, {image.shape[1]}x{image.shape[0]}, run {camera.run}, "
            f"threshold {threshold:.4g}")
    return facts


def watch(cfg, *, log: Log = to_stderr, ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> None:
    """Run the service of ``cfg`` until Ctrl-C, SIGTERM or ``stop`` is set: readers, scoring, store,
    notifications and the page (``cfg.http``). ``ready`` is set once the page serves."""
    from ..watch.service import Service
    from ..watch.web import serve

    for line in cfg.describe():
        log(f"watch: {line}")
    service = Service(cfg, log=log)
    server = None
    try:
        service.start()
        server = serve(service, cfg.http.host, cfg.http.port, cfg.http.token)
        log(f"watch: {len(service.cams)} camera(s) on {len(service.groups)} model(s); page http://{cfg.http.host}:"
            f"{server.port}/ (Ctrl-C stops)")
        if ready is not None:
            ready.port = server.port  # type: ignore[attr-defined]
            ready.set()
        with sigterm_as_interrupt():
            service.run(until=None if stop is None else stop.is_set)
    except KeyboardInterrupt:
        log("watch: stopping (closing open events and clips)")
    finally:
        if server is not None:
            server.stop()
        service.stop()
