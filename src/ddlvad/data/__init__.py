"""Datasets on disk -> records (layouts, labels) -> decoded, cached frames (frames)."""

from __future__ import annotations

from .frames import FrameSpec, FrameStore, cached_frames, decode_video, default_cache_dir
from .info import summary
from .layouts import DATASETS, DatasetIndex, VideoRecord, detect_dataset, index_dataset

__all__ = [
    "DATASETS", "DatasetIndex", "FrameSpec", "FrameStore", "VideoRecord", "cached_frames",
    "decode_video", "default_cache_dir", "detect_dataset", "index_dataset", "summary",
]
