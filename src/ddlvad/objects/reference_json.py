"""Import the reference implementation's tracked-box JSON into a :class:`Tracks`.

The reference code reads one JSON dict per dataset split (docs/method.md §2.1)::

    {"/home/x/ped2/training/frames/01/003.jpg": {"0": {"box": [x1, y1, x2, y2], ...}, "4": {...}}, ...}

keys are frame file paths on the author's machine, values map a track id (int or string)
to a record whose ``box`` is normalised to [0, 1] (the reference loader reads
``bounding_boxes[frame][track]['box']``; other fields of the record are ignored). A bare
``[x1, y1, x2, y2]`` in place of the record, and a plain list per frame (track ids = list
positions), are accepted too.

Mapping onto our ids: the video id is the frame file's parent folder name (``01``), the
frame index is the last number in the file stem (``003`` -> 3; ``img_0007`` -> 7). Numbering
base, per video: 0-based if some file has index 0; 1-based if the largest index equals the
video's frame count or the smallest is 1; otherwise 0-based (a video whose first frames had
no box at all cannot be told apart; the choice is recorded in ``settings["index_base"]``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

import numpy as np

from ..data.tracks import Tracks
from ..errors import UserError

_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last run of digits


def _parse_key(key: str, path: Path) -> tuple[str, int]:
    p = PurePosixPath(key.replace("\\", "/"))
    m = _NUMBER.search(p.stem)
    if m is None or not p.parent.name:
        raise UserError(f"{path}: key {key!r} is not a frame file path like .../frames/01/003.jpg")
    return p.parent.name, int(m.group(1))


def _parse_boxes(value, key: str, path: Path) -> list[tuple[int, list[float]]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
    if items is None:
        raise UserError(f"{path}: value of {key!r} must be a dict {{track_id: box}} or a list of boxes")
    out = []
    for tid, box in items:
        if isinstance(box, dict):
            box = box.get("box")
        try:
            tid = int(tid)
            box = [float(v) for v in box]
        except (TypeError, ValueError):
            raise UserError(f"{path}: {key!r} has track {tid!r} -> {box!r}; expected an integer id and "
                            f"{{'box': [x1, y1, x2, y2]}} or [x1, y1, x2, y2]") from None
        if len(box) < 4 or tid < 0:
            raise UserError(f"{path}: {key!r} track {tid}: expected a non-negative id and [x1, y1, x2, y2]")
        if max(box[:4]) > 1.5:
            raise UserError(f"{path}: {key!r} track {tid} box {box[:4]} is in pixels; the reference format "
                            f"has boxes normalised to [0, 1]")
        out.append((tid, box[:4]))
    return out


def import_reference_json(path: str | Path, frame_counts: dict[str, int]) -> Tracks:
    """Read the reference JSON at ``path`` for the videos of ``frame_counts`` (video id ->
    number of frames). Returns Tracks with rows ``frame, track, x1, y1, x2, y2, 1.0``.

    Videos of ``frame_counts`` without any key get no boxes; they are listed in
    ``settings["videos_without_boxes"]``. Raises :class:`UserError` for an unreadable file,
    a video id that ``frame_counts`` lacks (e.g. the JSON of another split) and a frame
    index outside the video.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"reference tracks JSON {path} not found")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"reference tracks JSON {path} is unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of frame path -> boxes, got {type(data).__name__}")

    per_video: dict[str, list[tuple[int, int, list[float]]]] = {}  # vid -> (index, track, box)
    for key, value in data.items():
        vid, index = _parse_key(key, path)
        per_video.setdefault(vid, []).extend((index, tid, box) for tid, box in _parse_boxes(value, key, path))
        per_video[vid].append((index, -1, []))  # remember the index even if the frame is empty

    unknown = sorted(set(per_video) - set(frame_counts))
    if unknown:
        raise UserError(f"{path}: video(s) {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''} are not in "
                        f"the dataset (known: {', '.join(sorted(frame_counts)[:5])} ...); is this the JSON of "
                        f"another split or dataset?")

    tracks = Tracks(settings={"source": "reference-json", "path": str(path), "index_base": {}})
    for vid, n in frame_counts.items():
        entries = per_video.get(vid, [])
        indices = [i for i, _, _ in entries]
        base = 0
        if indices and min(indices) != 0 and (max(indices) == n or min(indices) == 1):
            base = 1
        rows = []
        for index, tid, box in entries:
            frame = index - base
            if not 0 <= frame < n:
                raise UserError(f"{path}: video {vid} frame file number {index} is outside its {n} frames "
                                f"({base}-based numbering); is the JSON from another version of the dataset?")
            if tid >= 0:
                rows.append([frame, tid, *np.clip(box, 0.0, 1.0), 1.0])
        if entries:
            tracks.settings["index_base"][vid] = base
        rows_arr = np.array(sorted(rows), np.float64).reshape(-1, 7)
        tracks.add(vid, n, rows_arr)
    tracks.settings["videos_without_boxes"] = sorted(v for v in frame_counts if v not in per_video)
    return tracks
