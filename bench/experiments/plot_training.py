"""Training curves of a run: the anomaly weight s (the paper's Figure 5) and the loss parts.

    python -m bench.experiments.plot_training RUN --out bench/figures/NAME

Writes ``NAME_weight.png`` and ``NAME_loss.png`` from ``RUN/metrics.jsonl`` and prints the
weight at a few steps (figures of the run's own log, measured when it trained: no
machine line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ddlvad.plots import loss_figure, save_figure, weight_figure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--out", required=True, help="path prefix of the PNG files")
    args = ap.parse_args()
    rows = [json.loads(line) for line in (Path(args.run) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "loss" in r]
    steps = [r["step"] for r in rows]
    save_figure(weight_figure(steps, [r["weight"] for r in rows]), f"{args.out}_weight.png")
    parts = {k: [r[k] for r in rows] for k in ("recon", "dist") if all(k in r for r in rows)}
    save_figure(loss_figure(steps, parts), f"{args.out}_loss.png")
    marks = sorted({0, len(rows) // 8, len(rows) // 4, len(rows) // 2, len(rows) - 1})
    print("step  weight  recon   dist")
    for i in marks:
        r = rows[i]
        print(f"{r['step']:>4}  {r['weight']:.4f}  {r['recon']:.4f}  {r.get('dist', float('nan')):.3f}")


if __name__ == "__main__":
    main()
