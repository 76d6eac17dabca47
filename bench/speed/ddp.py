"""Training wall time with 1 process vs 2 DDP processes (torchrun, gloo) on this machine's CPU.

Prints figures, asserts nothing. Each variant is a real command line run on a synthetic
scene (random boxes, no tracking): ``python -m ddlvad train`` for one process and
``python -m torch.distributed.run --nproc_per_node 2 -m ddlvad train`` for two, with the
same global batch. ``loop s`` is the training loop's own time (metrics.jsonl), ``wall s``
the whole command (start-up, threshold calibration included; untimed runs fill the frame
cache and the layout probe's cache first, one per thread count). On a CPU the two
processes share the same cores, so expect no gain: DDP pays off with one device per process.

    python -m bench.speed.ddp                                 # tiny (20 steps), cpu (5 steps)
    python -m bench.speed.ddp --tiny-steps 50 --cpu-steps 10
    python -m bench.speed.ddp --presets tiny --tiny-steps 2   # a quick check

The child processes import the same ``ddlvad`` as this one: its folder is put first on their
``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ddlvad
from bench.common import machine
from ddlvad.config import Config
from ddlvad.data.synthetic import SceneSpec, synthesize

PACKAGE_ROOT = Path(ddlvad.__file__).resolve().parents[1]
"""The folder holding the ``ddlvad`` this process imported (``src/`` of a checkout)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(data: Path, cache: Path, out: Path, preset: str, steps: int, procs: int, threads: int) -> dict:
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}
    launch = [sys.executable, "-m", "ddlvad"]
    if procs > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                  "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "ddlvad"]
    cmd = launch + ["train", "--data", str(data), "--preset", preset, "--steps", str(steps), "--masks", "random",
                    "--cache-dir", str(cache), "--out", str(out), "--force", "--quiet",
                    "--set", f"train.threads={threads}", "--set", "train.checkpoint_every=100000"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall": wall, "loop": rows[-1]["seconds"], "steps": len(rows), "loss": rows[-1]["loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny-steps", type=int, default=20)
    p.add_argument("--cpu-steps", type=int, default=5)
    p.add_argument("--presets", default="tiny,cpu", help="presets to time (tiny, cpu)")
    args = p.parse_args()
    steps_of = {"tiny": args.tiny_steps, "cpu": args.cpu_steps}

    base = Path(tempfile.mkdtemp(prefix="bench_ddp-"))
    data, cache = base / "scene", base / "cache"
    synthesize(data, seed=0, spec=SceneSpec(train_videos=2, test_videos=1, frames=60))
    print(f"machine: {machine()}; {os.cpu_count()} CPU cores; synthetic scene 2 x 60 training frames; {base}")
    variants = [(1, 1), (1, 2), (2, 1)]  # (processes, threads per process)
    print(f"{'preset':>6} {'batch':>5} {'steps':>5} {'processes x threads':>20} {'loop s':>7} {'ms/step':>8} "
          f"{'wall s':>7} {'last loss':>9}")
    for preset in args.presets.split(","):
        steps = steps_of[preset]
        batch = Config.preset(preset).train.batch_size
        for threads in sorted({t for _, t in variants}):  # untimed: fill the frame cache and the layout probe's
            train(data, cache, base / "warm", preset, 1, 1, threads)
        for procs, threads in variants:
            r = train(data, cache, base / f"{preset}-{procs}x{threads}", preset, steps, procs, threads)
            print(f"{preset:>6} {batch:>5} {r['steps']:>5} {f'{procs} x {threads}':>20} {r['loop']:>7.2f} "
                  f"{1000 * r['loop'] / r['steps']:>8.0f} {r['wall']:>7.1f} {r['loss']:>9.4f}", flush=True)


if __name__ == "__main__":
    main()
