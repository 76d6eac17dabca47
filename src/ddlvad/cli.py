"""The command line: the only argument parser. A table of flags (each declared once) and a table
of commands (each a short adapter that calls a function of :mod:`ddlvad.commands`).

Bad input ends with one line on stderr and exit code 2 (130 after Ctrl-C); ``--debug``
shows the traceback instead.

One concern, in one module though it is long: the command line: the table of flags and the table of
commands, with their short adapters.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import (
    ARCHS,
    DEFAULT_PRESET,
    DEFAULT_PROTOCOL,
    DEMO,
    ENGINE_CHOICES,
    MASK_SOURCES,
    MODES,
    NORMALISATIONS,
    POSITIONS,
    PRESETS,
    PROTOCOLS,
    SMOOTHINGS,
    TRACKERS,
    UNTIL,
    Config,
    EventRules,
)
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


# ---------------------------------------------------------------------- every flag, once
@dataclass(frozen=True)
class Flag:
    """One command-line flag: its argparse settings and, for a setting of the run, its config key."""

    kwargs: dict[str, Any]
    key: str | None = None
    """``section.field`` this flag sets in the config (flags -> config of ``train`` and ``config``)."""
    names: tuple[str, ...] = field(default=())
    """Extra option strings (a positional flag has none and is named by its table key)."""


FLAGS: dict[str, Flag] = {
    # where things are
    "data": Flag({"required": True, "help": "dataset root folder"}),
    "root": Flag({"metavar": "ROOT", "help": "dataset root folder"}),
    "out": Flag({"help": "output folder"}),
    "dataset": Flag({"help": "ped2, ped1, avenue, shanghaitech or folder (default: detect)"}, "data.dataset"),
    "scene": Flag({"help": "ShanghaiTech scene, e.g. 01"}, "data.scene"),
    "cache-dir": Flag({"help": "cache for decoded frames and tracks (default: $DDLVAD_CACHE or ~/.cache/ddlvad)"},
                      "data.cache_dir"),
    "quiet": Flag({"action": "store_true", "help": "no progress bars"}),
    "force": Flag({"action": "store_true", "help": "replace what --out holds"}),
    # configuration of a run
    "preset": Flag({"choices": list(PRESETS), "help": f"start from this preset (default: {DEFAULT_PRESET})"}),
    "config": Flag({"help": "a config.yaml to start from instead of a preset"}),
    "set": Flag({"action": "append", "default": [], "metavar": "SECTION.FIELD=VALUE",
                 "help": "override any config field, e.g. --set train.lr=0.001 (repeatable)"}),
    "mode": Flag({"choices": MODES, "help": "recon (reconstruction only), sdl (fixed weight), ddl (learned)"},
                 "ddl.mode"),
    "model": Flag({"choices": ARCHS, "help": "c3dsu or unet (unet implies --frames 1)"}, "model.arch"),
    "epochs": Flag({"type": int}, "train.epochs"),
    "steps": Flag({"type": int, "help": "total optimiser steps (replaces --epochs; with --until converged: the most)"},
                  "train.steps"),
    "until": Flag({"choices": UNTIL, "help": "steps: train the step/epoch budget; converged: stop when the validation "
                                             "signal levels off (needs train.val_fraction > 0)"}, "train.until"),
    "minutes": Flag({"type": float, "help": "wall-clock budget of training; ends cleanly at the best model so far"},
                    "train.minutes"),
    "batch-size": Flag({"type": int}, "train.batch_size"),
    "lr": Flag({"type": float}, "train.lr"),
    "frames": Flag({"type": int, "help": "window length T (odd)"}, "data.frames"),
    "seed": Flag({"type": int}, "train.seed"),
    "masks": Flag({"choices": MASK_SOURCES, "help": "boxes of tracked objects (default) or random boxes"}, "data.masks"),
    # objects (ddlvad track)
    "object-detector": Flag({"help": "motion (default, offline) or onnx:PATH (a YOLO-style ONNX export)"},
                            "objects.detector"),
    "tracker": Flag({"choices": TRACKERS, "help": "multi-object tracker (default: ocsort)"}, "objects.tracker"),
    "classes": Flag({"help": "class ids an ONNX detector keeps, comma-separated (default: 0, person)"},
                    "objects.classes"),
    "score-threshold": Flag({"type": float, "help": "smallest score an ONNX detector keeps"}, "objects.score_threshold"),
    "split": Flag({"choices": ("training", "testing", "all"), "default": "training"}),
    "import-json": Flag({"metavar": "FILE", "help": "import the reference code's tracked-box JSON instead of detecting"}),
    "preview": Flag({"metavar": "DIR", "help": "write a montage of frames with boxes and ids per video"}),
    # training
    "tracks": Flag({"help": "a tracks .npz to paste pseudo anomalies into (default: cache / run tracking)"}),
    "resume": Flag({"action": "store_true", "help": "continue the run in --out from its checkpoint"}),
    "all-scenes": Flag({"action": "store_true",
                        "help": "ShanghaiTech: train one model per scene into OUT/scene-S (child processes)"}),
    "jobs": Flag({"type": int, "default": 1, "help": "with --all-scenes: scenes trained at a time (default: 1)"}),
    "scenes-without-test": Flag({"choices": ("train", "skip"), "default": "train",
                                 "help": "with --all-scenes: train scenes that have no test videos (default) or "
                                         "skip them"}),
    # evaluation
    "run": Flag({"help": "run folder (holds checkpoint.pt)"}),
    "protocol": Flag({"default": DEFAULT_PROTOCOL, "choices": tuple(PROTOCOLS),
                      "help": "paper (median 17), raw, gaussian, minmax"}),
    "smoothing": Flag({"choices": SMOOTHINGS}),
    "window": Flag({"type": int, "help": "median filter window (frames)"}),
    "sigma": Flag({"type": float, "help": "gaussian smoothing sigma (frames)"}),
    "normalise": Flag({"choices": NORMALISATIONS, "help": "per-video score normalisation"}),
    "flip": Flag({"action": "store_true",
                  "help": "beyond the paper: average each error map with the mirrored frames' (2x scoring time)"}),
    "engine": Flag({"choices": ENGINE_CHOICES, "help": "what runs the network: torch, onnxruntime, openvino, or auto "
                                                       "(the fastest here that matches torch; default: the run's "
                                                       "score.engine, torch)"}),
    "position": Flag({"choices": POSITIONS, "help": "beyond the paper: mean divides each place's error by its "
                                                  "normal level (measured on training frames when the run has none)"}),
    "scale": Flag({"type": float, "help": "beyond the paper: score frames at the training size times this "
                                          "factor (e.g. 1.25; default: the run's score.scale, 1)"}),
    "no-plots": Flag({"action": "store_true"}),
    "gt-tracks": Flag({"metavar": "FOLDER",
                       "help": "annotated tracks for RBDC/TBDC as published: VIDEO.txt per test video, a line "
                               "track_id,frame,x_min,y_min,x_max,y_max per box (0-based frames, inclusive pixel "
                               "corners of the video's frames) (default: ShanghaiTech's published tracks where the "
                               "dataset keeps them, else tracks cut from the pixel masks, not comparable)"}),
    # detection
    "source": Flag({"help": "video file, folder of frame images, camera index (0) or stream URL"}),
    "threshold": Flag({"type": float, "help": "frame score above which a frame is anomalous (default: the run's; 0: every "
                                                  "scored frame)"}),
    "batch": Flag({"type": int, "help": "windows per forward pass (default: score.batch_size; 1 for live streams)"}),
    "no-overlay": Flag({"action": "store_true", "help": "do not write overlay.mp4"}),
    "max-frames": Flag({"type": int, "help": "stop after N frames"}),
    "fps": Flag({"type": float, "help": "frame rate for frame times (default: the source's; folders: 25)"}),
    "gap": Flag({"type": int, "default": EventRules.gap,
                 "help": f"merge anomalous runs separated by at most this many frames (default {EventRules.gap})"}),
    "min-frames": Flag({"type": int, "default": EventRules.min_frames,
                        "help": f"drop events shorter than this many frames (default {EventRules.min_frames})"}),
    "format": Flag({"required": True, "choices": ("onnx", "torchscript")}),
    # watching cameras
    "target": Flag({"metavar": "CONFIG_OR_SOURCE", "help": "a watch configuration (.yaml) listing cameras, or one "
                                                          "source (camera index, URL, file, folder) with --run"}),
    "check": Flag({"action": "store_true", "help": "validate the configuration, load each model and open each source "
                                                   "once, then exit"}),
    "json": Flag({"action": "store_true", "help": "print JSON"}),
    # every command (and before the command): added by build_parser, not listed in COMMANDS
    "debug": Flag({"action": "store_true", "help": "show the traceback of an error instead of one line"}),
}
POSITIONAL = {"root", "source", "target"}
CONFIG_FLAGS = ("preset", "config", "set", "mode", "model", "epochs", "steps", "until", "minutes", "batch-size", "lr",
                "frames", "seed",
                "dataset", "scene", "cache-dir", "masks")
OBJECT_FLAGS = ("object-detector", "tracker", "classes", "score-threshold")


# ---------------------------------------------------------------------- the commands
def _demo(args: argparse.Namespace) -> int:
    from .commands.demo import demo

    result = demo(args.out, seed=args.seed, force=args.force, steps=args.steps, progress=not args.quiet)
    why = {"minutes": "its time budget", "converged": "convergence", "steps": "its step budget"}[result["stopped"]]
    print(f"demo: frame-level AUC {100 * result['auc_micro']:.2f} % (micro, {result['protocol']['name']} "
          f"protocol) in {result['minutes']:.1f} min; training {result['training_minutes']:.1f} min, "
          f"{result['steps']} steps, stopped by {why}; report: {Path(args.out) / 'report.json'}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .commands.data import synth

    desc = synth(args.out, seed=args.seed, force=args.force, scene=args.scene)
    abnormal = sum(v["abnormal_frames"] for v in desc["testing"].values())
    print(f"wrote {args.out}: {desc['spec']['train_videos']} training and {desc['spec']['test_videos']} "
          f"testing videos of {desc['spec']['frames']} frames, {abnormal} abnormal test frames")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .checkpoint import resume_config_file
    from .commands.scenes import train_scenes
    from .commands.train import train
    from .distributed import is_main

    if args.jobs != 1 and not args.all_scenes:
        raise UserError("--jobs goes with --all-scenes (scenes trained at a time)")
    if args.resume and not args.all_scenes:
        args.config = str(resume_config_file(args.out, args.config, args.preset))
    cfg = build_config(args)
    out = args.out or f"runs/{Path(args.data).name}-{cfg.model.arch}-{cfg.ddl.mode}"
    if args.all_scenes:
        train_scenes(cfg, args.data, out, jobs=args.jobs, resume=args.resume, force=args.force,
                     tracks_file=args.tracks, without_test=args.scenes_without_test)
        return 0
    summary = train(cfg, args.data, out, resume=args.resume, force=args.force, tracks_file=args.tracks,
                    progress=not args.quiet)
    if is_main():
        print(json.dumps(summary))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .commands.evaluate import evaluate
    from .commands.scenes import evaluate_scenes
    from .distributed import is_main
    from .report import print_scene_summary, print_summary
    from .runs import SCENE_RUN, is_scene_folder

    overrides = {k: v for k, v in {"smoothing": args.smoothing, "window": args.window,
                                   "sigma": args.sigma, "normalise": args.normalise,
                                   "flip": args.flip or None, "scale": args.scale,
                                   "position": args.position}.items() if v is not None}
    common = dict(protocol=args.protocol, protocol_overrides=overrides, out=args.out, cache_dir=args.cache_dir,
                  engine=args.engine,
                  plots=not args.no_plots, progress=not args.quiet, gt_tracks=args.gt_tracks)
    if is_scene_folder(args.run):
        if args.scene:
            raise UserError(f"{args.run} holds one run per scene: evaluate one scene with "
                            f"`ddlvad evaluate {Path(args.run) / SCENE_RUN.format(args.scene)} --data ...`")
        report = evaluate_scenes(args.run, args.data, **common)
        if is_main():
            print_scene_summary(report)
        return 0
    report = evaluate(args.run, args.data, dataset=args.dataset, scene=args.scene, **common)
    if is_main():
        print_summary(report)
    return 0


def _detect(args: argparse.Namespace) -> int:
    from .commands.detect import detect

    report = detect(args.run, args.source, args.out, threshold=args.threshold, batch_size=args.batch,
                    overlay=not args.no_overlay, max_frames=args.max_frames, fps=args.fps,
                    rules=EventRules(args.gap, args.min_frames), engine=args.engine)
    print(f"detect: {report['frames']} frames ({report['frames_scored']} scored) at {report['frames_per_second']} "
          f"frames/s, {len(report['events'])} events above {report['threshold']:.4g} "
          f"({report['threshold_origin']} threshold) -> {report['out']}")
    if report["stopped"]:
        print(f"ddlvad: warning: {report['stopped']}; the outputs are complete up to frame {report['frames'] - 1}",
              file=sys.stderr)
        return 1
    return 0


def _watch(args: argparse.Namespace) -> int:
    from .commands.watch import check, watch, watch_config

    cfg = watch_config(args.target, args.run, threshold=args.threshold, fps=args.fps)
    if args.check:
        check(cfg)
        print(f"watch: {args.target}: {len(cfg.cameras)} camera(s) ready")
        return 0
    watch(cfg)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .commands.export import export

    path = export(args.run, args.format, args.out)
    print(f"wrote {path} ({args.format}): clip (B, C, T, H, W) in [0, 1] -> reconstruction (B, C, H, W), "
          f"error (B, H, W), score (B,)")
    return 0


def _track(args: argparse.Namespace) -> int:
    from .commands.track import track

    track(build_config(args), args.root, args.split, import_json=args.import_json, preview=args.preview,
          progress=not args.quiet)
    return 0


def _data_info(args: argparse.Namespace) -> int:
    from .commands.data import info, print_info

    summary = info(args.root, args.dataset, args.scene)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_info(summary)
    return 0


def _config(args: argparse.Namespace) -> int:
    print(build_config(args).validate().to_yaml(), end="")
    return 0


@dataclass(frozen=True)
class Command:
    help: str
    run: Callable[[argparse.Namespace], int]
    flags: tuple[str, ...]
    """Names in :data:`FLAGS`, in the order of ``--help``."""
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per-flag argparse settings that differ for this command (defaults, help)."""
    description: str | None = None


COMMANDS: dict[str, Command] = {
    "demo": Command(f"synthetic scene -> track -> train ({DEMO['preset']} preset at "
                    f"{DEMO['overrides']['data.height']}x{DEMO['overrides']['data.width']}, latent "
                    f"{DEMO['overrides']['model.latent']}) -> evaluate", _demo,
                    ("out", "seed", "steps", "force", "quiet"),
                    {"out": {"default": "ddlvad-demo", "help": "output folder (default: ./ddlvad-demo)"},
                     "seed": {"default": 0, "help": "seed of the scene and of training (default: 0)"},
                     "steps": {"help": "training steps (default: the demo's budget)"},
                     "force": {"help": "replace an earlier demo in --out"}}),
    "synth": Command("write a synthetic surveillance dataset (folder layout)", _synth, ("out", "seed", "force", "scene"),
                     {"out": {"positional": True}, "seed": {"default": 0},
                      "scene": {"default": "walkway", "help": "walkway (default), perspective, crowd, lighting, "
                                                              "distant or fast (src/ddlvad/data/scenes.py)"},
                      "force": {"help": "write into a folder that is not empty"}}),
    "train": Command(f"train a model (default preset: {DEFAULT_PRESET})", _train,
                     ("data", "out", "tracks", "resume", "force", "quiet", "all-scenes", "jobs", "scenes-without-test",
                      *CONFIG_FLAGS),
                     {"out": {"help": "run folder (default: runs/<dataset>-<arch>-<mode>)"},
                      "force": {"help": "replace the run in --out"}}),
    "evaluate": Command("score the test split and write report.json, scores.csv, plots, report.html", _evaluate,
                        ("run", "data", "dataset", "scene", "cache-dir", "protocol", "smoothing", "window", "sigma",
                         "normalise", "flip", "scale", "position", "engine", "gt-tracks", "out", "no-plots", "quiet"),
                        {"run": {"positional": True, "help": "run folder (holds checkpoint.pt), or a folder of "
                                                              "per-scene runs (scene-*/)"},
                         "out": {"help": "output folder (default: RUN/eval)"}}),
    "detect": Command("score a video file, frame folder or live stream: scores, events, overlay", _detect,
                      ("source", "run", "out", "threshold", "batch", "no-overlay", "max-frames", "fps", "gap",
                       "min-frames", "engine"),
                      {"run": {"required": True}, "out": {"help": "output folder (default: RUN/detect/<source name>)"}},
                      description="Exit status: 0 when the source was read to its end (or --max-frames), 1 when a "
                                  "live stream stopped sending frames (the outputs are complete up to there), 2 for "
                                  "bad input, 130 after Ctrl-C (outputs closed and valid)."),
    "watch": Command("watch cameras: score live streams, store events with snapshots and clips, notify, serve a page",
                     _watch, ("target", "run", "threshold", "fps", "check"),
                     {"run": {"help": "run folder whose model scores SOURCE (one camera without a configuration)"},
                      "fps": {"help": "score at most this many frames per second (one camera)"},
                      "threshold": {"help": "frame score above which a frame is anomalous (one camera; default: "
                                            "the run's)"}},
                     description="Runs until Ctrl-C or SIGTERM (open events are then closed and their clips "
                                 "finalised). A configuration lists cameras, models, the database, media folder, "
                                 "retention, page, webhook and MQTT: see README, 'Watch cameras'."),
    "export": Command("export a run's model to ONNX or TorchScript (clip -> recon, error, score)", _export,
                      ("run", "format", "out"),
                      {"run": {"positional": True},
                       "out": {"help": "output file (default: RUN/model.onnx or RUN/model.torchscript.pt)"}}),
    "track": Command("detect and track objects: the boxes pseudo anomalies are pasted into", _track,
                     ("root", "dataset", "scene", "cache-dir", "split", *OBJECT_FLAGS, "import-json", "preview",
                      "quiet")),
    "config": Command("print a resolved configuration as YAML", _config, CONFIG_FLAGS),
}
DATA_COMMANDS: dict[str, Command] = {
    "info": Command("layout, videos, frames, scenes and abnormal frames of ROOT", _data_info,
                    ("root", "dataset", "scene", "json")),
}


# ---------------------------------------------------------------------- parser and config
class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # a value such as -1e-3, -inf or -nan is a value, not an unknown option (argparse knows only -1, -.5)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$|^-(inf|infinity|nan)$",
                                                   re.IGNORECASE)

    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage + message)
        raise UserError(f"{message} (see `{self.prog} --help`)")


def _add_command(sub, name: str, command: Command) -> None:
    p = sub.add_parser(name, help=command.help, description=command.description)
    p.set_defaults(handler=command.run)
    for flag in command.flags:
        kwargs = {**FLAGS[flag].kwargs, **command.overrides.get(flag, {})}
        positional = kwargs.pop("positional", flag in POSITIONAL)
        if positional:
            kwargs.pop("required", None)
            p.add_argument(flag.replace("-", "_"), **kwargs)
        else:
            p.add_argument(f"--{flag}", *FLAGS[flag].names, **kwargs)
    _add_debug(p, before_command=False)


def _add_debug(parser: argparse.ArgumentParser, before_command: bool) -> None:
    """``--debug`` before the command (default False) or after it: there the default is left out,
    so that a ``--debug`` given before the command is not reset by the command's parser."""
    parser.add_argument("--debug", **{**FLAGS["debug"].kwargs, **({} if before_command else {"default": argparse.SUPPRESS})})


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddlvad", description="Video anomaly detection with Dynamic Distinction Learning.",
                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_debug(parser, before_command=True)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        _add_command(sub, name, command)
    data = sub.add_parser("data", help="inspect datasets")
    _add_debug(data, before_command=False)
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    for name, command in DATA_COMMANDS.items():
        _add_command(data_sub, name, command)
    return parser


def build_config(args: argparse.Namespace) -> Config:
    """The run's config: the preset (or ``--config``), then the flags that set config keys
    (:data:`FLAGS`), then ``--set``. Not validated here: each command validates it once, at its boundary
    (:meth:`Config.validate`)."""
    preset, config_file = getattr(args, "preset", None), getattr(args, "config", None)
    if preset and config_file:
        raise UserError(f"--preset {preset} and --config {config_file} both choose where the config starts: "
                        f"give one (add --set KEY=VALUE to change single fields)")
    cfg = Config.from_yaml(config_file) if config_file else Config.preset(preset or DEFAULT_PRESET)
    flags = {flag.key: getattr(args, name.replace("-", "_"), None) for name, flag in FLAGS.items() if flag.key}
    arch, frames = flags.get("model.arch"), flags.get("data.frames")
    if arch == "unet" and frames is None:
        flags["data.frames"] = 1
    if arch == "c3dsu" and frames is None and cfg.data.frames == 1:
        flags["data.frames"] = 3
    sets = getattr(args, "set", None) or []
    given = {k for k, v in flags.items() if v is not None} | {s.partition("=")[0].strip() for s in sets}
    if "train.epochs" in given and "train.steps" not in given:
        cfg.train.steps = None  # epochs alone (flag or --set) replace the preset's step budget (cpu: 1180)
    cfg.apply({k: v for k, v in flags.items() if v is not None})
    cfg.override(sets)
    return cfg


def _version() -> str:
    from . import __version__

    return f"ddlvad {__version__}"


def _close_progress_bars() -> None:
    """End any open progress bar so that the error message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv  # until the arguments are parsed (an error of parsing comes first)
    try:
        args = build_parser().parse_args(argv)
        debug = args.debug
        return args.handler(args)
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
        from .trainer import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted):
            print(f"ddlvad: {exc}", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
