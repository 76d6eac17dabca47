"""Trained models with and without re-estimated BatchNorm statistics (``train.bn_recalibration``).

    python -m bench.experiments.bn_recalibration RUN_OR_CHECKPOINT... --data ../shared/data/ped2 [--windows 320]

For each run folder or checkpoint/snapshot file: scores the test split as trained (BatchNorm
running statistics as training left them), then re-estimates those statistics on
``--windows`` normal training windows (:func:`ddlvad.models.recalibrate_batchnorm`, what
training does at its end when ``train.bn_recalibration`` is set; the weights do not change)
and scores again. Prints the paper-protocol AUCs of both and writes them as JSON with
``--json``. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import machine
from ddlvad.checkpoint import load_model
from ddlvad.commands.evaluate import score_split
from ddlvad.config import get_protocol
from ddlvad.data.clips import WindowIndex, recalibration_batches
from ddlvad.data.frames import FrameSpec, FrameStore
from ddlvad.data.layouts import index_dataset
from ddlvad.metrics import frame_metrics
from ddlvad.models import recalibrate_batchnorm
from ddlvad.score import Scorer


def aucs(model, cfg, index) -> tuple[float, float]:
    scores = score_split(Scorer(model, cfg.score), cfg, index, progress=False)
    videos = {r.video_id: (scores[r.video_id], r.labels) for r in index.testing}
    report = frame_metrics(videos, get_protocol("paper", patch=cfg.score.patch, shifted_grid=cfg.score.shifted_grid))
    return report["auc_micro"], report["auc_macro"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--windows", type=int, default=320, help="normal training windows to re-estimate with")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    print(f"machine: {machine()}")
    print("| model | steps | s | micro as trained | macro as trained | micro re-estimated | macro re-estimated |")
    print("|---|---|---|---|---|---|---|")
    for run in args.runs:
        model, cfg, ckpt = load_model(run)
        index = index_dataset(args.data, cfg.data.dataset, cfg.data.scene)
        before = aucs(model, cfg, index)
        store = FrameStore.of_split(index, "training", FrameSpec.from_config(cfg.data), cfg.data.cache_dir)
        windows = WindowIndex(store.lengths, cfg.data.frames)
        recalibrate_batchnorm(model, recalibration_batches(store.arrays, windows, args.windows, cfg.train.batch_size,
                                                          cfg.train.seed))
        model.eval()
        after = aucs(model, cfg, index)
        rows.append({"run": run, "arch": cfg.model.arch, "mode": cfg.ddl.mode, "steps": ckpt.get("step"),
                     "anomaly_weight": ckpt.get("anomaly_weight"), "windows": args.windows,
                     "as_trained": {"auc_micro": before[0], "auc_macro": before[1]},
                     "re_estimated": {"auc_micro": after[0], "auc_macro": after[1]}, "machine": machine()})
        print(f"| `{run}` ({cfg.model.arch} {cfg.ddl.mode}) | {ckpt.get('step')} | {ckpt.get('anomaly_weight'):.3f} | "
              f"{100 * before[0]:.2f} | {100 * before[1]:.2f} | {100 * after[0]:.2f} | {100 * after[1]:.2f} |",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
