"""A JSON-ready summary of a :class:`DatasetIndex` (the ``ddlvad data info`` command)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .layouts import DatasetIndex, VideoRecord
from .video import first_frame_size, header_frame_count


def summary(index: DatasetIndex, frame_counts: Mapping[tuple[str, str], int] | None = None) -> dict[str, Any]:
    """Counts of videos, frames and abnormal frames, scenes and source frame size.

    Frames of a frame folder are counted as its image files. For a video file the count is
    ``frame_counts[(split, video_id)]`` when given (e.g. from ``FrameStore.lengths``, exact),
    else the header's ``CAP_PROP_FRAME_COUNT`` (a hint that can be off for damaged files);
    nothing is decoded.
    ``testing.abnormal_frames`` sums the labels of the testing videos that have them, and
    is None when none has. ``frame_size`` is ``[height, width]`` of the first source frame
    (training first, else testing), before any resizing.
    """
    counts = dict(frame_counts or {})

    def frames_of(record: VideoRecord) -> int:
        if (record.split, record.video_id) in counts:
            return int(counts[(record.split, record.video_id)])
        if record.frame_files is not None:
            return len(record.frame_files)
        return header_frame_count(record)

    labelled = [r.labels for r in index.testing if r.labels is not None]
    out: dict[str, Any] = {
        "dataset": index.dataset,
        "layout": index.layout,
        "root": str(index.root),
        "training": {"videos": len(index.training), "frames": sum(frames_of(r) for r in index.training)},
        "testing": {
            "videos": len(index.testing),
            "frames": sum(frames_of(r) for r in index.testing),
            "labelled_videos": len(labelled),
            "abnormal_frames": int(sum(int(np.sum(l)) for l in labelled)) if labelled else None,
        },
        "scenes": index.scenes(),
        "frame_size": None,
    }
    first = (index.training + index.testing)[:1]
    if first:
        out["frame_size"] = list(first_frame_size(first[0]))
    return out
