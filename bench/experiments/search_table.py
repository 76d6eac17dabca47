"""One table of every ablation run: what differs from the preset, minutes, AUCs, final weight.

    python -m bench.experiments.search_table RUNS/*/results.json [--json bench/results/search-ped2.json]

Reads the ``results.json`` files that ``bench/experiments/ablation.py`` writes and prints one markdown
row per trained cell. The "changes" column is computed from each cell's saved config: every
key that differs from its preset (``model.arch``, ``ddl.mode``, ``train.steps`` and the
cache folder, snapshot and log settings have their own columns or do not change the result).
The figures are those the runs stored; the machine each cell ran on is in its results.json
(``machine``, for cells run since it was recorded). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ddlvad import Config
from ddlvad.config import RETIRED_KEYS

IGNORED = {"model.arch", "ddl.mode", "train.steps", "data.frames", "data.cache_dir", "data.dataset", "preset", "preset_name",
           "train.snapshot_every", "train.checkpoint_every", "train.log_every", *RETIRED_KEYS}
"""Keys with their own column, or that do not change what is computed."""


def flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def changes(config: dict) -> str:
    base = flat(Config.preset(config.get("preset_name") or config.get("preset") or "cpu").to_dict())
    mine = flat(config)
    diff = [f"{k}={mine[k]}" for k in sorted(mine) if k not in IGNORED and mine[k] != base.get(k)]
    return ", ".join(diff) or "(preset)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--json", default=None, help="also write the rows to this file")
    args = ap.parse_args()
    rows = []
    for path in args.results:
        for cell, r in json.loads(Path(path).read_text()).items():
            rows.append({"source": str(Path(path).parent), "cell": cell, "changes": changes(r["config"]),
                         **{k: r[k] for k in ("steps", "minutes", "auc_micro", "auc_macro", "auc_micro_raw",
                                              "anomaly_weight")}})
    print("| cell | changes from the preset | steps | train min | AUC micro | AUC macro | raw micro | final s | run |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['cell']} | {r['changes']} | {r['steps']} | {r['minutes']:.1f} | {100 * r['auc_micro']:.2f} | "
              f"{100 * r['auc_macro']:.2f} | {100 * r['auc_micro_raw']:.2f} | {r['anomaly_weight']:.3f} | "
              f"`{r['source']}` |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
