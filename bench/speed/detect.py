"""End-to-end speed of `ddlvad detect` on a Ped2 test clip, next to the model alone.

Prints figures, asserts nothing. Stages, each timed on the same 180 frames:

- model only: ``ddlvad.score.score_video`` on frames decoded beforehand (the evaluation path);
- stream: ``AnomalyDetector.stream`` over the frame folder (decode + convert + score),
  batched as for a file, and with batch 1 as for a live stream;
- detect: ``ddlvad.commands.detect.detect`` (stream + scores.csv + events.json), with and
  without the overlay video.

The model is in the layout :mod:`ddlvad.conv_layout` chooses for scoring on this machine.

    python -m bench.speed.detect                        # an untrained model of the cpu preset
    python -m bench.speed.detect --run runs/ped2        # a trained run
    python -m bench.speed.detect --clip path/to/frames/folder
    python -m bench.speed.detect --preset tiny --max-frames 30   # a quick check
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import SHARED_DATA, layout_name, machine, untrained_run
from ddlvad import AnomalyDetector, Config
from ddlvad.commands.detect import detect
from ddlvad.data.frames import decode_video
from ddlvad.data.layouts import VideoRecord, image_files
from ddlvad.models import conv_layout_of
from ddlvad.score import score_video

CLIP = SHARED_DATA / "ped2" / "testing" / "frames" / "01"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="run folder (default: an untrained model of --preset, nothing is trained)")
    ap.add_argument("--preset", default="cpu", help="preset of the untrained model when no --run is given")
    ap.add_argument("--clip", default=str(CLIP), help="a folder of frames (default: Ped2 test video 01)")
    ap.add_argument("--max-frames", type=int, help="use only the first N frames of the clip")
    args = ap.parse_args()
    clip = Path(args.clip)
    if not clip.is_dir():
        print(f"skipped: no clip at {clip} (pass --clip FOLDER)")
        return
    limit = args.max_frames

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else untrained_run(Path(tmp), Config.preset(args.preset))
        detector = AnomalyDetector.load(run)
        cfg, sc = detector.cfg, detector.cfg.score
        record = VideoRecord("clip", "testing", clip, image_files(clip)[:limit])
        seconds_decode, frames = timed(lambda: decode_video(record, detector.spec))
        n = len(frames)
        score_video(detector.model, frames[:detector.frames + 1], sc)  # warm-up
        seconds_model, scores = timed(lambda: score_video(detector.model, frames, sc))
        threshold = detector.threshold
        if threshold is None:  # untrained: a threshold that makes some events, so events are timed too
            threshold = float(np.nanpercentile(scores, 80))
            detector.threshold = threshold

        def stream(batch: int) -> int:
            return sum(1 for _ in detector.stream(clip, batch_size=batch, max_frames=limit))

        seconds_stream, _ = timed(lambda: stream(sc.batch_size))
        seconds_live, _ = timed(lambda: stream(1))
        quiet = {"say": lambda line: None, "log": lambda line: None}
        seconds_plain, _ = timed(lambda: detect(run, clip, Path(tmp) / "plain", threshold=threshold, overlay=False,
                                                max_frames=limit, **quiet))
        seconds_full, report = timed(lambda: detect(run, clip, Path(tmp) / "full", threshold=threshold,
                                                    max_frames=limit, **quiet))

    d = cfg.data
    print(f"machine: {machine()}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"python {sys.version.split()[0]}")
    print(f"clip {clip} ({n} frames); model {cfg.model.arch} {cfg.ddl.mode} latent {cfg.model.latent}, "
          f"{d.height}x{d.width}x{d.channels}, T={d.frames}, score batch {sc.batch_size}, "
          f"layout {layout_name(conv_layout_of(detector.model))}"
          f"{'' if args.run else f' (untrained {args.preset} preset)'}")
    rows = [
        ("decode + convert only", seconds_decode),
        ("model only (score_video, pre-decoded)", seconds_model),
        (f"stream, batch {sc.batch_size} (decode + score)", seconds_stream),
        ("stream, batch 1 (live latency)", seconds_live),
        ("detect --no-overlay (+ csv, json)", seconds_plain),
        ("detect (+ overlay.mp4)", seconds_full),
    ]
    for name, seconds in rows:
        print(f"  {name:42} {n / seconds:8.1f} frames/s  ({seconds:6.2f} s)")
    print(f"  events: {len(report['events'])} at threshold {threshold:.4g}; overlay "
          f"{report['frames']} frames; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
