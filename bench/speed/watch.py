"""How many cameras ``ddlvad watch`` serves at 10 frames a second on this machine.

Prints figures, asserts nothing. N looped cameras play a synthetic scene's test video (a file at
10 fps, played in real time: each camera delivers 10 frames a second, as a real one would), for
the demo's model and the ``cpu`` preset's (untrained: speed does not depend on the weights; the
threshold is set so that no event is stored, events cost what a real camera's rare events cost),
in two arrangements: one run shared by all cameras (one model, the windows of all cameras decoded
in one pass) and one run per camera (a model and a scoring thread each). For each N it measures,
after a warm-up, the fraction of frames skipped (dropped by the bounded queues because scoring
fell behind), the frames scored per second, and the median and p95 latency from a frame's
arrival to its result (which includes the one frame a T=3 window waits for: 100 ms at 10 fps).
A camera count is *served* when at most 5 % of the frames are skipped.

    python -m bench.speed.watch                              # both models, both arrangements
    python -m bench.speed.watch --models demo --cameras 1,2,4,6 --seconds 30
    python -m bench.speed.watch --threads 1                  # torch threads of the service
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import torch

from bench.common import machine, untrained_run
from ddlvad import Config
from ddlvad.config import DEMO
from ddlvad.data.synthetic import synthesize
from ddlvad.watch.config import WatchConfig
from ddlvad.watch.service import Service

FPS = 10.0
SERVED = 0.05
"""At most this fraction of frames skipped."""


def models() -> dict[str, Config]:
    return {"demo": Config.preset(DEMO["preset"]).apply(DEMO["overrides"]), "cpu": Config.preset("cpu")}


def camera_video(folder: Path) -> Path:
    """A synthetic scene's first test video as an MJPG file at :data:`FPS`."""
    synthesize(folder / "scene", seed=0)
    frames = sorted((folder / "scene" / "testing" / "frames" / "02").iterdir())
    first = cv2.imread(str(frames[0]))
    path = folder / "camera.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, first.shape[1::-1])
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    return path


def measure(runs: list[Path], video: Path, cameras: int, seconds: float, warmup: float, folder: Path) -> dict:
    """Serve ``cameras`` looped copies of ``video``, camera k scored by ``runs[k % len(runs)]``."""
    cfg = WatchConfig.single(video, runs[0], loop=True, database=folder / "events.sqlite", data=folder / "media")
    template = next(iter(cfg.cameras.values()))
    cfg.cameras = {}
    for k in range(cameras):
        camera = WatchConfig.single(video, runs[k % len(runs)], name=f"cam{k}", loop=True).cameras[f"cam{k}"]
        camera.events, camera.fps = template.events, None
        cfg.cameras[camera.name] = camera
    service = Service(cfg, log=lambda line: None).start()
    try:
        time.sleep(warmup)
        start = {c.name: c.reader.stats() for c in service.cams.values()}
        latencies: list[float] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:  # collect latencies as they come (the window keeps 10 s)
            time.sleep(1.0)
            now = time.time()
            for c in service.cams.values():
                latencies += [lat for t, lat in list(c.rates.latencies) if now - 1.0 <= t < now]
        end = {c.name: c.reader.stats() for c in service.cams.values()}
        elapsed = time.monotonic() - t0
    finally:
        service.stop()
    read = sum(end[n]["frames"] - start[n]["frames"] for n in end)
    skipped = sum(end[n]["skipped"] - start[n]["skipped"] for n in end)
    latencies.sort()
    return {"cameras": cameras, "read_fps": read / elapsed, "skipped": skipped / max(read, 1),
            "scored_fps": (read - skipped) / elapsed,
            "latency_median_ms": 1000 * statistics.median(latencies) if latencies else None,
            "latency_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))] if latencies else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="demo,cpu", help="comma-separated: demo, cpu")
    ap.add_argument("--cameras", default="1,2,3,4,6,8", help="camera counts to try, in order")
    ap.add_argument("--seconds", type=float, default=30.0, help="measured seconds per count")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--arrangements", default="shared,separate")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine(), f"torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = camera_video(tmp)
        chosen = models()
        for name in args.models.split(","):
            cfg = chosen[name]
            counts = [int(n) for n in args.cameras.split(",")]
            for arrangement in args.arrangements.split(","):
                runs = [untrained_run(tmp / f"run-{name}-{k}", cfg, threshold=1e9)
                        for k in range(1 if arrangement == "shared" else max(counts))]
                served = 0
                for n in counts:
                    row = measure(runs, video, n, args.seconds, args.warmup, tmp / f"w-{name}-{arrangement}-{n}")
                    ok = row["skipped"] <= SERVED
                    served = n if ok else served
                    med, p95 = row["latency_median_ms"], row["latency_p95_ms"]
                    print(f"{name:5s} {arrangement:8s} cameras {n}: read {row['read_fps']:.1f} f/s, scored "
                          f"{row['scored_fps']:.1f} f/s, skipped {100 * row['skipped']:.1f} %, latency median "
                          f"{med if med is None else round(med)} ms, p95 {p95 if p95 is None else round(p95)} ms"
                          f"{'' if ok else '  (not served)'}", flush=True)
                    if row["skipped"] > 4 * SERVED:
                        break
                print(f"{name:5s} {arrangement:8s} -> {served} camera(s) at {FPS:g} fps with <= {100 * SERVED:g} % "
                      f"frames skipped", flush=True)


if __name__ == "__main__":
    main()
