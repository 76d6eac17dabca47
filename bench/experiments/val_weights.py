"""The validation signal of a trained run at several pseudo-anomaly weights.

``val_auc`` (ddlvad.validation) separates held-out clean windows from the same windows with a
pseudo anomaly of fixed weight ``train.val_weight``; which weight makes a good signal depends
on the scene (bench/RESULTS.md, "Validation signal"). This re-validates a run's kept model, or
every weight snapshot of it, on the run's own held-out windows at each weight given, and, with
``--curve`` (the JSON of ``bench.experiments.curve``: test micro AUC per snapshot), prints the
Spearman rank correlation of each weight's signal with the test AUC. Prints figures, asserts
nothing.

    python -m bench.experiments.val_weights runs/avenue --data ../shared/data/avenue-sample
    python -m bench.experiments.val_weights runs/p2base --data ../shared/data/ped2 --snapshots \\
        --curve bench/results/curve-ped2-validated-2000.json --weights 0.2,0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from scipy.stats import spearmanr

from bench.common import machine
from ddlvad.checkpoint import load_checkpoint, load_model
from ddlvad.commands.train import training_data
from ddlvad.data.clips import TrainingData
from ddlvad.validation import Validator, hold_out


def held_out_windows(cfg, root: str) -> TrainingData:
    """The run's held-out frames and tracks, as its training split them off."""
    if not cfg.train.val_fraction:
        raise SystemExit("the run held nothing out (train.val_fraction=0): it has no validation windows")
    return hold_out(training_data(cfg, root), cfg.train.val_fraction, cfg.data.frames)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache-dir")
    ap.add_argument("--weights", default="0.2,0.5,1.0")
    ap.add_argument("--snapshots", action="store_true", help="every RUN/snapshots/step_*.pt instead of the kept model")
    ap.add_argument("--curve", help="JSON of bench.experiments.curve: Spearman of each signal with the test AUC")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = [float(w) for w in args.weights.split(",")]
    model, cfg, _ = load_model(args.run)
    if args.cache_dir:
        cfg.data.cache_dir = args.cache_dir
    validator = Validator(cfg, held_out_windows(cfg, args.data))
    print(f"{machine()}; {args.run}: {len(validator)} held-out windows")
    models = ({int(p.stem.split("_")[1]): p for p in sorted(Path(args.run, "snapshots").glob("step_*.pt"))}
              if args.snapshots else {None: None})
    test = {p["steps"]: p["auc_micro"] for p in json.loads(Path(args.curve).read_text())} if args.curve else {}
    rows = []
    for step, path in models.items():
        if path is not None:
            model.load_state_dict(load_checkpoint(path)["model"])
        row = {"step": step, "test_micro": test.get(step)}
        row.update({f"val_auc@{w:g}": validator(model, w)["val_auc"] for w in weights})
        rows.append(row)
        print(json.dumps(row), flush=True)
    paired = [r for r in rows if r["test_micro"] is not None]
    if len(paired) > 2:
        for w in weights:
            rho = spearmanr([r[f"val_auc@{w:g}"] for r in paired], [r["test_micro"] for r in paired])
            print(f"s = {w:g}: Spearman {rho.statistic:+.3f} (p = {rho.pvalue:.2g}) over {len(paired)} snapshots")


if __name__ == "__main__":
    main()
