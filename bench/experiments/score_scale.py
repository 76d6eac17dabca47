"""Scoring at another frame size than trained (``score.scale``), scoring only: each run's
model scores the test split at each scale, and the micro / macro AUC are printed.

    python -m bench.experiments.score_scale RUN [RUN ...] --data ../shared/data/ped2 \
        --scales 1,1.25,1.5 [--cache-dir CACHE] [--json OUT.json]

The network is fully convolutional, so a model trained at 128x192 can score frames decoded at
160x240 (scale 1.25; each side rounded to a multiple of 16, docs/method.md#scoring-options). Scale 1 is
the paper protocol; every other scale is beyond the paper, and ``ddlvad evaluate --scale``
writes it into the report. Each cell is one ``ddlvad evaluate`` (paper protocol otherwise,
no plots); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.common import machine
from ddlvad.commands import silent
from ddlvad.commands.evaluate import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders (or checkpoint files)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--scales", default="1,1.25", help="comma-separated factors (default: 1,1.25)")
    ap.add_argument("--cache-dir")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    scales = [float(s) for s in args.scales.split(",")]
    print(machine())
    print(f"{'run':<40} {'scale':>6} {'scored at':>10} {'micro':>7} {'macro':>7}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            for scale in scales:
                report = evaluate(run, args.data, protocol_overrides={"scale": scale}, cache_dir=args.cache_dir,
                                  out=Path(tmp) / "eval", plots=False, progress=False, log=silent,
                                  localisation=False)
                size = report["model"]["scored_size"]
                rows.append({"run": run, "scale": scale, "scored_size": size, "steps": report["model"]["steps"],
                             "auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"],
                             "videos": {v: r.get("auc") for v, r in report["videos"].items()}})
                print(f"{run[-40:]:<40} {scale:>6g} {size[0]:>4}x{size[1]:<5} {100 * report['auc_micro']:>7.2f} "
                      f"{100 * report['auc_macro']:>7.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "data": args.data, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
