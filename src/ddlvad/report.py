"""Evaluation outputs: ``report.json``, ``scores.csv``, ``plots/*.png``, ``report.html`` and the
console summaries. The numbers come from :mod:`ddlvad.metrics`; this module only writes
and prints them (every file atomically, through :mod:`ddlvad.files`).
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from .config import Protocol
from .files import atomic_write, safe_name, writable_dir
from .metrics import Pooled, pooled

Videos = dict[str, tuple[np.ndarray, "np.ndarray | None"]]
"""video id -> (frame scores with NaN at the edges, 0/1 labels or None)."""


def write_evaluation(out: Path, report: dict, videos: Videos, protocol: Protocol, plots: bool = True) -> None:
    """``report.json``, ``scores.csv`` (raw and smoothed score and label of every frame),
    and with ``plots`` a PNG per video, the ROC and the offline ``report.html``, in ``out``.
    Each file is written atomically (whole or the previous one), ``report.json`` last: when
    writing stops half-way (a full disk), the previous report.json is still there."""
    writable_dir(out)
    pool = pooled(videos, protocol)  # the smoothed/normalised curves the metrics were computed on
    atomic_write(out / "scores.csv", scores_csv(videos, pool))
    if plots:
        write_plots(out, report, videos, pool)
    atomic_write(out / "report.json", json.dumps(report, indent=2))


def scores_csv(videos: Videos, pool: Pooled) -> str:
    """``video, frame, score, smoothed, label`` per frame (empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["video", "frame", "score", "smoothed", "label"])
    for vid, (scores, labels) in videos.items():
        smoothed = pool.smoothed[vid]
        for i, s in enumerate(scores):
            writer.writerow([vid, i, _number(s), _number(smoothed[i]), "" if labels is None else int(labels[i])])
    return buffer.getvalue()


def write_plots(out: Path, report: dict, videos: Videos, pool: Pooled) -> None:
    """One score-over-time PNG per video, the ROC, and the offline HTML page."""
    from .plots import localisation_figure, roc_figure, save_figure, score_figure
    from .report_html import render_report

    images: dict[str, Path] = {}
    writable_dir(out / "plots")
    for vid, (scores, labels) in videos.items():
        fig = score_figure(vid, scores, pool.smoothed[vid], labels)
        images[vid] = save_figure(fig, out / "plots" / f"video_{safe_name(vid)}.png")
    loc = report.get("localisation") or {}
    if loc.get("curve"):
        images["localisation"] = save_figure(localisation_figure(loc["curve"], loc["rbdc"], loc["tbdc"]),
                                             out / "plots" / "localisation.png")
    if report.get("auc_micro") is not None:
        images["roc"] = save_figure(roc_figure(pool.scores, pool.labels, report["auc_micro"]), out / "plots" / "roc.png")
    atomic_write(out / "report.html", render_report(report, images, title=f"ddlvad evaluation: {report.get('run', '')}"))


def write_scene_report(out: Path, report: dict) -> None:
    """The aggregate ``report.json`` of a folder of per-scene runs."""
    writable_dir(out)
    atomic_write(out / "report.json", json.dumps(report, indent=2))


# ---------------------------------------------------------------------- console
def _pct(x: float | None) -> str:
    return "  -  " if x is None else f"{100 * x:6.2f}"


def _scale_note(protocol: dict) -> str:
    """`` scale=X (beyond the paper)`` when the frames were scored at another size than trained, and
    `` position=mean (beyond the paper)`` when errors were divided by their normal level."""
    scale, position = protocol.get("scale", 1.0), protocol.get("position", "none")
    return ("" if scale == 1 else f" scale={scale:g} (beyond the paper)") + \
        ("" if position == "none" else f" position={position} (beyond the paper)")


def print_summary(report: dict, stream: TextIO | None = None) -> None:
    """The protocol, a row per video and the pooled metrics of one evaluation."""
    stream = stream or sys.stdout
    p = report.get("protocol", {})
    print(f"protocol {p.get('name')}: smoothing={p.get('smoothing')} window={p.get('window')} "
          f"normalise={p.get('normalise')} edge={p.get('edge_frames')}"
          f"{' flip=true (beyond the paper)' if p.get('flip') else ''}{_scale_note(p)}", file=stream)
    print(f"{'video':>10} {'frames':>7} {'abnormal':>9} {'AUC %':>7}", file=stream)
    for vid, v in report.get("videos", {}).items():
        print(f"{vid:>10} {v['frames']:>7} {str(v.get('abnormal')):>9} {_pct(v.get('auc')):>7}", file=stream)
    print(f"AUC micro {_pct(report.get('auc_micro'))} | macro {_pct(report.get('auc_macro'))} | "
          f"EER {_pct(report.get('eer'))} | AP {_pct(report.get('ap'))} | "
          f"{report.get('frames_scored')} frames scored", file=stream)
    loc = report.get("localisation")
    if loc:
        source = (loc.get("protocol") or {}).get("track_source")
        source = "annotated" if source == "annotations" else "pixel-mask (not comparable to published RBDC/TBDC)"
        print(f"localisation: pixel AUC {_pct(loc.get('pixel_auc'))} | RBDC {_pct(loc.get('rbdc'))} | "
              f"TBDC {_pct(loc.get('tbdc'))} | {loc.get('frames')} frames with masks, {loc.get('regions')} "
              f"regions, {loc.get('tracks')} {source} tracks", file=stream)


def print_scene_summary(report: dict, stream: TextIO | None = None) -> None:
    """A row per scene and the aggregate figures of a folder of per-scene runs."""
    stream = stream or sys.stdout
    print(f"{'scene':>6} {'AUC %':>7}", file=stream)
    for scene, value in report["scenes"].items():
        print(f"{scene:>6} {_pct(value):>7}", file=stream)
    if report.get("missing"):
        print(f"no checkpoint: {', '.join(report['missing'])}", file=stream)
    if report.get("not_evaluated"):
        print(f"trained, no test videos: {', '.join(report['not_evaluated'])}", file=stream)
    print(f"scene AUC median {_pct(report['auc_scene_median'])} | mean {_pct(report['auc_scene_mean'])} | "
          f"pooled micro {_pct(report['auc_micro_pooled'])} | {report['n_scenes']} scenes, "
          f"{report['frames_scored']} frames scored", file=stream)


def _number(x: float) -> str:
    return "" if np.isnan(x) else f"{x:.6g}"
