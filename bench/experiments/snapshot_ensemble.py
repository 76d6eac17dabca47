"""Snapshot ensembles, scoring only: average the frame scores of several snapshots of one run.

    python -m bench.experiments.snapshot_ensemble RUN --steps 1100,1200,1300,1400,1500 [--steps ...]

Reads the raw frame scores that :mod:`bench.experiments.curve` wrote for each snapshot
(``RUN/curve/step_*/scores.csv``), averages them frame by frame (each snapshot's scores first
divided by their median over all test frames, which needs no label, so no snapshot dominates
by scale; ``--no-rescale`` averages them as they are) and evaluates the average under the
``paper`` protocol (smoothing after averaging). Each ``--steps`` list is one ensemble; a list
of one step is that snapshot alone. Beyond the paper (issue accuracy, item 2).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ddlvad.config import get_protocol
from ddlvad.metrics import frame_metrics


def read_scores(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``video -> (raw scores with NaN where a frame has none, labels)`` of one ``scores.csv``."""
    scores, labels = defaultdict(list), defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            scores[row["video"]].append(float(row["score"]) if row["score"] else np.nan)
            labels[row["video"]].append(int(row["label"]))
    return {v: (np.array(scores[v]), np.array(labels[v])) for v in scores}


def ensemble(runs: list[dict[str, tuple[np.ndarray, np.ndarray]]], rescale: bool) -> dict:
    """The frame-by-frame mean of the snapshots' scores (same videos and labels in each)."""
    scales = [np.nanmedian(np.concatenate([s for s, _ in r.values()])) if rescale else 1.0 for r in runs]
    return {v: (np.mean([r[v][0] / k for r, k in zip(runs, scales)], axis=0), runs[0][v][1]) for v in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--steps", action="append", required=True, help="comma-separated snapshot steps")
    ap.add_argument("--no-rescale", action="store_true", help="average the raw scores as they are")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    protocol = get_protocol("paper")
    rows = []
    print(f"{'snapshots':<40} {'micro':>7} {'macro':>7}")
    for steps in args.steps:
        chosen = [int(s) for s in steps.split(",")]
        runs = [read_scores(Path(args.run) / "curve" / f"step_{s:06d}" / "scores.csv") for s in chosen]
        report = frame_metrics(ensemble(runs, not args.no_rescale), protocol)
        rows.append({"steps": chosen, "auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"]})
        print(f"{steps:<40} {100 * report['auc_micro']:>7.2f} {100 * report['auc_macro']:>7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": args.run, "rescale": not args.no_rescale, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
