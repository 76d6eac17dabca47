"""Reproduce the paper's Ped2 result with the reference settings on one CUDA GPU, in one call.

    python -m bench.gpu.reproduce_paper --data ../shared/data/ped2 --out runs/paper-ped2
    python -m bench.gpu.reproduce_paper --data ../shared/data/ped2 --out runs/paper-ped2 --resume
    python -m bench.gpu.reproduce_paper --dry-run            # CPU: the same path, tiny preset, a few steps

Trains the ``paper`` preset exactly as the reference code does (C3DSU, latent 512, 256x256
RGB (grey repeated), T = 3, Adam 1e-2 halved once at 80 %, batch 10, 10 epochs, lambda
0.01, the per-pixel distinction loss with eps 1e-6; docs/method.md §5), on tracked motion
boxes (``ddlvad track``), then evaluates with the paper protocol (median filter 17, patch 16
on both grids, edge frames dropped) and prints one line per figure: micro and macro AUC,
training minutes, scoring frames/s, peak GPU memory, and the machine. Writes everything a
normal run writes into ``--out`` plus ``reproduce.json``. A run cut short (a time limit, Ctrl-C)
keeps its checkpoint; ``--resume`` with the same flags continues it and then evaluates. On an
H200 in float32 the 10 epochs take about 12 minutes of training (bench/RESULTS.md, "GPU
reproduction"), more than one 10-minute call of a lent machine: plan two calls.

Precision: float32 weights and losses. PyTorch's default lets cuDNN convolutions use TF32
on Ampere and newer GPUs (``torch.backends.cudnn.allow_tf32``, on by default); matmuls stay
full float32. ``--bf16`` (autocast) and ``--compile`` (``torch.compile``) are off unless
asked for: they have not been checked to keep the result. ``--cudnn-benchmark`` lets cuDNN
time its convolution algorithms for the run's fixed shapes and keep the fastest
(``torch.backends.cudnn.benchmark``): the same math, other rounding, not bit-reproducible
between runs; off unless asked for, and its speed-up on this model is not measured yet (no GPU
has been lent since it was added).

Refuses to start without CUDA (one line, exit 2) unless ``--dry-run``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import SHARED_DATA, machine
from ddlvad import Config
from ddlvad.commands.evaluate import evaluate
from ddlvad.commands.train import train
from ddlvad.data.layouts import index_dataset
from ddlvad.data.synthetic import SceneSpec, synthesize
from ddlvad.errors import UserError
from ddlvad.files import atomic_write
from ddlvad.objects.dataset import track_split

PAPER = {"ped2": 98.46}
"""The paper's micro AUC (%) for C3DSU with DDL."""


def config(dry_run: bool, bf16: bool, compile_: bool, steps: int | None) -> Config:
    cfg = Config.preset("tiny" if dry_run else "paper")
    cfg.train.precision = "bf16" if bf16 else "fp32"
    cfg.train.compile = compile_
    if steps is not None:
        cfg.train.steps = steps
    return cfg.validate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(SHARED_DATA / "ped2"), help="Ped2 root (default: ../shared/data/ped2)")
    ap.add_argument("--out", help="run folder, replaced unless --resume (default: runs/paper-ped2; "
                                   "with --dry-run a temporary folder)")
    ap.add_argument("--resume", action="store_true", help="continue the interrupted run in --out, then evaluate")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny preset on a synthetic scene, a few steps")
    ap.add_argument("--steps", type=int, help="override the 10-epoch budget (for a quick look)")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast (unchecked)")
    ap.add_argument("--compile", action="store_true", help="torch.compile (unchecked)")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="let cuDNN pick the fastest convolution algorithms (same math, other rounding; unmeasured)")
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("reproduce_paper: no CUDA device: this script trains the paper-size model on a GPU "
              "(use --dry-run to check it on the CPU)", file=sys.stderr)
        return 2
    try:
        return run(args)
    except UserError as exc:
        print(f"reproduce_paper: error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    cfg = config(args.dry_run, args.bf16, args.compile, args.steps if not args.dry_run else (args.steps or 4))
    work = Path(tempfile.mkdtemp(prefix="ddlvad-reproduce-")) if args.dry_run else None
    data = Path(args.data)
    if args.dry_run:
        data = work / "scene"
        synthesize(data, seed=1, spec=SceneSpec(train_videos=2, test_videos=2, frames=24))
    out = Path(args.out) if args.out else work / "run" if args.dry_run else Path("runs/paper-ped2")
    cfg.data.cache_dir = str((work or out.parent) / "cache")
    log = (lambda m: None) if args.dry_run else (lambda m: print(m, file=sys.stderr, flush=True))
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    track_split(index_dataset(data, splits=("training",)), "training", cfg, progress=False, log=log)
    summary = train(cfg, data, out, resume=args.resume, force=not args.resume, progress=not args.dry_run, log=log)
    report = evaluate(out, data, plots=False, progress=False, log=log)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    result = {
        "auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"], "protocol": report["protocol"]["name"],
        "paper_auc_micro": PAPER["ped2"] / 100, "training_minutes": summary["minutes"], "steps": summary["steps"],
        "epochs": summary["epochs"], "anomaly_weight": summary["anomaly_weight"],
        "scoring_fps": report["scoring_fps"], "peak_gpu_memory_gib": peak,
        "precision": cfg.train.precision, "compile": cfg.train.compile, "tf32_convolutions": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "total_minutes": round((time.perf_counter() - t_start) / 60, 2), "machine": machine(),
        "dry_run": args.dry_run, "preset": cfg.preset_name,
    }
    atomic_write(out / "reproduce.json", json.dumps(result, indent=2))
    pct = lambda x: "n/a" if x is None else f"{100 * x:.2f} %"  # noqa: E731
    print(f"machine: {result['machine']}")
    print(f"preset {result['preset']}{' (dry run)' if args.dry_run else ''}: {result['steps']} steps "
          f"({result['epochs']:.1f} epochs), s = {result['anomaly_weight']:.3f}")
    print(f"AUC micro {pct(result['auc_micro'])} (paper {PAPER['ped2']:.2f} %), macro {pct(result['auc_macro'])}, "
          f"{result['protocol']} protocol")
    print(f"training {result['training_minutes']:.2f} min, scoring {result['scoring_fps']} frames/s, peak GPU memory "
          f"{'n/a' if peak is None else f'{peak:.1f} GiB'}, total {result['total_minutes']:.2f} min")
    print(f"written: {out / 'reproduce.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
