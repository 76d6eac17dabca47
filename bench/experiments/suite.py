"""Train and evaluate one preset on every development dataset, one after the other; one table.

    python -m bench.experiments.suite [--preset cpu] [--set SECTION.FIELD=VALUE ...] [--seeds 0,1]
        [--minutes M] [--only ped2,perspective] [--out bench/results/suite-cpu-DATE.json]
        [--runs runs/suite-cpu] [--cache-dir DIR] [--synth-cache DIR] [--dry-run]

The datasets, in this order: Ped2 (``ped2``) and the Avenue sample (``avenue-sample``) from the
shared data folder (``$DDLVAD_SHARED_DATA``, else ``../shared/data`` beside the checkout), then
every synthetic scene of ``ddlvad synth --scene`` (walkway, perspective, crowd, lighting,
distant, fast), written with seed 0 (the data stay fixed; ``--seeds`` are training seeds) into
``--synth-cache`` (default: ``synth/`` in the frame cache) the first time it is needed. A
dataset that is absent is a skipped row.

Each row is one training and one evaluation, run in this process one after the other (never
two at once: the CPU's cores are shared): :func:`ddlvad.commands.train.train` with the preset
(default ``cpu``, what ``ddlvad train`` uses), the ``--set`` changes, ``train.seed`` = the
row's seed and ``train.minutes`` = ``--minutes`` when given, into ``RUNS/<dataset>-s<seed>``;
then :func:`ddlvad.commands.evaluate.evaluate` with the paper protocol. ``--dry-run`` prints
the plan as the equivalent ``python -m ddlvad`` commands and runs nothing.

Every row goes to ``--out`` (JSON) as soon as it is done, so the suite can be stopped and
started again: a row already there with status ``ok`` is not run again (skipped and failed
rows are retried); a file written with another preset, ``--set`` or ``--minutes`` is refused.
At the end one table: dataset, seed, micro/macro AUC, pixel AUC (40 % rule), training
minutes, steps, what stopped training, the best validation signal, and the machine (CPU
model, SIMD level, threads; :mod:`ddlvad.machine`). The whole suite is hours of CPU on 2
cores (8 datasets x seeds x the preset's ~10 minutes plus scoring); ``--only`` and
``--minutes`` cut it down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from bench.common import SHARED_DATA, machine
from ddlvad.commands import to_stderr
from ddlvad.config import PRESETS, Config
from ddlvad.data.frames import default_cache_dir
from ddlvad.data.synthetic import SCENE_NAMES, synthesize
from ddlvad.errors import UserError
from ddlvad.files import atomic_write

REAL = ("ped2", "avenue-sample")
"""The real datasets, folders of the shared data folder."""
DATASETS = (*REAL, *SCENE_NAMES)
SCENE_SEED = 0
"""Seed every synthetic scene is written with (the suite's data do not change with --seeds)."""


def fail(message: str) -> None:
    """One line on stderr, exit code 2 (as ddlvad's command line does)."""
    print(f"suite: error: {message}", file=sys.stderr)
    sys.exit(2)


def shared_data() -> Path:
    env = os.environ.get("DDLVAD_SHARED_DATA")
    return Path(env) if env else SHARED_DATA


def synth_folder(args: argparse.Namespace, scene: str) -> Path:
    cache = Path(args.synth_cache) if args.synth_cache else default_cache_dir(args.cache_dir) / "synth"
    return cache / f"{scene}-s{SCENE_SEED}"


def config(args: argparse.Namespace, seed: int) -> Config:
    """The preset, the --set changes, the row's seed and --minutes; validated."""
    cfg = Config.preset(args.preset).override(list(args.set))
    cfg.set("train.seed", seed)
    if args.minutes is not None:
        cfg.set("train.minutes", args.minutes)
    if args.cache_dir:
        cfg.set("data.cache_dir", args.cache_dir)
    return cfg.validate()


def plan(args: argparse.Namespace) -> list[dict]:
    """One entry per (dataset, seed): where its data are, whether they exist or must be
    written first, and the run folder."""
    entries = []
    for name in args.only:
        if name in REAL:
            root, make = shared_data() / name, False
            absent = None if root.is_dir() else f"absent: {root} (set DDLVAD_SHARED_DATA)"
        else:
            root = synth_folder(args, name)
            make, absent = not (root / "scene.json").is_file(), None
        for seed in args.seeds:
            entries.append({"dataset": name, "seed": seed, "root": root, "make": make, "absent": absent,
                            "run": Path(args.runs) / f"{name}-s{seed}"})
    return entries


def commands(entry: dict, args: argparse.Namespace) -> list[str]:
    """The ``python -m ddlvad`` commands that do what the suite does for one row."""
    lines = []
    if entry["make"]:
        lines.append(f"python -m ddlvad synth {entry['root']} --scene {entry['dataset']} --seed {SCENE_SEED}")
    train = (f"python -m ddlvad train --data {entry['root']} --preset {args.preset} --seed {entry['seed']} "
             f"--out {entry['run']} --force --quiet")
    train += "".join(f" --set {s}" for s in args.set)
    if args.minutes is not None:
        train += f" --minutes {args.minutes:g}"
    if args.cache_dir:
        train += f" --cache-dir {args.cache_dir}"
    lines.append(train)
    lines.append(f"python -m ddlvad evaluate {entry['run']} --data {entry['root']} --no-plots --quiet"
                 + (f" --cache-dir {args.cache_dir}" if args.cache_dir else ""))
    return lines


def make_scene(root: Path, scene: str) -> None:
    """Write a synthetic scene into ``root`` (via a temporary folder: a half-written scene is
    never taken for a whole one)."""
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    to_stderr(f"suite: writing the {scene} scene into {root}")
    synthesize(tmp, seed=SCENE_SEED, scene=scene)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(root)


def run_row(entry: dict, args: argparse.Namespace) -> dict:
    """Train and evaluate one row; returns its JSON row."""
    from ddlvad.commands.evaluate import evaluate
    from ddlvad.commands.train import train

    row = {"dataset": entry["dataset"], "seed": entry["seed"], "preset": args.preset, "sets": list(args.set),
           "minutes_budget": args.minutes, "root": str(entry["root"]), "run": str(entry["run"])}
    if entry["absent"]:
        return {**row, "status": "skipped", "reason": entry["absent"]}
    try:
        if entry["make"] and not (entry["root"] / "scene.json").is_file():
            make_scene(entry["root"], entry["dataset"])
        t0 = time.perf_counter()
        summary = train(config(args, entry["seed"]), entry["root"], entry["run"], force=True, progress=False)
        report = evaluate(entry["run"], entry["root"], protocol="paper", plots=False, progress=False,
                          cache_dir=args.cache_dir)
    except (UserError, RuntimeError, ValueError, OSError) as exc:  # a row that fails does not stop the suite
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"[:500]}
    validation = summary.get("validation") or {}
    return {**row, "status": "ok", "auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"],
            "pixel_auc": (report.get("localisation") or {}).get("pixel_auc"),
            "training_minutes": summary["minutes"], "wall_minutes": round((time.perf_counter() - t0) / 60, 2),
            "steps": summary["steps"], "stopped": summary["stopped"],
            "best_signal": validation.get("best_signal"), "val_metric": validation.get("metric"),
            "best_step": validation.get("best_step"), "machine": summary["machine"]}


def load_rows(out: Path, header: dict) -> list[dict]:
    """The rows ``out`` already holds (none when it does not exist); refuses a file of another
    configuration."""
    if not out.is_file():
        return []
    data = json.loads(out.read_text())
    theirs = {k: data.get(k) for k in header}
    if theirs != header:
        fail(f"{out} holds rows of another configuration ({theirs}): choose another --out")
    return data.get("rows", [])


def save_rows(out: Path, header: dict, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, json.dumps({**header, "rows": rows}, indent=2))


def _pct(value) -> str:
    return f"{100 * value:6.2f}" if isinstance(value, (int, float)) else f"{'-':>6}"


def print_table(rows: list[dict]) -> None:
    print(f"{'dataset/scene':14} {'seed':>4} {'micro':>6} {'macro':>6} {'pixel':>6} {'min':>5} {'steps':>5} "
          f"{'stopped':9} {'val best':>8}  machine")
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['dataset']:14} {r['seed']:>4} {r['status']}: {r.get('reason', '')}")
            continue
        m = r["machine"]
        best = f"{r['best_signal']:8.4f}" if isinstance(r.get("best_signal"), (int, float)) else f"{'-':>8}"
        print(f"{r['dataset']:14} {r['seed']:>4} {_pct(r['auc_micro'])} {_pct(r['auc_macro'])} {_pct(r['pixel_auc'])} "
              f"{r['training_minutes']:5.1f} {r['steps']:>5} {r['stopped']:9} {best}  "
              f"{m['cpu']}, {m['simd']}, {m['threads']} threads")


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="cpu", choices=list(PRESETS), help="preset to start from (default: cpu)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="config change of every row, as ddlvad train --set (repeatable)")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated (default: 0)")
    ap.add_argument("--minutes", type=float, help="wall-clock budget of each training (train.minutes)")
    ap.add_argument("--only", help=f"datasets, comma-separated (default: all of {', '.join(DATASETS)})")
    ap.add_argument("--out", help="rows as JSON (default: bench/results/suite-<preset>-<date>.json)")
    ap.add_argument("--runs", help="folder of the run folders (default: runs/suite-<preset>)")
    ap.add_argument("--cache-dir", help="frame and track cache (default: $DDLVAD_CACHE or ~/.cache/ddlvad)")
    ap.add_argument("--synth-cache", help="where the synthetic scenes are written (default: CACHE/synth)")
    ap.add_argument("--dry-run", action="store_true", help="print the planned runs and their commands only")
    args = ap.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds {args.seeds}: give whole numbers separated by commas, e.g. 0,1")
    args.only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else list(DATASETS)
    unknown = [n for n in args.only if n not in DATASETS]
    if unknown:
        fail(f"--only {','.join(unknown)}: no such dataset; choose from {', '.join(DATASETS)}")
    args.out = Path(args.out or f"bench/results/suite-{args.preset}-{time.strftime('%Y-%m-%d')}.json")
    args.runs = args.runs or f"runs/suite-{args.preset}"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    try:
        config(args, 0)  # a bad --set fails here, before anything runs
    except UserError as exc:
        fail(str(exc))
    header = {"preset": args.preset, "sets": list(args.set), "minutes_budget": args.minutes}
    rows = load_rows(args.out, header)
    done = {(r["dataset"], r["seed"]) for r in rows if r["status"] == "ok"}
    entries = plan(args)
    if args.dry_run:
        print(f"dry run: {len(entries)} rows, preset {args.preset}, results -> {args.out}")
        for e in entries:
            key = f"{e['dataset']} seed {e['seed']}"
            if (e["dataset"], e["seed"]) in done:
                print(f"{key}: already in {args.out}")
            elif e["absent"]:
                print(f"{key}: skipped ({e['absent']})")
            else:
                print(f"{key}:\n" + "\n".join(f"    {line}" for line in commands(e, args)))
        return
    print(machine(), flush=True)
    for e in entries:
        key = (e["dataset"], e["seed"])
        if key in done:
            print(f"{e['dataset']} seed {e['seed']}: already in {args.out}", flush=True)
            continue
        print(f"{e['dataset']} seed {e['seed']}: " + " && ".join(commands(e, args)), flush=True)
        row = run_row(e, args)
        rows = [r for r in rows if (r["dataset"], r["seed"]) != key] + [row]
        save_rows(args.out, header, rows)
    order = {(e["dataset"], e["seed"]): i for i, e in enumerate(entries)}
    print_table(sorted((r for r in rows if (r["dataset"], r["seed"]) in order),
                       key=lambda r: order[r["dataset"], r["seed"]]))


if __name__ == "__main__":
    main()
