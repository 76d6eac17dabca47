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
from ..data.labels import TrackAnnotation, load_pixel_masks, read_track_folder
from ..data.layouts import DatasetIndex, VideoRecord, find_track_annotations, index_dataset
from ..data.video import first_frame_size
from ..engines import load_engine
from ..errors import UserError
from ..localisation import MapEvaluation, annotated_box, describe_protocol
from ..metrics import frame_metrics
from ..models import apply_layout
from ..regions import Box
from ..report import write_evaluation
from ..runs import convergence_warning, evaluation_dir
from ..score import Scorer, position_weights
from . import Log, silent, to_stderr


def score_split(scorer: Scorer, cfg: Config, index: DatasetIndex, progress: bool = True,
                maps: MapEvaluation | None = None,
                annotations: dict[str, TrackAnnotation] | None = None) -> dict[str, np.ndarray]:
    """Frame scores (NaN at the edges) of every testing video, keyed by video id in index order.
    With ``maps``, the anomaly maps of the videos that have pixel masks go into it as well; when
    ``maps`` takes annotated tracks, those of every video, with its boxes from ``annotations``
    (video id -> its annotation file; a video without one has no annotated anomaly).

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
            if maps is not None and (maps.annotated or record.masks is not None):
                annotation = (annotations or {}).get(record.video_id)
                part[record.video_id] = _score_with_maps(scorer, record, frames, maps, annotation)
            else:
                part[record.video_id] = scorer.score_video(frames)
    scores = distributed.gather_dicts(part)
    if maps is not None:
        for state in distributed.gather_list(maps.state()):
            maps.merge(state)
    return {r.video_id: scores[r.video_id] for r in records}


def _score_with_maps(scorer: Scorer, record: VideoRecord, frames: np.ndarray, maps: MapEvaluation,
                     annotation: TrackAnnotation | None = None) -> np.ndarray:
    """Frame scores of one video; each scored frame's anomaly map, mask (where the video has
    masks) and annotated boxes (when ``maps`` takes annotated tracks) go into ``maps``."""
    size = frames.shape[1:3]  # (H, W) of the frames scored, hence of their anomaly maps
    masks = None
    if record.masks is not None:
        masks = load_pixel_masks(record.masks, size)
        if len(masks) != len(frames):
            raise UserError(f"pixel masks of {record.name} in {record.masks}: {len(masks)} masks for {len(frames)} "
                            f"frames; use the masks of this video")
    boxes = _annotated_boxes(record, annotation, len(frames), size) if maps.annotated else None
    scores = []
    for r in scorer.stream(frames):
        scores.append(r.score)
        if r.anomaly_map is not None:  # edge frames are dropped, masks and boxes with them
            maps.add(record.video_id, r.anomaly_map.numpy(), None if masks is None else masks[r.index],
                     None if boxes is None else boxes[r.index])
    return np.array(scores, dtype=np.float64)


def _annotated_boxes(record: VideoRecord, annotation: TrackAnnotation | None, count: int,
                     map_size: tuple[int, int]) -> list[list[tuple[int, Box]]]:
    """``(track id, box)`` per frame of one video, boxes scaled from the video's own frame size
    (the annotation's pixels) to ``map_size``; empty lists for a video without annotation."""
    out: list[list[tuple[int, Box]]] = [[] for _ in range(count)]
    if annotation is None:
        return out
    size = first_frame_size(record)
    for b in annotation.checked(count, size, record.name):
        out[b.frame].append((b.track, annotated_box(b[2:6], size, map_size)))
    return out


def _track_annotations(index: DatasetIndex, folder: str | Path | None,
                       log: Log) -> tuple[Path, dict[str, TrackAnnotation]] | None:
    """The annotated tracks for RBDC/TBDC: those of ``folder`` (``--gt-tracks``), else ShanghaiTech's
    published tracks where the dataset keeps them (:func:`find_track_annotations`), else None."""
    if folder is None:
        folder = find_track_annotations(index)
        if folder is None:
            return None
    elif not Path(folder).is_dir():
        raise UserError(f"--gt-tracks {folder}: does not exist or is not a folder (give the folder of VIDEO.txt "
                        f"track annotations)")
    folder = Path(folder)
    annotations = read_track_folder(folder, [r.video_id for r in index.testing])
    missing = [r.video_id for r in index.testing
               if r.video_id not in annotations and r.labels is not None and r.labels.any()]
    if missing:
        log(f"note: {len(missing)} test videos with abnormal frames have no track file in {folder} "
            f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}): RBDC/TBDC counts no anomaly in them")
    return folder, annotations


def _frame_count(record: VideoRecord) -> int:
    """Frames of a video, known without decoding it (1 when unknown): the weight of its share."""
    if record.frame_files is not None:
        return len(record.frame_files)
    return len(record.labels) if record.labels is not None else 1


@distributed.collective
def evaluate(run: str | Path, root: str | Path, *, dataset: str | None = None, scene: str | None = None,
             protocol: str = "paper", protocol_overrides: dict | None = None, out: str | Path | None = None,
             cache_dir: str | None = None, plots: bool = True, progress: bool = True, log: Log = to_stderr,
             keep_scores: dict | None = None, localisation: bool = True, gt_tracks: str | Path | None = None,
             engine: str | None = None) -> dict:
    """Score every test frame of ``root`` with the trained model of ``run`` and write
    ``report.json``, ``scores.csv``, plots and ``report.html`` (default ``RUN/eval``).

    Under torchrun the videos are shared among the ranks (:func:`score_split`) and rank 0
    writes the files; every rank returns the report. ``keep_scores``, when given, receives
    ``video id -> (scores, labels)``. Where the test videos have pixel masks or annotated tracks
    (and ``localisation``), ``report["localisation"]`` holds the pixel AUC, RBDC and TBDC and,
    under ``protocol``, how they were measured. RBDC/TBDC take their ground truth from the
    annotated tracks of ``gt_tracks`` (a folder of ``<video id>.txt``,
    :func:`ddlvad.data.labels.read_track_file`), else from ShanghaiTech's published tracks where
    the dataset keeps them (:data:`ddlvad.data.layouts.TRACK_ANNOTATION_FOLDERS`), else from the
    pixel masks (not the published protocol; the report says so).
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
                                      "flip": cfg.score.flip, "scale": cfg.score.scale, "position": cfg.score.position,
                                      **(protocol_overrides or {})})
    cfg.score.flip, cfg.score.scale = proto.flip, proto.scale
    weights = _position_weights(model, cfg, ckpt, proto.position, root, log)
    spec = FrameSpec.for_scoring(cfg)
    index = index_dataset(root, cfg.data.dataset, cfg.data.scene, splits=("testing",))
    maps, folder, annotations = None, None, None
    if localisation:
        folder, annotations = _track_annotations(index, gt_tracks, log) or (None, None)
    if annotations is not None or (localisation and any(r.masks is not None for r in index.testing)):
        loc_protocol = LocalisationProtocol()
        maps = MapEvaluation(loc_protocol.levels(ckpt.get("threshold")), loc_protocol,
                             annotated=annotations is not None)
    t0 = time.perf_counter()
    scoring = load_engine(model, cfg, engine or cfg.score.engine, cache_dir=cfg.data.cache_dir)  # score.engine
    scores = score_split(Scorer(scoring, cfg.score, weights=weights), cfg, index, progress, maps, annotations)
    seconds = time.perf_counter() - t0
    videos = {r.video_id: (scores[r.video_id], r.labels) for r in index.testing}
    report = frame_metrics(videos, proto)
    if maps is not None:
        described = describe_protocol(loc_protocol, maps.levels, None if folder is None else str(folder))
        report["localisation"] = {**maps.result([r.video_id for r in index.testing]), "protocol": described}
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


def _position_weights(model, cfg: Config, ckpt: dict, position: str, root: str | Path, log: Log):
    """The weights of ``score.position`` (docs/method.md#position): those the run stored when it was
    trained with them, else measured now on the first frames of ``root``'s training split (label-free)."""
    if position == "none":
        return None
    stored = (ckpt.get("position") or {}).get("weights") if cfg.score.position == position else None
    if stored is not None:
        return stored
    cfg.score.position = position
    index = index_dataset(root, cfg.data.dataset, cfg.data.scene, splits=("training",))
    store = FrameStore.of_split(index, "training", FrameSpec.for_scoring(cfg), cfg.data.cache_dir)
    weights = distributed.run_on_main(lambda: position_weights(Scorer(model, cfg.score), store.arrays))
    log(f"position statistics (--position {position}) measured on normal frames of {len(store.arrays)} training videos")
    return weights
