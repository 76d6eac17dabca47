"""The command line: the only argument parser. Each command calls a plain function.

Bad input ends with one line on stderr and exit code 2 (130 after Ctrl-C); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import ARCHS, MASK_SOURCES, MODES, PRESETS, Config, EventRules
from .errors import UserError

EXAMPLES = """examples:
  ddlvad demo                                   # synthetic scene -> train -> AUC, < 10 min on a CPU
  ddlvad synth scene/ --seed 1                  # write a synthetic dataset (folder layout)
  ddlvad data info ../shared/data/ped2          # what a dataset folder holds
  ddlvad train --data scene/ --preset tiny --out runs/tiny
  ddlvad train --data ped2/ --mode recon --model unet --out runs/ped2-unet-recon
  ddlvad evaluate runs/tiny --data scene/ --protocol paper
  ddlvad detect clip.mp4 --run runs/tiny        # scores.csv, events.json, overlay.mp4 in runs/tiny/detect/clip
  ddlvad detect 0 --run runs/tiny --no-overlay  # live camera 0 (or rtsp://... URL); Ctrl-C stops cleanly
  ddlvad export runs/tiny --format onnx         # clip (B, C, T, H, W) -> reconstruction, error, score
  torchrun --nproc_per_node 8 -m ddlvad train --data ped2/ --out runs/ped2   # one run on 8 GPUs
  ddlvad train --data shanghaitech/ --all-scenes --jobs 4 --out runs/sh     # one model per scene
  ddlvad evaluate runs/sh --data shanghaitech/                              # per-scene + aggregate
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _config_args(p: argparse.ArgumentParser, default_preset: str) -> None:
    g = p.add_argument_group("configuration (preset -> --config -> flags -> --set)")
    g.add_argument("--preset", default=None, choices=list(PRESETS),
                   help=f"start from this preset (default: {default_preset})")
    g.add_argument("--config", help="a config.yaml to start from instead of a preset")
    g.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set train.lr=0.001 (repeatable)")
    g.add_argument("--mode", choices=MODES, help="recon (reconstruction only), sdl (fixed weight), ddl (learned)")
    g.add_argument("--model", choices=ARCHS, help="c3dsu or unet (unet implies --frames 1)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--steps", type=int, help="total optimiser steps (replaces --epochs)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--frames", type=int, help="window length T (odd)")
    g.add_argument("--seed", type=int)
    g.add_argument("--dataset", help="ped2, ped1, avenue, shanghaitech or folder (default: detect)")
    g.add_argument("--scene", help="ShanghaiTech scene, e.g. 01")
    g.add_argument("--cache-dir", help="cache for decoded frames and tracks (default: $DDLVAD_CACHE or ~/.cache/ddlvad)")
    g.add_argument("--masks", choices=MASK_SOURCES, help="boxes of tracked objects (default) or random boxes")


def build_config(args: argparse.Namespace, default_preset: str) -> Config:
    if args.config:
        cfg = Config.from_yaml(args.config)
    else:
        cfg = Config.preset(args.preset or default_preset)
    flags = {
        "ddl.mode": args.mode, "model.arch": args.model, "train.epochs": args.epochs,
        "train.steps": args.steps, "train.batch_size": args.batch_size, "train.lr": args.lr,
        "data.frames": args.frames, "train.seed": args.seed, "data.dataset": args.dataset,
        "data.scene": args.scene, "data.cache_dir": args.cache_dir, "data.masks": args.masks,
    }
    if args.model == "unet" and args.frames is None:
        flags["data.frames"] = 1
    if args.model == "c3dsu" and args.frames is None and cfg.data.frames == 1:
        flags["data.frames"] = 3
    cfg.apply({k: v for k, v in flags.items() if v is not None})
    cfg.override(args.set)
    return cfg.validate()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddlvad", description="Video anomaly detection with Dynamic Distinction Learning.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("demo", help="synthetic scene -> track -> train (cpu preset) -> evaluate")
    p.add_argument("--out", default="ddlvad-demo", help="output folder (default: ./ddlvad-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="training steps (default: the demo's budget)")
    p.add_argument("--force", action="store_true", help="replace an earlier demo in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("synth", help="write a synthetic surveillance dataset (folder layout)")
    p.add_argument("out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="write into a folder that is not empty")

    p = sub.add_parser("train", help="train a model (default preset: cpu)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--out", default=None, help="run folder (default: runs/<dataset>-<arch>-<mode>)")
    p.add_argument("--tracks", help="a tracks .npz to paste pseudo anomalies into (default: cache / run tracking)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--force", action="store_true", help="replace the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--all-scenes", action="store_true",
                   help="ShanghaiTech: train one model per scene into OUT/scene-S (child processes)")
    p.add_argument("--jobs", type=int, default=1, help="with --all-scenes: scenes trained at a time (default: 1)")
    _config_args(p, "cpu")

    p = sub.add_parser("evaluate", help="score the test split and write report.json, scores.csv, plots, report.html")
    p.add_argument("run", help="run folder (holds checkpoint.pt), or a folder of per-scene runs (scene-*/)")
    p.add_argument("--data", required=True, help="dataset root folder")
    p.add_argument("--dataset")
    p.add_argument("--scene")
    p.add_argument("--cache-dir")
    p.add_argument("--protocol", default="paper", help="paper (median 17), raw, gaussian, minmax")
    p.add_argument("--smoothing", choices=("none", "median", "gaussian"))
    p.add_argument("--window", type=int, help="median filter window (frames)")
    p.add_argument("--sigma", type=float, help="gaussian smoothing sigma (frames)")
    p.add_argument("--normalise", choices=("none", "minmax"), help="per-video score normalisation")
    p.add_argument("--out", help="output folder (default: RUN/eval)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("detect", help="score a video file, frame folder or live stream: scores, events, overlay",
                       description="Exit status: 0 when the source was read to its end (or --max-frames), 1 when a "
                                   "live stream stopped sending frames (the outputs are complete up to there), 2 for "
                                   "bad input, 130 after Ctrl-C (outputs closed and valid).")
    p.add_argument("source", help="video file, folder of frame images, camera index (0) or stream URL")
    p.add_argument("--run", required=True, help="run folder (holds checkpoint.pt)")
    p.add_argument("--out", help="output folder (default: RUN/detect/<source name>)")
    p.add_argument("--threshold", type=float, help="frame score above which a frame is anomalous (default: the run's)")
    p.add_argument("--batch", type=int, help="windows per forward pass (default: score.batch_size; 1 for live streams)")
    p.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    p.add_argument("--max-frames", type=int, help="stop after N frames")
    p.add_argument("--fps", type=float, help="frame rate for frame times (default: the source's; folders: 25)")
    p.add_argument("--gap", type=int, default=EventRules.gap,
                   help=f"merge anomalous runs separated by at most this many frames (default {EventRules.gap})")
    p.add_argument("--min-frames", type=int, default=EventRules.min_frames,
                   help=f"drop events shorter than this many frames (default {EventRules.min_frames})")

    p = sub.add_parser("export", help="export a run's model to ONNX or TorchScript (clip -> recon, error, score)")
    p.add_argument("run", help="run folder (holds checkpoint.pt)")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", help="output file (default: RUN/model.onnx or RUN/model.torchscript.pt)")

    p = sub.add_parser("track", help="detect and track objects: the boxes pseudo anomalies are pasted into")
    p.add_argument("root", help="dataset root folder")
    p.add_argument("--dataset")
    p.add_argument("--scene")
    p.add_argument("--split", choices=("training", "testing", "all"), default="training")
    p.add_argument("--detector", default="motion", help="motion (default, offline) or onnx:PATH (YOLO-style export)")
    p.add_argument("--classes", default="0", help="class ids kept by an ONNX detector, comma-separated (default: 0, person)")
    p.add_argument("--score-threshold", type=float, default=0.3, help="ONNX detector score threshold")
    p.add_argument("--tracker", choices=("ocsort", "bytetrack"), default="ocsort")
    p.add_argument("--import-json", metavar="FILE", help="import the reference code's tracked-box JSON instead of detecting")
    p.add_argument("--cache-dir")
    p.add_argument("--preview", metavar="DIR", help="write a montage of frames with boxes and ids per video")
    p.add_argument("--quiet", action="store_true")

    p = sub.add_parser("data", help="inspect datasets")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    q = dsub.add_parser("info", help="layout, videos, frames, scenes and abnormal frames of ROOT")
    q.add_argument("root")
    q.add_argument("--dataset")
    q.add_argument("--scene")
    q.add_argument("--json", action="store_true", help="print JSON")

    p = sub.add_parser("config", help="print a resolved configuration as YAML")
    _config_args(p, "cpu")
    return parser


def _version() -> str:
    from . import __version__

    return f"ddlvad {__version__}"


def run_command(args: argparse.Namespace) -> int:
    from . import workflow

    if args.command == "demo":
        result = workflow.demo(args.out, seed=args.seed, force=args.force, steps=args.steps,
                               progress=not args.quiet)
        print(f"demo: frame-level AUC {100 * result['auc_micro']:.2f} % (micro, {result['protocol']['name']} "
              f"protocol) in {result['minutes']:.1f} min; report: {Path(args.out) / 'report.json'}")
        return 0
    if args.command == "synth":
        from .data.synthetic import synthesize

        out = Path(args.out)
        if out.exists() and any(out.iterdir()) and not args.force:
            raise UserError(f"{out} is not empty: choose another folder or pass --force")
        desc = synthesize(out, seed=args.seed)
        abnormal = sum(v["abnormal_frames"] for v in desc["testing"].values())
        print(f"wrote {out}: {desc['spec']['train_videos']} training and {desc['spec']['test_videos']} "
              f"testing videos of {desc['spec']['frames']} frames, {abnormal} abnormal test frames")
        return 0
    if args.command == "train":
        from .distributed import is_main

        if args.resume and not args.all_scenes:
            if not args.out:
                raise UserError("--resume needs --out RUN: the run folder to continue")
            if args.config or args.preset:
                raise UserError("--resume continues a run with its own config.yaml: drop --config/--preset")
            args.config = str(Path(args.out) / "config.yaml")
            if not Path(args.config).is_file():
                raise UserError(f"--resume: no config.yaml in {args.out}; start a new run without --resume")
        cfg = build_config(args, "cpu")
        out = args.out or f"runs/{Path(args.data).name}-{cfg.model.arch}-{cfg.ddl.mode}"
        if args.jobs != 1 and not args.all_scenes:
            raise UserError("--jobs goes with --all-scenes (scenes trained at a time)")
        if args.all_scenes:
            workflow.train_scenes(cfg, args.data, out, jobs=args.jobs, resume=args.resume, force=args.force,
                                  tracks_file=args.tracks)
            return 0
        summary = workflow.train(cfg, args.data, out, resume=args.resume, force=args.force,
                                 tracks_file=args.tracks, progress=not args.quiet)
        if is_main():
            print(json.dumps(summary))
        return 0
    if args.command == "evaluate":
        from .distributed import is_main

        overrides = {k: v for k, v in {"smoothing": args.smoothing, "window": args.window,
                                       "sigma": args.sigma, "normalise": args.normalise}.items() if v is not None}
        if workflow.is_scene_folder(args.run):
            if args.scene:
                raise UserError(f"{args.run} holds one run per scene: evaluate one scene with "
                                f"`ddlvad evaluate {Path(args.run) / ('scene-' + args.scene)} --data ...`")
            report = workflow.evaluate_scenes(args.run, args.data, protocol=args.protocol,
                                              protocol_overrides=overrides, out=args.out, cache_dir=args.cache_dir,
                                              plots=not args.no_plots, progress=not args.quiet)
            if is_main():
                workflow.print_scene_summary(report)
            return 0
        report = workflow.evaluate(args.run, args.data, dataset=args.dataset, scene=args.scene,
                                   protocol=args.protocol, protocol_overrides=overrides, out=args.out,
                                   cache_dir=args.cache_dir, plots=not args.no_plots, progress=not args.quiet)
        if is_main():
            workflow.print_summary(report)
        return 0
    if args.command == "detect":
        return _detect(args)
    if args.command == "export":
        from .export import export_model

        path = export_model(args.run, args.format, args.out)
        print(f"wrote {path} ({args.format}): clip (B, C, T, H, W) in [0, 1] -> reconstruction (B, C, H, W), "
              f"error (B, H, W), score (B,)")
        return 0
    if args.command == "track":
        return _track(args)
    if args.command == "data":
        from .data.info import summary
        from .data.layouts import index_dataset

        if not Path(args.root).exists():
            raise UserError(f"data folder {args.root} does not exist")
        info = summary(index_dataset(args.root, args.dataset, args.scene))
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            _print_info(info)
        return 0
    if args.command == "config":
        print(build_config(args, "cpu").to_yaml(), end="")
        return 0
    raise AssertionError(args.command)


def _detect(args: argparse.Namespace) -> int:
    from . import workflow

    report = workflow.detect(args.run, args.source, args.out, threshold=args.threshold, batch_size=args.batch,
                             overlay=not args.no_overlay, max_frames=args.max_frames, fps=args.fps,
                             rules=EventRules(args.gap, args.min_frames))
    print(f"detect: {report['frames']} frames ({report['frames_scored']} scored) at {report['frames_per_second']} "
          f"frames/s, {len(report['events'])} events above {report['threshold']:.4g} "
          f"({report['threshold_origin']} threshold) -> {report['out']}")
    if report["stopped"]:
        print(f"ddlvad: warning: {report['stopped']}; the outputs are complete up to frame {report['frames'] - 1}",
              file=sys.stderr)
        return 1
    return 0


def _track(args: argparse.Namespace) -> int:
    from . import workflow
    from .data.layouts import index_dataset

    if not Path(args.root).exists():
        raise UserError(f"data folder {args.root} does not exist")
    try:
        classes = tuple(int(c) for c in args.classes.split(",") if c.strip())
    except ValueError:
        raise UserError(f"--classes {args.classes!r}: give class ids like 0 or 0,2") from None
    index = index_dataset(args.root, args.dataset, args.scene)
    splits = ("training", "testing") if args.split == "all" else (args.split,)
    for split in splits:
        if args.import_json:
            from .data.frames import FrameSpec, FrameStore
            from .objects import import_reference_json

            store = FrameStore(index.split(split), workflow.detection_spec(index, split, False), args.cache_dir)
            counts = {r.video_id: int(n) for r, n in zip(store.videos, store.lengths)}
            tracks = import_reference_json(args.import_json, counts)
            tracks.settings.update({"split": split, "dataset": index.dataset})
            path = tracks.save(workflow.tracks_path(index, split, args.cache_dir))
            print(f"imported {tracks.num_boxes()} boxes for {len(counts)} {split} videos -> {path}")
        else:
            tracks, path = workflow.track_split(index, split, args.cache_dir, detector=args.detector,
                                                tracker=args.tracker, classes=classes,
                                                score_threshold=args.score_threshold, progress=not args.quiet)
        if args.preview:
            written = workflow.preview_tracks(index, split, tracks, args.preview, args.cache_dir)
            print(f"previews: {len(written)} images in {args.preview}")
    return 0


def _print_info(info: dict) -> None:
    print(f"dataset {info['dataset']} (layout {info.get('layout')}) at {info.get('root')}")
    for split in ("training", "testing"):
        s = info[split]
        extra = f", {s['abnormal_frames']} abnormal" if s.get("abnormal_frames") is not None else ""
        print(f"  {split:9} {s['videos']:4} videos {s['frames']:8} frames{extra}")
    if info.get("frame_size"):
        print(f"  frame size {info['frame_size'][0]}x{info['frame_size'][1]} (h x w)")
    if info.get("scenes"):
        print(f"  scenes {', '.join(info['scenes'])}")


def _close_progress_bars() -> None:
    """End any open progress bar so that the error message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        return run_command(args)
    except UserError as exc:
        if debug:
            raise
        _close_progress_bars()
        if not getattr(exc, "quiet", False):  # an error every rank raises alike is printed by rank 0
            print(f"ddlvad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("ddlvad: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # TrainingInterrupted and friends are handled by name, bugs stay loud
        from .train import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted):
            print(f"ddlvad: {exc}", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
