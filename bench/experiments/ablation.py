"""The paper's ablation grid (Table 2): {UNet, C3DSU} x {recon, sdl, ddl} at one preset and
one step budget, trained and evaluated on one dataset; writes the table beside the paper's.

    python -m bench.experiments.ablation --data ../shared/data/ped2 --preset cpu --steps 600 --out runs/ablation-ped2

Each cell is a normal run folder (``OUT/<arch>-<mode>``) evaluated with the ``paper``
protocol; cells already finished are reused, so the script can be stopped and restarted.
Writes ``OUT/results.json`` (each cell with the :func:`bench.common.machine` line it ran on)
and ``OUT/table.md``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.common import machine
from ddlvad import Config
from ddlvad.commands.evaluate import evaluate as evaluate_run
from ddlvad.commands.train import train
from ddlvad.config import get_protocol
from ddlvad.metrics import ablation_table, frame_metrics

CELLS = [("c3dsu", "ddl"), ("c3dsu", "recon"), ("c3dsu", "sdl"), ("unet", "ddl"), ("unet", "recon"), ("unet", "sdl")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--steps", type=int, required=True, help="optimiser steps of every cell (the same budget)")
    ap.add_argument("--cells", default=",".join(f"{a}-{m}" for a, m in CELLS))
    ap.add_argument("--snapshot-every", type=int, default=0, help="keep weight snapshots (c3dsu-ddl only)")
    ap.add_argument("--set", action="append", default=[], help="extra config overrides for every cell")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    print(f"machine: {machine()}", flush=True)
    for cell in args.cells.split(","):
        arch, mode = cell.split("-")
        run = out / cell
        if cell in results and (run / "eval" / "report.json").exists():
            continue
        cfg = Config.preset(args.preset)
        cfg.apply({"model.arch": arch, "ddl.mode": mode, "train.steps": args.steps,
                   "data.frames": 1 if arch == "unet" else cfg.data.frames})
        if args.snapshot_every and cell == "c3dsu-ddl":
            cfg.train.snapshot_every = args.snapshot_every
        cfg.override(args.set)
        summary = train(cfg, args.data, run, force=True, progress=False)
        videos: dict = {}
        report = evaluate_run(run, args.data, progress=False, keep_scores=videos)
        raw = frame_metrics(videos, get_protocol("raw"))  # the same scores, without smoothing
        results[cell] = {"arch": arch, "mode": mode, "steps": summary["steps"], "minutes": summary["minutes"],
                         "anomaly_weight": summary["anomaly_weight"],
                         "auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"],
                         "auc_micro_raw": raw["auc_micro"], "auc_macro_raw": raw["auc_macro"],
                         "scoring_fps": report["scoring_fps"], "machine": machine(), "config": cfg.to_dict()}
        results_path.write_text(json.dumps(results, indent=2))
        print(f"{cell}: micro {100 * report['auc_micro']:.2f} macro {100 * report['auc_macro']:.2f} "
              f"(raw {100 * raw['auc_micro']:.2f}) in {summary['minutes']:.1f} min, s={summary['anomaly_weight']:.3f}",
              flush=True)
    dataset = "avenue" if "avenue" in str(args.data).lower() else "ped2"
    table = ablation_table({(r["arch"], r["mode"]): r["auc_micro"] for r in results.values()}, dataset)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
