"""Scoring speed per inference engine (:mod:`ddlvad.engines`) against torch, per model size.

For the demo's model (``ddlvad.config.DEMO``: the ``cpu`` preset at latent 32, 128x192 grey)
and the ``cpu`` preset's (latent 64, 160x240 grey), untrained (speed does not depend on the
weights): frames scored per second by :class:`ddlvad.score.Scorer` (``stream``, scores
only, no anomaly maps) over a clip of random frames, at each batch size of ``--batches``
(1: a live stream, one window per pass; 8, 16: files), with each engine:

- ``torch``: the model in the layout :mod:`ddlvad.conv_layout` chooses for scoring here;
- ``onnxruntime``: as :func:`ddlvad.engines.build_engine` makes it (no spinning threads);
  ``onnxruntime-spin``: the same with ORT's spinning thread pool (its default), timed on its
  own after the others (its spinning threads would slow whichever engine runs next);
- ``openvino``: as built (latency hint); ``openvino-throughput``: the throughput hint.

``--threads``: torch's thread count (the engines take the same). Rounds alternate between
the engines, so that drift of a shared machine hits them all; the fastest round is kept.
Also prints what building costs: exporting and checking a model the first time, and
opening it from the cache (a service restart). The cache is a temporary folder. Asserts nothing.

    python -m bench.speed.engines                       # both sizes, batches 1, 8, 16
    python -m bench.speed.engines --sizes demo --batches 1,8 --rounds 2 --frames 18
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import layout_name, machine
from ddlvad import Config, build_model
from ddlvad import engines as eng
from ddlvad.config import DEMO
from ddlvad.conv_layout import choose as choose_layout
from ddlvad.data.frames import FrameSpec
from ddlvad.models import apply_layout, conv_layout_of
from ddlvad.score import Scorer


def sized(name: str, cache: Path) -> Config:
    cfg = Config.preset(DEMO["preset"] if name == "demo" else name)
    if name == "demo":
        cfg.apply(DEMO["overrides"])
    cfg.train.start_scale = 1.0  # score at the full size
    cfg.data.cache_dir = str(cache)
    return cfg


def variants(model, cfg: Config) -> dict:
    """Every engine of the alternating table (the exported ones from the cache)."""
    out = {"torch": model}
    if eng._installed("onnxruntime"):
        out["onnxruntime"] = eng.build_engine(model, cfg, "onnxruntime")
    if eng._installed("openvino"):
        out["openvino"] = eng.build_engine(model, cfg, "openvino")
        out["openvino-throughput"] = _variant(out["openvino"], FrameSpec.for_scoring(cfg), model.frames, lambda path:
                                              eng._openvino(path, torch.get_num_threads(), hint="THROUGHPUT"))
    return out


def spinning(model, cfg: Config) -> eng.Engine:
    built = eng.build_engine(model, cfg, "onnxruntime")
    return _variant(built, FrameSpec.for_scoring(cfg), model.frames,
                    lambda path: eng._onnxruntime(path, torch.get_num_threads(), spinning=True))


def timed(engines: dict, cfg: Config, clip: np.ndarray, batch: int, rounds: int) -> dict:
    """The fastest of ``rounds`` alternating rounds per engine: seconds to score ``clip``."""
    best = dict.fromkeys(engines, float("inf"))
    for engine in engines.values():  # warm-up
        Scorer(engine, cfg.score).score_video(clip[:batch + cfg.data.frames - 1])
    for _ in range(rounds):
        for name, engine in engines.items():
            t0 = time.perf_counter()
            for _ in Scorer(engine, cfg.score, batch).stream(clip, maps=False):
                pass
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _variant(built: eng.Engine, spec: FrameSpec, frames: int, runner) -> eng.Engine:
    folder = built.folder
    return eng.Engine(built.name, built.version, frames, (spec.channels, spec.height, spec.width),
                      runner(folder / "encoder.onnx"), runner(folder / "decoder.onnx"), folder, built.check)


def build_costs(model, cfg: Config, cache: Path) -> dict:
    """Seconds to build each exported engine the first time (export + check) and from the cache."""
    costs = {}
    for name in eng.PACKAGES:
        if eng._installed(name):
            t0 = time.perf_counter()
            eng.build_engine(model, cfg, name)
            t1 = time.perf_counter()
            eng.build_engine(model, cfg, name)
            costs[name] = (t1 - t0, time.perf_counter() - t1)
    return costs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="demo,cpu", help="demo and/or preset names")
    ap.add_argument("--batches", default="1,8,16", help="windows per pass")
    ap.add_argument("--frames", type=int, default=34, help="frames of the clip scored per round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per engine (the fastest is kept)")
    ap.add_argument("--threads", type=int, help="torch's threads (default: as set up)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"machine: {machine()}; load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"engines: {', '.join(f'{n} {eng._version(n)}' for n in eng.ENGINES if n == 'torch' or eng._installed(n))}")
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp)
            cfg = sized(size, cache)
            torch.manual_seed(0)
            model = apply_layout(build_model(cfg), choose_layout(cfg, "score")).eval()
            d, spec = cfg.data, FrameSpec.for_scoring(cfg)
            clip = np.random.default_rng(0).integers(0, 256, (args.frames, spec.height, spec.width, spec.channels),
                                                     dtype=np.uint8)
            windows = args.frames - d.frames + 1
            print(f"\n{size}: {cfg.model.arch} latent {cfg.model.latent}, {spec.height}x{spec.width}x{spec.channels}, "
                  f"T={d.frames}, torch layout {layout_name(conv_layout_of(model))}; {args.frames} frames "
                  f"({windows} windows) per round, fastest of {args.rounds}")
            costs = build_costs(model, cfg, cache)
            print("  build: " + "; ".join(
                f"{n} first {a:.1f} s ({'export + check' if i == 0 else 'check, same graphs'}), restart {b:.2f} s"
                for i, (n, (a, b)) in enumerate(costs.items())))
            for batch in batches:
                best = timed(variants(model, cfg), cfg, clip, batch, args.rounds)
                if eng._installed("onnxruntime"):
                    best.update(timed({"onnxruntime-spin": spinning(model, cfg)}, cfg, clip, batch, args.rounds))
                line = "  ".join(f"{name} {windows / s:6.1f} ({best['torch'] / s:4.2f}x)" for name, s in best.items())
                print(f"  batch {batch:2}: frames/s (x torch)  {line}", flush=True)


if __name__ == "__main__":
    main()
