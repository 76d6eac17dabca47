"""What scoring choices alone do to one trained model's AUC (no retraining).

    python -m bench.experiments.scoring_levers RUN --data ../shared/data/ped2 [--json OUT.json]

The model of RUN scores every test frame once (error maps kept); then the frame scores are
re-derived under each variant and evaluated (micro / macro AUC):

- patch size 8, 16 (the paper's), 24, 32, on both grids (the reference) or the aligned grid
  only (the paper's text);
- ``dense``: the maximum of the anomaly map (every patch position, stride 1);
- ``flip``: the error maps of the frames and of their mirror images averaged (``score.flip``, test-time
  augmentation);
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
from ddlvad.data.frames import FrameSpec, FrameStore
from ddlvad.data.layouts import index_dataset
from ddlvad.evaluate import evaluate, get_protocol
from ddlvad.score import Scorer, anomaly_map, frame_scores


def error_maps(scorer: Scorer, frames: np.ndarray, flip: bool) -> tuple[np.ndarray, torch.Tensor]:
    """Indices of the scored frames and their error maps (N', H, W) (mirrored input when ``flip``)."""
    data = np.ascontiguousarray(frames[:, :, ::-1]) if flip else np.asarray(frames)
    index, maps = [], []
    for r in scorer.stream(data):
        if r.error is not None:
            index.append(r.index)
            maps.append(r.error.flip(-1) if flip else r.error)
    return np.array(index), torch.stack(maps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True)
    ap.add_argument("--cache-dir")
    ap.add_argument("--json")
    args = ap.parse_args()
    model, cfg, _ = load_model(args.run)
    if args.cache_dir:
        cfg.data.cache_dir = args.cache_dir
    index = index_dataset(args.data, cfg.data.dataset, cfg.data.scene, splits=("testing",))
    store = FrameStore(index.testing, FrameSpec.from_config(cfg.data), cfg.data.cache_dir)
    scorer = Scorer(model, cfg.score)
    maps = {}
    for record, frames in zip(store.videos, store.arrays):
        idx, plain = error_maps(scorer, frames, flip=False)
        _, mirrored = error_maps(scorer, frames, flip=True)
        maps[record.video_id] = (len(frames), idx, plain, mirrored, record.labels)

    def scores_of(video, reduce) -> np.ndarray:
        n, idx, plain, mirrored, _ = maps[video]
        out = np.full(n, np.nan)
        out[idx] = reduce(plain, mirrored).numpy()
        return out

    variants = {}
    for patch in (8, 16, 24, 32):
        for shifted in (True, False):
            sc = dataclasses.replace(cfg.score, patch=patch, shifted_grid=shifted)
            variants[f"patch {patch}{'' if shifted else ', aligned grid only'}"] = \
                lambda p, m, sc=sc: frame_scores(p, sc)
    variants["dense (anomaly-map max)"] = lambda p, m: anomaly_map(p, cfg.score).amax((1, 2))
    variants["flip (mean of mirrored maps)"] = lambda p, m: frame_scores((p + m) / 2, cfg.score)
    rows = []
    for name, reduce in variants.items():
        videos = {v: (scores_of(v, reduce), maps[v][4]) for v in maps}
        protocols = ("paper", "raw", "gaussian", "minmax") if name == "patch 16" else ("paper",)
        for protocol in protocols:
            report = evaluate(videos, get_protocol(protocol))
            rows.append({"variant": name, "protocol": protocol, "auc_micro": report["auc_micro"],
                         "auc_macro": report["auc_macro"]})
    print(f"machine: {machine()}\nrun: {args.run}")
    print(f"{'variant':34} {'protocol':9} {'micro':>7} {'macro':>7}")
    for r in rows:
        print(f"{r['variant']:34} {r['protocol']:9} {100 * r['auc_micro']:7.2f} {100 * r['auc_macro']:7.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"run": args.run, "machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
