"""``ddlvad evaluate``: score every test frame with a trained model and write the report files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import distributed
from ..checkpoint import load_model, model_file
from ..config import Config, LocalisationProtocol, get_protocol
from ..conv_layout import choose as choose_layout
from ..data.frames import FrameSpec, FrameStore
from ..data.labels import load_pixel_masks
from ..data.layouts import DatasetIndex, VideoRecord, index_dataset
from ..errors import UserError
from ..localisation import MapEvaluation
from ..metrics import frame_metrics
from ..models import apply_layout
from ..report import write_evaluation
from ..runs import convergence_warning, evaluation_dir
from ..score import Scorer
from . import Log, silent, to_stderr


def score_split(scorer: Scorer, cfg: Config, index: DatasetIndex, progress: bool = True,
                maps: MapEvaluation | None = None) -> dict[str, np.ndarray]:
    """Frame scores (NaN at the edges) of every testing video, keyed by video id in index order.
    With ``maps``, the anomaly maps of the videos that have pixel masks go into it as well.

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
        show = progress and distributed.is_main()
        store = FrameStore(mine, FrameSpec.for_scoring(cfg), cfg.data.cache_dir, progress=show)
        for record, frames in tqdm(list(zip(store.videos, store.arrays)), desc="scoring", unit="video",
                                   disable=not show):
            if maps is not None and record.masks is not None:
                part[record.video_id] = _score_with_maps(scorer, record, frames, maps)
            else:
                part[record.video_id] = scorer.score_video(frames)
    scores = distributed.gather_dicts(part)
    if maps is not None:
        for state in distributed.gather_list(maps.state()):
            maps.merge(state)
    return {r.video_id: scores[r.video_id] for r in records}


def _score_with_maps(scorer: Scorer, record: VideoRecord, frames: np.ndarray, maps: MapEvaluation) -> np.ndarray:
    """Frame scores of one video; each scored frame's anomaly map and mask go into ``maps``."""
    masks = load_pixel_masks(record.masks, frames.shape[1:3])
    if len(masks) != len(frames):
        raise UserError(f"pixel masks of {record.name} in {record.masks}: {len(masks)} masks for {len(frames)} "
                        f"frames; use the masks of this video")
    scores = []
    for r in scorer.stream(frames):
        scores.append(r.score)
        if r.anomaly_map is not None:  # edge frames are dropped, masks with them
            maps.add(record.video_id, r.anomaly_map.numpy(), masks[r.index])
    return np.array(scores, dtype=np.float64)


LOCALISATION_PROTOCOL = {
    "map": "anomaly map: each pixel's largest patch-mean error over the patch x patch windows containing it "
           "(stride 1), at the model's frame size; masks resized to it (nearest neighbour); edge frames dropped",
    "pixel_auc": "UCSD rule: at threshold t a frame is abnormal when any pixel of its map exceeds t; an abnormal "
                 "frame counts as detected only when the pixels above t cover >= 40 % of its mask",
    "rbdc_tbdc": "Ramachandra & Jones (WACV 2020): regions = connected components (8-connected) of map > t at each "
                 "level t; a ground-truth region (connected component of a mask) is detected by a region with "
                 "IoU >= 0.1; a region overlapping no ground-truth region with IoU >= 0.1 is a false positive; a "
                 "ground-truth track (regions linked by overlap in consecutive frames) is detected when >= 10 % "
                 "of its regions are; area under detection rate vs false positives per frame for FPR in [0, 1], "
                 "the best rate reachable at each FPR",
}


def _frame_count(record: VideoRecord) -> int:
    """Frames of a video, known without decoding it (1 when unknown): the weight of its share."""
    if record.frame_files is not None:
        return len(record.frame_files)
    return len(record.labels) if record.labels is not None else 1


@distributed.collective
def evaluate(run: str | Path, root: str | Path, *, dataset: str | None = None, scene: str | None = None,
             protocol: str = "paper", protocol_overrides: dict | None = None, out: str | Path | None = None,
             cache_dir: str | None = None, plots: bool = True, progress: bool = True, log: Log = to_stderr,
             keep_scores: dict | None = None, localisation: bool = True) -> dict:
    """Score every test frame of ``root`` with the trained model of ``run`` and write
    ``report.json``, ``scores.csv``, plots and ``report.html`` (default ``RUN/eval``).

    Under torchrun the videos are shared among the ranks (:func:`score_split`) and rank 0
    writes the files; every rank returns the report. ``keep_scores``, when given, receives
    ``video id -> (scores, labels)``. Where the test videos have pixel masks (and
    ``localisation``), ``report["localisation"]`` holds the pixel AUC, RBDC and TBDC.
    """
    run = Path(run)
    if not distributed.is_main():
        log, progress = silent, False
    model, cfg, ckpt = load_model(run)
    warning = convergence_warning(ckpt, run)
    if warning:
        log(warning)
    apply_layout(model, distributed.run_on_main(choose_layout, cfg, "score", distributed.device()))
    model.to(distributed.device())
    for key, value in (("dataset", dataset), ("scene", scene), ("cache_dir", cache_dir)):
        if value is not None:
            setattr(cfg.data, key, value)
    proto = get_protocol(protocol, **{"patch": cfg.score.patch, "shifted_grid": cfg.score.shifted_grid,
                                      "flip": cfg.score.flip, "scale": cfg.score.scale,
                                      **(protocol_overrides or {})})
    cfg.score.flip, cfg.score.scale = proto.flip, proto.scale
    spec = FrameSpec.for_scoring(cfg)
    index = index_dataset(root, cfg.data.dataset, cfg.data.scene, splits=("testing",))
    maps = None
    if localisation and any(r.masks is not None for r in index.testing):
        protocol = LocalisationProtocol()
        maps = MapEvaluation(protocol.levels(ckpt.get("threshold")), protocol)
    t0 = time.perf_counter()
    scores = score_split(Scorer(model, cfg.score), cfg, index, progress, maps)
    seconds = time.perf_counter() - t0
    videos = {r.video_id: (scores[r.video_id], r.labels) for r in index.testing}
    report = frame_metrics(videos, proto)
    if maps is not None:
        report["localisation"] = {**maps.result([r.video_id for r in index.testing]),
                                  "protocol": LOCALISATION_PROTOCOL}
    report.update({
        "run": str(run), "data": str(Path(root)), "dataset": index.dataset, "scene": cfg.data.scene,
        "model": {"arch": cfg.model.arch, "mode": cfg.ddl.mode, "latent": cfg.model.latent,
                  "frames": cfg.data.frames, "size": [cfg.data.height, cfg.data.width],
                  "scored_size": [spec.height, spec.width],
                  "channels": cfg.data.channels, "steps": ckpt.get("step"),
                  "anomaly_weight": ckpt.get("anomaly_weight")},
        "scoring_seconds": round(seconds, 2),
        "scoring_fps": round(sum(len(a) for a in scores.values()) / max(seconds, 1e-9), 1),
        "processes": distributed.world_size() if distributed.is_active() else 1,
        "converged": ckpt.get("converged"), "model_file": str(model_file(run)),
    })
    if not report.get("labels_available"):
        log("note: the test split has no labels; scores are written but no AUC can be computed")
    distributed.run_on_main(write_evaluation, Path(out) if out else evaluation_dir(run), report, videos, proto,
                            plots=plots)
    if keep_scores is not None:
        keep_scores.update(videos)
    return report
