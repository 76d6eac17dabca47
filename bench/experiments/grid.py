"""Train and evaluate one configuration under several machines, seeds and settings; one row each.

    python -m bench.experiments.grid --data DATA --out runs/grid --name demo \\
        --machines native,avx2,avx2-1t --seeds 0,1,2 --set train.until=converged ...

Each cell is ``ddlvad train`` then ``ddlvad evaluate`` in a child process whose environment
emulates a machine (the SIMD level PyTorch and oneDNN use, and the thread count; these must be
set before torch is imported):

    native      this machine as it is
    avx2        ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 (a CPU without AVX-512)
    default     ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 (no vectorised ATen kernels)
    <m>-1t      the same with one thread (OMP_NUM_THREADS=1)

``--variant NAME=SET;SET`` adds configurations (``--set`` strings separated by ``;``) crossed
with machines and seeds. Rows go to ``OUT/results.jsonl`` as they finish (a cell already there
is not run again, so the grid can be stopped and restarted); at the end a table of micro/macro
AUC, steps, minutes and why training stopped, with the mean and spread (max - min) of the micro
AUC per variant, is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO

MACHINES = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2"},
}


def machine_env(name: str) -> dict[str, str]:
    base, _, threads = name.partition("-")
    if base not in MACHINES or threads not in ("", "1t"):
        raise SystemExit(f"unknown machine {name!r}: {', '.join(MACHINES)} (optionally -1t)")
    env = {**os.environ, **MACHINES[base], "PYTHONPATH": str(REPO / "src")}
    if threads == "1t":
        env["OMP_NUM_THREADS"] = "1"
    return env


def run_cell(args, variant: str, sets: list[str], machine: str, seed: int) -> dict:
    run = Path(args.out) / f"{args.name}-{variant}-{machine}-s{seed}"
    env = machine_env(machine)
    ddlvad = [sys.executable, "-m", "ddlvad"]
    train = ddlvad + ["train", "--data", args.data, "--out", str(run), "--cache-dir", args.cache_dir, "--quiet",
                      "--force", "--seed", str(seed), "--preset", args.preset]
    for s in args.set + sets:
        train += ["--set", s]
    t0 = time.perf_counter()
    done = subprocess.run(train, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"variant": variant, "machine": machine, "seed": seed, "error": done.stderr.strip()[-400:]}
    train_seconds = time.perf_counter() - t0
    done = subprocess.run(ddlvad + ["evaluate", str(run), "--data", args.data, "--cache-dir", args.cache_dir,
                                    "--quiet", "--no-plots"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        return {"variant": variant, "machine": machine, "seed": seed, "error": done.stderr.strip()[-400:]}
    summary = json.loads((run / "summary.json").read_text())
    report = json.loads((run / "eval" / "report.json").read_text())
    recon = {r["step"]: r["recon"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if "recon" in r}
    return {"variant": variant, "machine": machine, "seed": seed, "sets": args.set + sets,
            "auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"],
            "videos": {v: r["auc"] for v, r in report["videos"].items()},
            "steps": summary["steps"], "minutes": summary["minutes"], "wall_minutes": round(train_seconds / 60, 2),
            "stopped": summary.get("stopped"), "converged": summary.get("converged"),
            "best_step": (summary.get("validation") or {}).get("best_step"),
            "anomaly_weight": summary["anomaly_weight"],
            "recon_at": {s: recon.get(s) for s in (50, 100, 150, 200, 300, 400, 600) if s in recon},
            "machine_info": summary.get("machine")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--machines", default="native")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--set", action="append", default=[], help="config change of every cell")
    ap.add_argument("--variant", action="append", default=[], help="NAME=SET;SET (default: one variant, 'base')")
    args = ap.parse_args()
    variants = {"base": []} if not args.variant else {
        v.split("=", 1)[0]: [s for s in v.split("=", 1)[1].split(";") if s] for v in args.variant}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    rows = [json.loads(l) for l in results_path.read_text().splitlines()] if results_path.exists() else []
    done = {(r["variant"], r["machine"], r["seed"]) for r in rows if r.get("name", args.name) == args.name}
    for variant, sets in variants.items():
        for machine in args.machines.split(","):
            for seed in map(int, args.seeds.split(",")):
                if (variant, machine, seed) in done:
                    continue
                row = {"name": args.name, **run_cell(args, variant, sets, machine, seed)}
                rows.append(row)
                with open(results_path, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
                if "error" in row:
                    print(f"{variant} {machine} seed {seed}: ERROR {row['error']}", flush=True)
                else:
                    print(f"{variant} {machine} seed {seed}: micro {100 * row['auc_micro']:.2f} macro "
                          f"{100 * row['auc_macro']:.2f}, {row['steps']} steps in {row['minutes']:.1f} min "
                          f"(stopped: {row['stopped']}, best {row['best_step']})", flush=True)
    print_table([r for r in rows if r.get("name") == args.name and "error" not in r])


def print_table(rows: list[dict]) -> None:
    print(f"{'variant':14} {'machine':10} {'seed':>4} {'micro':>6} {'macro':>6} {'steps':>5} {'min':>5} stopped")
    for r in rows:
        print(f"{r['variant']:14} {r['machine']:10} {r['seed']:>4} {100 * r['auc_micro']:6.2f} "
              f"{100 * r['auc_macro']:6.2f} {r['steps']:>5} {r['minutes']:5.1f} {r['stopped']}")
    for variant in sorted({r["variant"] for r in rows}):
        micro = [100 * r["auc_micro"] for r in rows if r["variant"] == variant]
        print(f"{variant}: {len(micro)} runs, micro mean {sum(micro) / len(micro):.2f}, min {min(micro):.2f}, "
              f"max {max(micro):.2f}, spread {max(micro) - min(micro):.2f}")


if __name__ == "__main__":
    main()
