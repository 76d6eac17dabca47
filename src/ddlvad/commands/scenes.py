"""Per-scene runs (ShanghaiTech: one model per scene): ``ddlvad train --all-scenes`` and
``ddlvad evaluate`` of a folder of scene runs.

Training runs each scene as a child process (``python -m ddlvad train --scene S``), ``jobs`` at
a time; with GPUs each child sees one, on a CPU each gets ``cpu_count / jobs`` threads.
A scene with training videos but no test videos (ShanghaiTech's scene 13) is trained and
reported as not evaluated, or skipped with one line (``--scenes-without-test skip``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .. import distributed
from ..checkpoint import CHECKPOINT
from ..config import Config, get_protocol
from ..data.layouts import DatasetIndex, index_dataset
from ..errors import UserError
from ..files import atomic_write, writable_dir
from ..metrics import aggregate_scenes, frame_metrics
from ..report import write_scene_report
from ..runs import SCENE_RUN, scene_runs
from . import Log, silent, to_stderr
from .evaluate import evaluate

WITHOUT_TEST = ("train", "skip")
"""What ``--all-scenes`` does with a scene that has no test videos."""


def test_scenes(root: str | Path) -> set[str]:
    """The ShanghaiTech scenes of ``root`` that have test videos (none when there is no test split)."""
    try:
        return set(index_dataset(root, "shanghaitech", splits=("testing",)).scenes())
    except UserError:
        return set()


def train_scenes(cfg: Config, root: str | Path, out: str | Path, *, jobs: int = 1, resume: bool = False,
                 force: bool = False, tracks_file: str | Path | None = None, without_test: str = "train",
                 log: Log = to_stderr) -> dict:
    """Train one model per ShanghaiTech scene of ``root`` into ``out/scene-S``, ``jobs`` at a time.

    Each scene is a child process started with the resolved config (``out/scenes-config.yaml``);
    its output goes to ``out/logs/scene-S.log``. ``resume`` continues the scenes that have a
    checkpoint and starts the others. A failed scene is reported and the others go on;
    ``out/jobs.json`` records every scene's exit code and time, and a :class:`UserError`
    naming the failed scenes ends the call (exit 2).
    """
    if distributed.world_size() > 1:
        raise UserError("--all-scenes starts its own processes: run it without torchrun")
    if cfg.data.scene is not None:
        raise UserError(f"--all-scenes trains every scene: drop --scene {cfg.data.scene}")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be >= 1")
    if without_test not in WITHOUT_TEST:
        raise UserError(f"--scenes-without-test {without_test!r}: choose one of {', '.join(WITHOUT_TEST)}")
    cfg.validate()
    index = index_dataset(root, cfg.data.dataset, splits=("training",))
    if index.dataset != "shanghaitech":
        raise UserError(f"--all-scenes trains one model per ShanghaiTech scene, but {root} holds {index.dataset} "
                        f"(pass --dataset shanghaitech if the layout was misdetected)")
    scenes, untested = _plan(index, test_scenes(root), without_test, log)
    out = Path(out)
    runs = {scene: out / SCENE_RUN.format(scene) for scene in scenes}
    if not (resume or force):
        taken = [s for s, run in runs.items() if (run / CHECKPOINT).exists() or (run / "config.yaml").exists()]
        if taken:
            raise UserError(f"{out} already holds runs of scene(s) {', '.join(taken)}: pass --resume to continue "
                            f"them or --force to replace them (or choose another --out)")
    writable_dir(out / "logs")
    config_file = out / "scenes-config.yaml"
    atomic_write(config_file, cfg.to_yaml())
    gpus = _visible_gpus()
    log(f"training {len(scenes)} scenes ({', '.join(scenes)}) of {root}, {jobs} at a time"
        f"{f' on GPUs {gpus}' if gpus else ''} -> {out}")
    commands = {s: _child_command(root, runs[s], s, config_file, resume, force, tracks_file) for s in scenes}
    results = _run_children(commands, out / "logs", jobs, gpus, log)
    failed = sorted(s for s, r in results.items() if r["returncode"] != 0)
    summary = {"data": str(root), "jobs": jobs, "scenes": {s: {**results[s], "run": str(runs[s])} for s in scenes},
               "not_evaluated": untested, "failed": failed}
    atomic_write(out / "jobs.json", json.dumps(summary, indent=2))
    if failed:
        raise UserError(f"{len(failed)} of {len(scenes)} scenes failed ({', '.join(failed)}): see "
                        f"{out / 'logs'}; the other runs are in {out}")
    return summary


def _plan(index: DatasetIndex, tested: set[str], without_test: str, log: Log) -> tuple[list[str], list[str]]:
    """The scenes to train, and those among them that have no test videos."""
    scenes = sorted({r.scene for r in index.training if r.scene})
    untested = [s for s in scenes if s not in tested]
    if untested and without_test == "skip":
        log(f"scenes {', '.join(untested)}: no test videos; skipped (--scenes-without-test skip)")
        return [s for s in scenes if s in tested], []
    if untested:
        log(f"scenes {', '.join(untested)}: no test videos; trained but not evaluated "
            f"(--scenes-without-test skip leaves them out)")
    return scenes, untested


def _child_command(root: str | Path, run: Path, scene: str, config_file: Path, resume: bool, force: bool,
                   tracks_file: str | Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "ddlvad", "train", "--data", str(root), "--scene", scene, "--out", str(run), "--quiet"]
    if resume and (run / CHECKPOINT).exists():
        cmd.append("--resume")  # the run continues with its own config.yaml
    else:
        cmd += ["--config", str(config_file)] + (["--force"] if force else [])
    if tracks_file:
        cmd += ["--tracks", str(tracks_file)]
    return cmd


def _run_children(commands: dict[str, list[str]], logs: Path, jobs: int, gpus: list[str], log: Log) -> dict:
    """Run ``commands`` (scene -> argv), ``jobs`` at a time; ``scene -> returncode, seconds, log, gpu``."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])  # the children run this very ddlvad
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    if not gpus and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    pending, running, results = list(commands), {}, {}
    busy = {g: 0 for g in gpus}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                scene = pending.pop(0)
                child_env, gpu = dict(env), None
                if gpus:
                    gpu = min(gpus, key=lambda g: busy[g])  # least busy; ties: first listed
                    busy[gpu] += 1
                    child_env["CUDA_VISIBLE_DEVICES"] = gpu
                log_path = logs / f"{SCENE_RUN.format(scene)}.log"
                handle = open(log_path, "w")
                proc = subprocess.Popen(commands[scene], stdout=handle, stderr=subprocess.STDOUT, env=child_env)
                running[scene] = (proc, time.perf_counter(), gpu, handle, log_path)
                log(f"scene {scene}: started{f' on GPU {gpu}' if gpu is not None else ''} (log {log_path})")
            time.sleep(0.2)
            for scene, (proc, t0, gpu, handle, log_path) in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                handle.close()
                del running[scene]
                if gpu is not None:
                    busy[gpu] -= 1
                seconds = round(time.perf_counter() - t0, 1)
                results[scene] = {"returncode": code, "seconds": seconds, "log": str(log_path), "gpu": gpu}
                if code == 0:
                    log(f"scene {scene}: done in {seconds:.0f} s")
                else:
                    lines = log_path.read_text(errors="replace").strip().splitlines()
                    log(f"scene {scene}: FAILED (exit {code}): {lines[-1] if lines else 'no output'}")
    finally:
        for proc, _, _, handle, _ in running.values():  # interrupted: children checkpoint and stop
            proc.terminate()
            proc.wait()
            handle.close()
    return results


def _visible_gpus() -> list[str]:
    """CUDA devices a child may be given (ids as CUDA_VISIBLE_DEVICES names them); [] without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed or [str(i) for i in range(torch.cuda.device_count())]


@distributed.collective
def evaluate_scenes(folder: str | Path, root: str | Path, *, protocol: str = "paper",
                    protocol_overrides: dict | None = None, out: str | Path | None = None,
                    cache_dir: str | None = None, plots: bool = True, progress: bool = True,
                    log: Log = to_stderr, gt_tracks: str | Path | None = None, engine: str | None = None) -> dict:
    """Evaluate each ``folder/scene-S`` run on scene S's test videos (its report in
    ``scene-S/eval``) and write ``folder/eval/report.json``: per-scene AUCs, their median
    (the paper's ShanghaiTech figure) and mean, and the micro AUC pooled over every scene's
    frames (:func:`ddlvad.metrics.aggregate_scenes`). Scene folders without a checkpoint are
    listed under ``missing``; scenes without test videos under ``not_evaluated``. ``gt_tracks``:
    the annotated tracks of RBDC/TBDC, passed to each scene's :func:`evaluate`."""
    folder = Path(folder)
    if not distributed.is_main():
        log = silent
    runs = scene_runs(folder)
    if not runs:
        raise UserError(f"{folder} holds no scene-*/checkpoint.pt: train with `ddlvad train --all-scenes --out {folder}`")
    missing = sorted(p.name for p in folder.glob(SCENE_RUN.format("*")) if p.is_dir() and p not in runs.values())
    tested = test_scenes(root)
    not_evaluated = sorted(s for s in runs if s not in tested)
    if not_evaluated:
        log(f"scenes {', '.join(not_evaluated)}: no test videos in {root}; not evaluated")
    reports: dict[str, dict] = {}
    videos: dict = {}
    for scene, run in runs.items():
        if scene in not_evaluated:
            continue
        log(f"scene {scene}: evaluating {run}")
        reports[scene] = evaluate(run, root, scene=scene, protocol=protocol, protocol_overrides=protocol_overrides,
                                  out=run / "eval", cache_dir=cache_dir, plots=plots, progress=progress, log=log,
                                  keep_scores=videos, gt_tracks=gt_tracks, engine=engine)
    if not reports:
        raise UserError(f"none of the scene runs in {folder} has test videos in {root}")
    first = reports[min(reports)]["protocol"]
    proto = get_protocol(protocol, **{"patch": first["patch"], "shifted_grid": first["shifted_grid"],
                                      "flip": first["flip"], "scale": first.get("scale", 1.0),
                                      **(protocol_overrides or {})})
    union = frame_metrics(videos, proto)
    report = aggregate_scenes(reports, union["auc_micro"])
    report.update({
        "auc_macro_pooled": union["auc_macro"], "frames_scored": union["frames_scored"],
        "frames_evaluated": union["frames_evaluated"], "protocol": union["protocol"],
        "runs": {s: str(r) for s, r in runs.items()}, "missing": missing, "not_evaluated": not_evaluated,
        "data": str(Path(root)), "folder": str(folder),
    })
    distributed.run_on_main(write_scene_report, Path(out) if out else folder / "eval", report)
    return report
