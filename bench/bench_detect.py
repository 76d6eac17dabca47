"""End-to-end speed of `ddlvad detect` on a Ped2 test clip, next to the model alone.

Prints figures, asserts nothing. Stages, each timed on the same 180 frames:

- model only: ``score_video`` on frames decoded beforehand (the evaluation path);
- stream: ``Detector.stream`` over the frame folder (decode + convert + score), batched as
  for a file, and with batch 1 as for a live stream;
- detect: ``workflow.detect`` (stream + scores.csv + events.json), with and without the
  overlay video.

    python bench/bench_detect.py                      # an untrained model of the cpu preset
    python bench/bench_detect.py --run runs/ped2      # a trained run
    python bench/bench_detect.py --clip path/to/frames/folder
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
import torch

CLIP = Path(__file__).resolve().parents[2] / "shared" / "data" / "ped2" / "testing" / "frames" / "01"


def untrained_run(folder: Path) -> Path:
    """A run folder holding an untrained ``cpu``-preset model, in the checkpoint format of
    ``train.py`` (only the keys ``load_model`` reads: version, config, model, threshold)."""
    from ddlvad import Config, __version__, build_model
    from ddlvad.checkpoint import CHECKPOINT, save_atomic

    cfg = Config.preset("cpu")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg)
    state = {"version": __version__, "config": cfg.to_dict(), "model": model.state_dict(), "step": 0,
             "threshold": {"value": None, "percentile": None, "frames": 0, "source": "bench: none"}}
    save_atomic(state, folder / CHECKPOINT)
    return folder


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", help="run folder (default: an untrained cpu-preset model, nothing is trained)")
    ap.add_argument("--clip", default=str(CLIP), help="a folder of frames (default: Ped2 test video 01)")
    args = ap.parse_args()
    clip = Path(args.clip)
    if not clip.is_dir():
        print(f"skipped: no clip at {clip} (pass --clip FOLDER)")
        return

    from ddlvad import Detector
    from ddlvad.data.frames import decode_video
    from ddlvad.data.layouts import VideoRecord, image_files
    from ddlvad.score import score_video
    from ddlvad.workflow import detect

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else untrained_run(Path(tmp))
        detector = Detector.load(run)
        cfg, sc = detector.cfg, detector.cfg.score
        record = VideoRecord("clip", "testing", clip, image_files(clip))
        seconds_decode, frames = timed(lambda: decode_video(record, detector.spec))
        n = len(frames)
        score_video(detector.model, frames[:detector.frames + 1], sc.patch, sc.shifted_grid, sc.batch_size)  # warm-up
        seconds_model, scores = timed(lambda: score_video(detector.model, frames, sc.patch, sc.shifted_grid,
                                                          sc.batch_size))
        threshold = detector.threshold
        if threshold is None:  # untrained: a threshold that makes some events, so events are timed too
            threshold = float(np.nanpercentile(scores, 80))
            detector.threshold = threshold

        def stream(batch: int) -> int:
            return sum(1 for _ in detector.stream(clip, batch_size=batch))

        seconds_stream, _ = timed(lambda: stream(sc.batch_size))
        seconds_live, _ = timed(lambda: stream(1))
        quiet = dict(say=lambda line: None, log=lambda line: None)
        seconds_plain, _ = timed(lambda: detect(run, clip, Path(tmp) / "plain", threshold=threshold, overlay=False,
                                                **quiet))
        seconds_full, report = timed(lambda: detect(run, clip, Path(tmp) / "full", threshold=threshold, **quiet))

    d = cfg.data
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; python {sys.version.split()[0]}")
    print(f"clip {clip} ({n} frames); model {cfg.model.arch} {cfg.ddl.mode} latent {cfg.model.latent}, "
          f"{d.height}x{d.width}x{d.channels}, T={d.frames}, score batch {sc.batch_size}"
          f"{'' if args.run else ' (untrained cpu preset)'}")
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
