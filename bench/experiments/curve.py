"""Accuracy against training time: evaluate every weight snapshot of a run.

    python -m bench.experiments.curve RUN --data ../shared/data/ped2

A run trained with ``--set train.snapshot_every=N`` keeps ``RUN/snapshots/step_*.pt``; each
is scored on the test split and evaluated under the ``paper`` protocol (micro and macro)
and the ``raw`` one (the same scores, unsmoothed). Prints a table (steps, training minutes, AUCs, anomaly weight) and
writes it to ``RUN/curve.json``.

When the run was validated at the snapshot steps (``train.val_fraction`` > 0 and
``train.val_every`` = ``train.snapshot_every``), the table also holds the label-free
validation signals of ``metrics.jsonl`` at those steps, and the script prints their Spearman
rank correlation with the test micro AUC: how well each signal would pick the better model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import spearmanr

from bench.common import machine
from ddlvad.checkpoint import load_checkpoint
from ddlvad.commands.evaluate import evaluate as evaluate_run
from ddlvad.config import get_protocol
from ddlvad.metrics import frame_metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True)
    args = ap.parse_args()
    run = Path(args.run)
    validation = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val_auc" in row:
            validation[row["step"]] = row
    points = []
    done: set[int] = set()
    for snap in sorted((run / "snapshots").glob("step_*.pt")) + [run / "checkpoint.pt"]:
        ckpt = load_checkpoint(snap)
        if ckpt["step"] in done:  # the final checkpoint repeats the last snapshot
            continue
        done.add(ckpt["step"])
        videos: dict = {}
        paper = evaluate_run(snap, args.data, out=run / "curve" / snap.stem, plots=False, progress=False,
                             keep_scores=videos)
        raw = frame_metrics(videos, get_protocol("raw"))  # the same scores, without smoothing
        points.append({"steps": ckpt["step"], "minutes": round(ckpt.get("elapsed", 0) / 60, 2),
                       "auc_micro": paper["auc_micro"], "auc_macro": paper["auc_macro"],
                       "auc_micro_raw": raw["auc_micro"], "auc_macro_raw": raw["auc_macro"],
                       "anomaly_weight": ckpt.get("anomaly_weight"), "machine": machine(),
                       "val_auc": validation.get(ckpt["step"], {}).get("val_auc"),
                       "val_recon": validation.get(ckpt["step"], {}).get("val_recon")})
    (run / "curve.json").write_text(json.dumps(points, indent=2))
    print(f"machine: {machine()}")
    print(f"{'steps':>6} {'minutes':>8} {'micro':>7} {'macro':>7} {'raw micro':>10} {'raw macro':>10} {'s':>6} "
          f"{'val_auc':>8} {'val_recon':>10}")
    for p in points:
        va = "" if p["val_auc"] is None else f"{p['val_auc']:.4f}"
        vr = "" if p["val_recon"] is None else f"{p['val_recon']:.5f}"
        print(f"{p['steps']:>6} {p['minutes']:>8.1f} {100 * p['auc_micro']:>7.2f} {100 * p['auc_macro']:>7.2f} "
              f"{100 * p['auc_micro_raw']:>10.2f} {100 * p['auc_macro_raw']:>10.2f} {p['anomaly_weight']:>6.3f} "
              f"{va:>8} {vr:>10}")
    both = [p for p in points if p["val_auc"] is not None]
    if len(both) >= 3:
        test = [p["auc_micro"] for p in both]
        for name, sign in (("val_auc", 1), ("val_recon", -1)):  # a lower error should mean a better model
            rho, pval = spearmanr([sign * p[name] for p in both], test)
            print(f"Spearman rank correlation of {'-' if sign < 0 else ''}{name} with test micro AUC over "
                  f"{len(both)} snapshots: {rho:+.3f} (p = {pval:.3g})")


if __name__ == "__main__":
    main()
