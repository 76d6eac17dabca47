"""The commands as plain functions: train, evaluate, demo, detect. They compose the library
modules (data -> tracks -> train -> score -> evaluate) and do the file I/O; ``cli.py``
parses arguments and calls them."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import distributed
from .config import Config
from .data.frames import FrameSpec, FrameStore, default_cache_dir
from .data.layouts import DatasetIndex, index_dataset
from .data.tracks import Tracks, VideoTracks
from .errors import UserError

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- data
def open_dataset(cfg: Config, root: str | Path) -> DatasetIndex:
    root = Path(root)
    if not root.exists():
        raise UserError(f"data folder {root} does not exist (--data / ROOT)")
    return index_dataset(root, cfg.data.dataset, cfg.data.scene)


def open_frames(cfg: Config, index: DatasetIndex, split: str, progress: bool = True) -> FrameStore:
    records = index.training if split == "training" else index.testing
    if not records:
        raise UserError(f"{index.root}: the {split} split has no videos")
    return FrameStore(records, FrameSpec.from_config(cfg.data), cfg.data.cache_dir, progress=progress)


def tracks_path(index: DatasetIndex, split: str, cache_dir: str | Path | None) -> Path:
    """Where ``ddlvad track`` keeps the tracks of one split: the cache directory, keyed by the
    dataset folder, layout, scene and split (never inside the dataset, which may be read-only)."""
    root = str(Path(index.root).resolve())
    key = hashlib.sha1(root.encode()).hexdigest()[:12]
    scene = "-".join(sorted({r.scene for r in index.split(split) if r.scene})) or "all"
    return default_cache_dir(cache_dir) / "tracks" / f"{Path(root).name}-{key}-{index.dataset}-{scene}-{split}.npz"


DETECTION_LONG_SIDE = 360
"""Frames are detected at most this many pixels on their long side (Ped2's own size)."""


def detection_spec(index: DatasetIndex, split: str, colour: bool) -> FrameSpec:
    from .data.info import first_frame_size

    h, w = first_frame_size(index.split(split)[0])
    scale = min(1.0, DETECTION_LONG_SIDE / max(h, w))
    return FrameSpec(max(2, round(h * scale / 2) * 2), max(2, round(w * scale / 2) * 2), 3 if colour else 1)


def make_detector(name: str, classes: tuple[int, ...] = (0,), score_threshold: float = 0.3):
    """``motion`` (default, offline) or ``onnx:PATH`` (a YOLO-style ONNX export)."""
    from .objects import MotionDetector

    if name == "motion":
        return MotionDetector()
    if name.startswith("onnx:"):
        from .objects.onnx_detector import OnnxDetector

        return OnnxDetector(name[5:], classes=classes, score_threshold=score_threshold)
    raise UserError(f"--detector {name!r}: use 'motion' or 'onnx:PATH/TO/model.onnx'")


def track_split(index: DatasetIndex, split: str, cache_dir: str | Path | None = None, *, detector: str = "motion",
                tracker: str = "ocsort", classes: tuple[int, ...] = (0,), score_threshold: float = 0.3,
                progress: bool = True, log: Log = _stderr) -> tuple[Tracks, Path]:
    """Detect and track objects in every video of one split; save to the cache; return them."""
    from .objects import track_dataset

    records = index.split(split)
    if not records:
        raise UserError(f"{index.root}: the {split} split has no videos to track")
    det = make_detector(detector, classes, score_threshold)
    spec = detection_spec(index, split, colour=detector != "motion")
    store = FrameStore(records, spec, cache_dir, progress=progress)
    # the cache holds RGB; detectors take frames as OpenCV reads them (BGR)
    videos = {r.video_id: (a if spec.channels == 1 else a[..., ::-1]) for r, a in zip(store.videos, store.arrays)}
    t0 = time.perf_counter()
    tracks = track_dataset(videos, det, tracker, progress=progress)
    seconds = time.perf_counter() - t0
    tracks.settings.update({"split": split, "dataset": index.dataset, "detection_size": [spec.height, spec.width],
                            "seconds": round(seconds, 2)})
    path = tracks.save(tracks_path(index, split, cache_dir))
    frames = int(store.lengths.sum())
    log(f"tracks: {tracks.num_boxes()} boxes in {frames} {split} frames ({frames / max(seconds, 1e-9):.0f} frames/s) -> {path}")
    return tracks, path


def preview_tracks(index: DatasetIndex, split: str, tracks: Tracks, out: str | Path,
                   cache_dir: str | Path | None = None, max_videos: int = 12, frames_per_video: int = 4) -> list[Path]:
    """A PNG montage per video (evenly spaced frames with boxes and track ids) in ``out``."""
    import cv2

    from .objects import draw_tracks, montage

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = detection_spec(index, split, colour=True)
    written = []
    for record in index.split(split)[:max_videos]:
        frames = FrameStore([record], spec, cache_dir).arrays[0]
        vt = tracks.videos.get(record.video_id)
        picks = np.linspace(0, len(frames) - 1, frames_per_video).round().astype(int)
        tiles = [draw_tracks(np.ascontiguousarray(frames[i][..., ::-1]),  # RGB -> BGR
                            vt.tracks_at(int(i)) if vt else {}) for i in picks]
        path = out / f"{split}_{_safe(record.video_id)}.png"
        cv2.imwrite(str(path), montage(tiles))
        written.append(path)
    return written


def training_tracks(cfg: Config, index: DatasetIndex, store: FrameStore, tracks_file: str | Path | None = None,
                    progress: bool = True, log: Log = _stderr) -> list[VideoTracks | None]:
    """The tracks the pseudo anomalies are pasted into, one per training video.

    Looks in order at ``tracks_file`` (``--tracks``), the cache of ``ddlvad track``, and the
    ground-truth ``training/tracks.npz`` that ``ddlvad synth`` writes; when none fits, runs
    detection and tracking first and says so. ``recon`` mode and ``data.masks=random`` need none.
    """
    if cfg.ddl.mode == "recon" or cfg.data.masks == "random":
        return [None] * len(store)
    counts = {r.video_id: int(n) for r, n in zip(store.videos, store.lengths)}
    if tracks_file:
        tracks = Tracks.load(tracks_file)
        tracks.check_against(counts, f"--tracks {tracks_file}")
    else:
        tracks = None
        for path in (tracks_path(index, "training", cfg.data.cache_dir), index.root / "training" / "tracks.npz"):
            if path.is_file():
                candidate = Tracks.load(path)
                try:
                    candidate.check_against(counts, path)
                except UserError as exc:
                    log(f"tracks: ignoring {path}: {exc}")
                    continue
                tracks, tracks_file = candidate, path
                break
        if tracks is None:
            log("tracks: none found for the training videos; running detection and tracking first (ddlvad track)")
            tracks, tracks_file = track_split(index, "training", cfg.data.cache_dir, progress=progress, log=log)
    source = tracks.settings.get("source") or tracks.settings.get("detector", {}).get("name", "?")
    log(f"tracks: {tracks_file} ({tracks.num_boxes()} boxes; {source})")
    return [tracks.videos[r.video_id] for r in store.videos]


# ---------------------------------------------------------------------- train
@distributed.collective
def train(cfg: Config, root: str | Path, out: str | Path, *, resume: bool = False, force: bool = False,
          tracks_file: str | Path | None = None, progress: bool = True, log: Log = _stderr) -> dict:
    """Train one model into ``out``. Under torchrun: one DDP run, rank 0 writes ``out``."""
    from .train import Trainer, TrainingData, check_global_batch, prepare_run_dir

    out = Path(out)
    if not distributed.is_main():
        log, progress = _silent, False
    cfg.validate()
    if distributed.is_active():
        check_global_batch(cfg.train.batch_size, distributed.world_size())
    distributed.run_on_main(prepare_run_dir, out, resume, force)
    index = open_dataset(cfg, root)
    with distributed.local_main_first():  # fill the frame and track caches once per machine
        store = open_frames(cfg, index, "training", progress)
        tracks = training_tracks(cfg, index, store, tracks_file, progress, log)
    data = TrainingData(store.arrays, tracks, [r.video_id for r in store.videos])
    trainer = Trainer(cfg, data, out, progress=progress)
    where = f" on {trainer.world} processes ({trainer.device.type})" if trainer.world > 1 else ""
    log(f"training {cfg.model.arch} ({cfg.ddl.mode}) on {len(trainer.index)} windows of "
        f"{len(store)} videos for {trainer.total_steps} steps{where} -> {out}")
    summary = trainer.run(resume=resume)
    log(f"done: {summary['steps']} steps in {summary['minutes']:.1f} min, anomaly weight "
        f"{summary['anomaly_weight']:.3f}")
    return summary


def _silent(msg: str) -> None:
    pass


# ---------------------------------------------------------------------- evaluate
def score_store(model, cfg: Config, store: FrameStore, progress: bool = True) -> dict[str, np.ndarray]:
    """Frame scores (NaN at the edges) of every video of a split."""
    from tqdm import tqdm

    from .score import score_video

    out = {}
    for record, frames in tqdm(list(zip(store.videos, store.arrays)), desc="scoring", unit="video",
                               disable=not progress):
        out[record.video_id] = score_video(model, frames, cfg.score.patch, cfg.score.shifted_grid,
                                           cfg.score.batch_size)
    return out


def score_split(model, cfg: Config, index: DatasetIndex, progress: bool = True) -> dict[str, np.ndarray]:
    """Frame scores of every testing video, keyed by video id in index order.

    Under torchrun each rank scores whole videos (dealt by frame count, see
    :func:`distributed.split_by_size`) and every rank receives all the scores: each frame is
    scored exactly once, so the result equals one process's.
    """
    records = index.testing
    if not records:
        raise UserError(f"{index.root}: the testing split has no videos")
    mine = [records[i] for i in distributed.my_share([_frame_count(r) for r in records])]
    part = {}
    if mine:
        store = FrameStore(mine, FrameSpec.from_config(cfg.data), cfg.data.cache_dir,
                           progress=progress and distributed.is_main())
        part = score_store(model, cfg, store, progress and distributed.is_main())
    scores = distributed.gather_dicts(part)
    return {r.video_id: scores[r.video_id] for r in records}


def _frame_count(record) -> int:
    """Frames of a video, known without decoding it (1 when unknown): the weight of its share."""
    if record.frame_files is not None:
        return len(record.frame_files)
    return len(record.labels) if record.labels is not None else 1


@distributed.collective
def evaluate(run: str | Path, root: str | Path, *, dataset: str | None = None, scene: str | None = None,
             protocol: str = "paper", protocol_overrides: dict | None = None, out: str | Path | None = None,
             cache_dir: str | None = None, plots: bool = True, progress: bool = True, log: Log = _stderr,
             keep_scores: dict | None = None) -> dict:
    """Score every test frame with the trained model of ``run`` and write the report files.

    Under torchrun the videos are shared among the ranks (:func:`score_split`) and rank 0
    writes the files; every rank returns the report. ``keep_scores``, when given, receives
    ``video id -> (scores, labels)``.
    """
    from .checkpoint import load_model
    from .evaluate import evaluate as compute, get_protocol

    run = Path(run)
    if not distributed.is_main():
        log, progress = _silent, False
    model, cfg, ckpt = load_model(run)
    model.to(distributed.device())
    if dataset is not None:
        cfg.data.dataset = dataset
    if scene is not None:
        cfg.data.scene = scene
    if cache_dir is not None:
        cfg.data.cache_dir = cache_dir
    proto = get_protocol(protocol, patch=cfg.score.patch, shifted_grid=cfg.score.shifted_grid,
                         **(protocol_overrides or {}))
    index = open_dataset(cfg, root)
    t0 = time.perf_counter()
    scores = score_split(model, cfg, index, progress)
    seconds = time.perf_counter() - t0
    labels = {r.video_id: r.labels for r in index.testing}
    videos = {vid: (scores[vid], labels[vid]) for vid in scores}
    report = compute(videos, proto)
    report.update({
        "run": str(run), "data": str(Path(root)), "dataset": index.dataset, "scene": cfg.data.scene,
        "model": {"arch": cfg.model.arch, "mode": cfg.ddl.mode, "latent": cfg.model.latent,
                  "frames": cfg.data.frames, "size": [cfg.data.height, cfg.data.width],
                  "channels": cfg.data.channels, "steps": ckpt.get("step"),
                  "anomaly_weight": ckpt.get("anomaly_weight")},
        "scoring_seconds": round(seconds, 2),
        "scoring_fps": round(sum(len(a) for a in scores.values()) / max(seconds, 1e-9), 1),
        "processes": distributed.world_size() if distributed.is_active() else 1,
    })
    if not report.get("labels_available"):
        log("note: the test split has no labels; scores are written but no AUC can be computed")
    out = Path(out) if out else (run / "eval" if run.is_dir() else run.parent / f"eval-{run.stem}")
    distributed.run_on_main(write_evaluation, out, report, videos, proto, plots=plots)
    if keep_scores is not None:
        keep_scores.update(videos)
    return report


def write_evaluation(out: Path, report: dict, videos: dict, proto, plots: bool = True) -> None:
    """report.json, scores.csv, plots/*.png and report.html in ``out``."""
    from .evaluate import pooled

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out} ({exc.strerror}); choose another --out") from None
    _write_text(out / "report.json", json.dumps(report, indent=2))
    pool = pooled(videos, proto)  # the smoothed/normalised curves the metrics were computed on
    rows = []
    for vid, (scores, labels) in videos.items():
        smoothed = pool.smoothed[vid]
        for i, s in enumerate(scores):
            rows.append([vid, i, "" if np.isnan(s) else f"{s:.6g}",
                         "" if np.isnan(smoothed[i]) else f"{smoothed[i]:.6g}",
                         "" if labels is None else int(labels[i])])
    tmp = out / "scores.csv.tmp"
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["video", "frame", "score", "smoothed", "label"])
        writer.writerows(rows)
    tmp.replace(out / "scores.csv")
    if plots:
        write_plots(out, report, videos, pool)


def write_plots(out: Path, report: dict, videos: dict, pool) -> None:
    """One score-over-time PNG per video, the ROC, and the offline HTML page."""
    from .plots import roc_figure, save_figure, score_figure
    from .report_html import render_report

    images: dict[str, Path] = {}
    (out / "plots").mkdir(exist_ok=True)
    for vid, (scores, labels) in videos.items():
        fig = score_figure(vid, scores, pool.smoothed[vid], labels)
        images[vid] = save_figure(fig, out / "plots" / f"video_{_safe(vid)}.png")
    if report.get("auc_micro") is not None:
        images["roc"] = save_figure(roc_figure(pool.scores, pool.labels, report["auc_micro"]), out / "plots" / "roc.png")
    html = render_report(report, images, title=f"ddlvad evaluation: {report.get('run', '')}")
    _write_text(out / "report.html", html)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def print_summary(report: dict, stream=None) -> None:
    stream = stream or sys.stdout
    def pct(x):
        return "  -  " if x is None else f"{100 * x:6.2f}"

    p = report.get("protocol", {})
    print(f"protocol {p.get('name')}: smoothing={p.get('smoothing')} window={p.get('window')} "
          f"normalise={p.get('normalise')} edge={p.get('edge_frames')}", file=stream)
    print(f"{'video':>10} {'frames':>7} {'abnormal':>9} {'AUC %':>7}", file=stream)
    for vid, v in report.get("videos", {}).items():
        print(f"{vid:>10} {v['frames']:>7} {str(v.get('abnormal')):>9} {pct(v.get('auc')):>7}", file=stream)
    print(f"AUC micro {pct(report.get('auc_micro'))} | macro {pct(report.get('auc_macro'))} | "
          f"EER {pct(report.get('eer'))} | AP {pct(report.get('ap'))} | "
          f"{report.get('frames_scored')} frames scored", file=stream)


# ---------------------------------------------------------------------- per-scene jobs
SCENE_RUN = "scene-{}"
"""Folder of one scene's run inside a per-scene folder (ShanghaiTech: one model per scene)."""


def train_scenes(cfg: Config, root: str | Path, out: str | Path, *, jobs: int = 1, resume: bool = False,
                 force: bool = False, tracks_file: str | Path | None = None, log: Log = _stderr) -> dict:
    """Train one model per ShanghaiTech scene of ``root`` into ``out/scene-S``, ``jobs`` at a time.

    Each scene is a child process ``python -m ddlvad train --scene S`` started with the
    resolved config (``out/scenes-config.yaml``); its output goes to ``out/logs/scene-S.log``.
    With GPUs every child sees one (``CUDA_VISIBLE_DEVICES``, the least busy first); on a CPU
    each gets cpu_count/jobs threads unless ``OMP_NUM_THREADS`` is set. ``resume`` continues
    the scenes that have a checkpoint and starts the others. A failed scene is reported and
    the others go on; ``out/jobs.json`` records every scene's exit code and time, and a
    :class:`UserError` naming the failed scenes ends the call (exit 2).
    """
    import os
    import subprocess

    from .checkpoint import CHECKPOINT

    if distributed.world_size() > 1:
        raise UserError("--all-scenes starts its own processes: run it without torchrun")
    if cfg.data.scene is not None:
        raise UserError(f"--all-scenes trains every scene: drop --scene {cfg.data.scene}")
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: must be >= 1")
    cfg.validate()
    index = open_dataset(cfg, root)
    if index.dataset != "shanghaitech":
        raise UserError(f"--all-scenes trains one model per ShanghaiTech scene, but {root} holds {index.dataset} "
                        f"(pass --dataset shanghaitech if the layout was misdetected)")
    scenes = sorted({r.scene for r in index.training if r.scene})
    out = Path(out)
    runs = {scene: out / SCENE_RUN.format(scene) for scene in scenes}
    if not (resume or force):
        taken = [s for s, run in runs.items() if (run / CHECKPOINT).exists() or (run / "config.yaml").exists()]
        if taken:
            raise UserError(f"{out} already holds runs of scene(s) {', '.join(taken)}: pass --resume to continue "
                            f"them or --force to replace them (or choose another --out)")
    try:
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out} ({exc.strerror}); choose another --out") from None
    config_file = out / "scenes-config.yaml"
    cfg.to_yaml(config_file)
    gpus = _visible_gpus()
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[1])  # the children run this very ddlvad
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    if not gpus and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
    log(f"training {len(scenes)} scenes ({', '.join(scenes)}) of {root}, {jobs} at a time"
        f"{f' on GPUs {gpus}' if gpus else ''} -> {out}")

    pending, running, results = list(scenes), {}, {}
    busy = {g: 0 for g in gpus}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                scene = pending.pop(0)
                run = runs[scene]
                cmd = [sys.executable, "-m", "ddlvad", "train", "--data", str(root), "--scene", scene,
                       "--out", str(run), "--quiet"]
                if resume and (run / CHECKPOINT).exists():
                    cmd.append("--resume")  # the run continues with its own config.yaml
                else:
                    cmd += ["--config", str(config_file)] + (["--force"] if force else [])
                if tracks_file:
                    cmd += ["--tracks", str(tracks_file)]
                child_env, gpu = dict(env), None
                if gpus:
                    gpu = min(gpus, key=lambda g: busy[g])  # least busy; ties: first listed
                    busy[gpu] += 1
                    child_env["CUDA_VISIBLE_DEVICES"] = gpu
                log_path = out / "logs" / f"{SCENE_RUN.format(scene)}.log"
                handle = open(log_path, "w")
                proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=child_env)
                running[scene] = (proc, time.perf_counter(), gpu, handle, log_path)
                log(f"scene {scene}: started{f' on GPU {gpu}' if gpu is not None else ''} -> {run} "
                    f"(log {log_path})")
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
                results[scene] = {"returncode": code, "seconds": seconds, "run": str(runs[scene]),
                                  "log": str(log_path), "gpu": gpu}
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
    failed = sorted(s for s, r in results.items() if r["returncode"] != 0)
    summary = {"data": str(root), "jobs": jobs, "scenes": {s: results[s] for s in scenes}, "failed": failed}
    _write_text(out / "jobs.json", json.dumps(summary, indent=2))
    if failed:
        raise UserError(f"{len(failed)} of {len(scenes)} scenes failed ({', '.join(failed)}): see "
                        f"{out / 'logs'}; the other runs are in {out}")
    return summary


def _visible_gpus() -> list[str]:
    """CUDA devices a child may be given (ids as CUDA_VISIBLE_DEVICES names them); [] without CUDA."""
    import os

    import torch

    if not torch.cuda.is_available():
        return []
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return listed or [str(i) for i in range(torch.cuda.device_count())]


def is_scene_folder(path: str | Path) -> bool:
    """True for a folder of per-scene runs (``scene-*/checkpoint.pt``) that is no run itself."""
    path = Path(path)
    return (path.is_dir() and not (path / "checkpoint.pt").exists()
            and any(path.glob(SCENE_RUN.format("*") + "/checkpoint.pt")))


@distributed.collective
def evaluate_scenes(folder: str | Path, root: str | Path, *, protocol: str = "paper",
                    protocol_overrides: dict | None = None, out: str | Path | None = None,
                    cache_dir: str | None = None, plots: bool = True, progress: bool = True,
                    log: Log = _stderr) -> dict:
    """Evaluate each ``folder/scene-S`` run on scene S's test videos (its report in
    ``scene-S/eval``) and write ``folder/eval/report.json``: per-scene AUCs, their median
    (the paper's ShanghaiTech figure) and mean, and the micro AUC pooled over every scene's
    frames (:func:`ddlvad.evaluate.aggregate_scenes`). Scene folders without a checkpoint are
    listed under ``missing``."""
    from .evaluate import aggregate_scenes, evaluate as compute, get_protocol

    folder = Path(folder)
    if not distributed.is_main():
        log = _silent
    runs = sorted(p.parent for p in folder.glob(SCENE_RUN.format("*") + "/checkpoint.pt"))
    if not runs:
        raise UserError(f"{folder} holds no scene-*/checkpoint.pt: train with `ddlvad train --all-scenes --out {folder}`")
    missing = sorted(p.name for p in folder.glob(SCENE_RUN.format("*")) if p.is_dir() and p not in runs)
    reports: dict[str, dict] = {}
    scene_runs: dict[str, str] = {}
    videos: dict = {}
    for run in runs:
        scene = run.name[len(SCENE_RUN.format("")):]
        scene_runs[scene] = str(run)
        log(f"scene {scene}: evaluating {run}")
        reports[scene] = evaluate(run, root, scene=scene, protocol=protocol, protocol_overrides=protocol_overrides,
                                  out=run / "eval", cache_dir=cache_dir, plots=plots, progress=progress, log=log,
                                  keep_scores=videos)
    first = reports[min(reports)]["protocol"]
    proto = get_protocol(protocol, patch=first["patch"], shifted_grid=first["shifted_grid"],
                         **(protocol_overrides or {}))
    union = compute(videos, proto)
    report = aggregate_scenes(reports, union["auc_micro"])
    report.update({
        "auc_macro_pooled": union["auc_macro"], "frames_scored": union["frames_scored"],
        "frames_evaluated": union["frames_evaluated"], "protocol": union["protocol"],
        "runs": scene_runs, "missing": missing,
        "data": str(Path(root)), "folder": str(folder),
    })
    target = Path(out) if out else folder / "eval"
    distributed.run_on_main(_write_scene_report, target, report)
    return report


def _write_scene_report(out: Path, report: dict) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out} ({exc.strerror}); choose another --out") from None
    _write_text(out / "report.json", json.dumps(report, indent=2))


def print_scene_summary(report: dict, stream=None) -> None:
    stream = stream or sys.stdout

    def pct(x):
        return "  -  " if x is None else f"{100 * x:6.2f}"

    print(f"{'scene':>6} {'AUC %':>7}", file=stream)
    for scene, value in report["scenes"].items():
        print(f"{scene:>6} {pct(value):>7}", file=stream)
    if report.get("missing"):
        print(f"no checkpoint: {', '.join(report['missing'])}", file=stream)
    print(f"scene AUC median {pct(report['auc_scene_median'])} | mean {pct(report['auc_scene_mean'])} | "
          f"pooled micro {pct(report['auc_micro_pooled'])} | {report['n_scenes']} scenes, "
          f"{report['frames_scored']} frames scored", file=stream)


# ---------------------------------------------------------------------- demo
def demo(out: str | Path = "ddlvad-demo", *, seed: int = 0, force: bool = False, steps: int | None = None,
         progress: bool = True, log: Log = _stderr) -> dict:
    """Synthesise a scene, track its objects, train the ``cpu`` preset, evaluate; report.json."""
    from .data.synthetic import synthesize

    out = Path(out)
    data = out / "scene"
    run = out / "run"
    t0 = time.perf_counter()
    if (run / "checkpoint.pt").exists() and not force:
        raise UserError(f"{out} already holds a demo: pass --force to run it again or choose another --out")
    if not (data / "scene.json").exists() or force:
        log(f"demo: synthesising a surveillance scene in {data}")
        synthesize(data, seed=seed)
    cfg = Config.preset("cpu")
    cfg.train.seed = seed
    cfg.data.cache_dir = str(out / "cache")
    log("demo: detecting and tracking the training objects (motion detector + OC-SORT)")
    track_split(open_dataset(cfg, data), "training", cfg.data.cache_dir, progress=progress, log=log)
    cfg.train.steps = steps if steps is not None else DEMO_STEPS
    train(cfg, data, run, force=True, progress=progress, log=log)
    report = evaluate(run, data, out=out / "eval", cache_dir=cfg.data.cache_dir, progress=progress, log=log)
    minutes = (time.perf_counter() - t0) / 60
    result = {"auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"],
              "protocol": report["protocol"], "frames_scored": report["frames_scored"],
              "minutes": round(minutes, 2), "run": str(run), "evaluation": str(out / "eval")}
    _write_text(out / "report.json", json.dumps(result, indent=2))
    return result


DEMO_STEPS = 300
"""Training steps of ``ddlvad demo`` (cpu preset); sized so the demo ends within 10 minutes on 2 cores."""


# ---------------------------------------------------------------------- detect
def detect(run: str | Path, source: str | int | Path, out: str | Path | None = None, *,
           threshold: float | None = None, batch_size: int | None = None, overlay: bool = True,
           max_frames: int | None = None, fps: float | None = None, rules=None,
           say: Log = print, log: Log = _stderr) -> dict:
    """Score every frame of ``source`` (video file, folder of frames, camera index, URL) with
    the model of ``run`` and write, in ``out`` (default ``RUN/detect/<source name>``):

    - ``scores.csv``: ``frame, time_s, score, anomalous`` per frame (score empty and
      anomalous 0 for the edge frames), written as frames are scored;
    - ``events.json``: the events (:class:`ddlvad.infer.EventRules` merge anomalous frames)
      with the source, fps, threshold and frame count; rewritten atomically when an event
      closes, at the end, and when the run is interrupted or fails (``complete: false`` and
      ``stopped`` then say why);
    - ``overlay.mp4`` (unless ``overlay=False``): see :mod:`ddlvad.overlay`.

    Each event is reported through ``say`` when it closes. Returns the events.json content.
    The threshold is ``threshold`` if given, else the run's stored one (none: UserError).
    """
    from .infer import Detector, EventRules, EventTracker, VideoSource
    from .overlay import OverlayRenderer

    rules = rules or EventRules()
    if threshold is not None and not np.isfinite(threshold):
        raise UserError(f"--threshold {threshold}: give a finite frame score")
    detector = Detector.load(run, threshold, batch_size)
    if detector.threshold is None:
        raise UserError(f"the run {run} stores no detection threshold: pass --threshold X (a frame score, "
                        f"e.g. the largest score of a normal video in `ddlvad evaluate`'s scores.csv)")
    with VideoSource(source, fps) as video:
        run_dir = Path(run) if Path(run).is_dir() else Path(run).parent  # RUN or RUN/checkpoint.pt
        out = Path(out) if out else run_dir / "detect" / _safe(video.name)
        try:
            out.mkdir(parents=True, exist_ok=True)
            table = open(out / "scores.csv", "w", newline="", buffering=1)  # line-buffered: valid while running
        except OSError as exc:
            raise UserError(f"cannot write to {out} ({exc.strerror}); choose another --out") from None
        d = detector.cfg.data
        report: dict = {
            "source": video.label, "fps": video.fps, "fps_origin": video.fps_origin, "live": video.live,
            "threshold": detector.threshold, "threshold_origin": detector.threshold_origin,
            "run": str(run), "model": {"frames": d.frames, "size": [d.height, d.width], "channels": d.channels},
            "rules": dataclasses.asdict(rules), "frames": 0, "frames_scored": 0, "complete": False,
            "stopped": None, "events": [],
        }
        tracker, events = EventTracker(rules), []
        writer = renderer = None
        started = time.perf_counter()

        def save() -> None:
            seconds = time.perf_counter() - started
            report.update(events=[e.as_dict() for e in events], seconds=round(seconds, 2),
                          frames_per_second=round(report["frames"] / max(seconds, 1e-9), 1))
            _write_text(out / "events.json", json.dumps(report, indent=2))

        def found(event) -> None:
            if event is not None:
                events.append(event)
                say(f"event {len(events)}: {event.describe()}")
                save()

        rows = csv.writer(table)
        rows.writerow(["frame", "time_s", "score", "anomalous"])
        try:
            with _sigterm_as_interrupt():
                for result in detector.stream(video, max_frames=max_frames):
                    scored = np.isfinite(result.score)
                    rows.writerow([result.frame, f"{result.time:.4f}", f"{result.score:.6g}" if scored else "",
                                   int(result.anomalous)])
                    report["frames"] += 1
                    report["frames_scored"] += int(scored)
                    if overlay:
                        if writer is None:
                            renderer = OverlayRenderer(result.image.shape, detector.threshold)
                            writer = _video_writer(out / "overlay.mp4", video.fps, renderer.size)
                        writer.write(renderer.render(result))
                    found(tracker.update(result))
            report["complete"], report["stopped"] = video.stopped is None, video.stopped
        except KeyboardInterrupt:
            report["stopped"] = "interrupted"
            raise
        except UserError as exc:
            report["stopped"] = f"error: {exc}"
            raise
        finally:
            found(tracker.finish())
            table.close()
            if writer is not None:
                writer.release()
            save()
    report["outputs"] = sorted(p.name for p in out.iterdir() if p.suffix in (".csv", ".json", ".mp4"))
    report["out"] = str(out)
    return report


def _video_writer(path: Path, fps: float, size: tuple[int, int]):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise UserError(f"cannot write {path}: this OpenCV has no mp4v encoder; pass --no-overlay")
    return writer


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Within the main thread, SIGTERM raises KeyboardInterrupt, so outputs are closed cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
