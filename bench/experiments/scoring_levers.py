"""What scoring choices alone do to one trained model's AUC (no retraining).

    python -m bench.experiments.scoring_levers RUN --data ../shared/data/ped2 [--json OUT.json]

The model of RUN scores every test frame once (error maps kept); then the frame scores are
re-derived under each variant and evaluated (micro / macro AUC):

- patch size 8, 12, 16 (the paper's), 20, 24, 32, on both grids (the reference) or the aligned grid
  only (the paper's text);
- ``dense``: the maximum of the anomaly map (every patch position, stride 1);
- ``flip``: the error maps of the frames and of their mirror images averaged (``score.flip``, test-time
  augmentation);
- ``location``: each patch's mean minus its mean on normal training frames (the first
  ``--normal-frames`` of every training video): a per-position calibration of the error;
- ``motion``: only patches whose mean absolute frame difference exceeds k times the 90th
  percentile of that on normal frames (k = 1, 2) compete for the maximum, or every patch
  weighted by ``m / (m + p90)`` (a motion-aware stand-in for object-aware scoring);
- ``frame-relative``: the worst patch divided by (or minus) the frame's median patch: a
  per-frame normalisation that needs no other frame (unlike per-video min-max);
- each under the ``paper`` protocol (median 17) and, for the paper's patch, also ``raw``,
  ``gaussian`` (sigma 3) and per-video ``minmax`` normalisation.

Variants other than (patch 16, both grids, paper protocol) are beyond the paper: a report
that uses one says so in its protocol. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from bench.common import machine
from ddlvad.checkpoint import load_model
from ddlvad.config import get_protocol
from ddlvad.data.frames import FrameSpec, FrameStore
from ddlvad.data.layouts import index_dataset
from ddlvad.metrics import frame_metrics
from ddlvad.score import Scorer, anomaly_map, frame_scores, patch_grids


def error_maps(scorer: Scorer, frames: np.ndarray, flip: bool) -> tuple[np.ndarray, torch.Tensor]:
    """Indices of the scored frames and their error maps (N', H, W) (mirrored input when ``flip``)."""
    data = np.ascontiguousarray(frames[:, :, ::-1]) if flip else np.asarray(frames)
    index, maps = [], []
    for r in scorer.stream(data):
        if r.error is not None:
            index.append(r.index)
            maps.append(r.error.flip(-1) if flip else r.error)
    return np.array(index), torch.stack(maps)


@dataclasses.dataclass
class VideoMaps:
    """One test video's scored frames: error maps and the patch statistics the variants read."""

    frames: int
    index: np.ndarray
    """Indices of the scored frames."""
    labels: np.ndarray | None
    plain: torch.Tensor
    """(N', H, W) error maps."""
    mirrored: torch.Tensor
    """(N', H, W) error maps of the mirrored frames, mirrored back."""
    means: torch.Tensor
    """(N', P) patch means of ``plain`` over the scoring grids."""
    motion: torch.Tensor
    """(N', P) patch means of the frames' motion (:func:`motion_maps`)."""


def motion_maps(frames: np.ndarray, index: np.ndarray) -> torch.Tensor:
    """(N', H, W) mean absolute difference of each scored frame to its two neighbours (grey)."""
    x = torch.from_numpy(np.asarray(frames, dtype=np.float32)).mean(-1) / 255   # (N, H, W)
    diff = (x[1:] - x[:-1]).abs()
    motion = torch.zeros_like(x)
    motion[1:] += diff
    motion[:-1] += diff
    return motion[index] / 2


def patches(maps: torch.Tensor, score) -> torch.Tensor:
    """(N, H, W) maps -> (N, P) their patch means over the scoring grids."""
    return torch.cat([means.flatten(1) for _, means in patch_grids(maps, score)], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache-dir")
    ap.add_argument("--json")
    ap.add_argument("--normal-frames", type=int, default=40,
                    help="frames from the start of each training video for the location and motion statistics")
    args = ap.parse_args()
    model, cfg, _ = load_model(args.run)
    if args.cache_dir:
        cfg.data.cache_dir = args.cache_dir
    index = index_dataset(args.data, cfg.data.dataset, cfg.data.scene, splits=("training", "testing"))
    spec = FrameSpec.from_config(cfg.data)
    scorer = Scorer(model, cfg.score)
    normal_error, normal_motion = [], []
    for frames in FrameStore(index.training, spec, cfg.data.cache_dir).arrays:
        idx, plain = error_maps(scorer, frames[:args.normal_frames], flip=False)
        normal_error.append(patches(plain, cfg.score))
        normal_motion.append(patches(motion_maps(frames[:args.normal_frames], idx), cfg.score))
    normal_mean = torch.cat(normal_error).mean(0)                         # (P,)
    motion_p90 = float(torch.quantile(torch.cat(normal_motion).flatten()[::7], 0.9))  # every 7th patch: a thinned sample
    store = FrameStore(index.testing, spec, cfg.data.cache_dir)
    maps = {}
    for record, frames in zip(store.videos, store.arrays):
        idx, plain = error_maps(scorer, frames, flip=False)
        _, mirrored = error_maps(scorer, frames, flip=True)
        maps[record.video_id] = VideoMaps(len(frames), idx, record.labels, plain, mirrored,
                                          patches(plain, cfg.score), patches(motion_maps(frames, idx), cfg.score))

    def scores_of(v: VideoMaps, reduce) -> np.ndarray:
        out = np.full(v.frames, np.nan)
        out[v.index] = reduce(v).numpy()
        return out

    variants = {}
    for patch in (8, 12, 16, 20, 24, 32):
        for shifted in (True, False):
            sc = dataclasses.replace(cfg.score, patch=patch, shifted_grid=shifted)
            variants[f"patch {patch}{'' if shifted else ', aligned grid only'}"] = \
                lambda v, sc=sc: frame_scores(v.plain, sc)
    variants["dense (anomaly-map max)"] = lambda v: anomaly_map(v.plain, cfg.score).amax((1, 2))
    variants["flip (mean of mirrored maps)"] = lambda v: frame_scores((v.plain + v.mirrored) / 2, cfg.score)
    variants["location (minus normal mean)"] = lambda v: (v.means - normal_mean).amax(1)
    for k in (1, 2):
        variants[f"motion > {k} x p90 only"] = lambda v, k=k: \
            torch.where(v.motion > k * motion_p90, v.means, 0.0).amax(1)
    variants["motion-weighted m/(m+p90)"] = lambda v: (v.means * v.motion / (v.motion + motion_p90)).amax(1)
    variants["frame-relative: max / median patch"] = lambda v: v.means.amax(1) / v.means.median(1).values
    variants["frame-relative: max - median patch"] = lambda v: v.means.amax(1) - v.means.median(1).values
    rows = []
    for name, reduce in variants.items():
        videos = {video: (scores_of(v, reduce), v.labels) for video, v in maps.items()}
        protocols = ("paper", "raw", "gaussian", "minmax") if name == "patch 16" else ("paper",)
        for protocol in protocols:
            report = frame_metrics(videos, get_protocol(protocol))
            rows.append({"variant": name, "protocol": protocol, "auc_micro": report["auc_micro"],
                         "videos": {v: row["auc"] for v, row in report["videos"].items()},
                         "auc_macro": report["auc_macro"]})
    print(f"machine: {machine()}\nrun: {args.run}")
    print(f"{'variant':34} {'protocol':9} {'micro':>7} {'macro':>7}")
    for r in rows:
        print(f"{r['variant']:34} {r['protocol']:9} {100 * r['auc_micro']:7.2f} {100 * r['auc_macro']:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": args.run, "machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
