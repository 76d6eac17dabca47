"""``ddlvad track``: detect and track objects, the boxes pseudo anomalies are pasted into."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..data.layouts import index_dataset
from ..objects.dataset import import_tracks, preview_tracks, track_split
from . import Log

SPLITS = {"training": ("training",), "testing": ("testing",), "all": ("training", "testing")}


def track(cfg: Config, root: str | Path, split: str = "training", *, import_json: str | Path | None = None,
          preview: str | Path | None = None, progress: bool = True, log: Log = print) -> dict[str, Path]:
    """Track (or import, ``import_json``) the objects of ``split`` (``training``, ``testing`` or
    ``all``) of ``root`` into the cache; with ``preview``, write montages there. Returns
    ``split -> tracks file``."""
    cfg.validate()
    splits = SPLITS[split]
    index = index_dataset(root, cfg.data.dataset, cfg.data.scene, splits=splits)
    written = {}
    for name in splits:
        if import_json:
            tracks, path = import_tracks(index, name, import_json, cfg)
            log(f"imported {tracks.num_boxes()} boxes for {len(tracks.videos)} {name} videos -> {path}")
        else:
            tracks, path = track_split(index, name, cfg, progress=progress, log=log)
        if preview:
            images = preview_tracks(index, name, tracks, preview, cfg)
            log(f"previews: {len(images)} images in {preview}")
        written[name] = path
    return written
