"""Objects for DDL's pseudo anomalies (docs/method.md §2.1): detect, track, import, preview.

- :mod:`.motion`: :class:`MotionDetector` (MOG2 background subtraction, fixed cameras);
- :mod:`.onnx_detector`: :class:`OnnxDetector` (optional YOLO ONNX model, needs onnxruntime);
- :mod:`.tracking`: :func:`track_video`, :func:`track_dataset` (``trackers``' OC-SORT/ByteTrack);
- :mod:`.reference_json`: :func:`import_reference_json` (the reference code's JSON);
- :mod:`.preview`: :func:`draw_tracks`, :func:`montage`, :func:`write_preview`.

A detector is any object with ``detect_video(frames) -> list[(k, 5) array]`` (pixels).
"""

from .motion import MotionDetector, MotionParams
from .preview import draw_tracks, montage, write_preview
from .reference_json import import_reference_json
from .tracking import TRACKER_DEFAULTS, track_dataset, track_video

__all__ = ["MotionDetector", "MotionParams", "TRACKER_DEFAULTS", "draw_tracks", "import_reference_json",
           "montage", "track_dataset", "track_video", "write_preview"]
