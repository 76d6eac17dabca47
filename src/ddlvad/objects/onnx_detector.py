"""Optional learned detector: a YOLO-style ONNX model run with onnxruntime.

onnxruntime is imported inside :class:`OnnxDetector`, so the package works without it
(``pip install ddlvad[onnx]`` adds it). Two output layouts are understood:

- raw YOLOv8/YOLO11 export: ``(1, 4 + nc, N)``, per anchor ``cx, cy, w, h`` (input
  pixels) followed by ``nc`` class scores; we pick each anchor's best class, keep
  ``classes`` above ``score_threshold`` and run NMS (``cv2.dnn.NMSBoxes``);
- post-NMS export (``nms=True``/end-to-end): ``(1, N, 6)`` rows
  ``x1, y1, x2, y2, score, class`` in input pixels; filtered by class and score only.

The two are told apart by the last axis: 6 means post-NMS (a raw export has thousands of
anchors there; ``(1, 6, 6)`` is read as raw with two classes).

Frames are letterboxed to ``input_size`` (aspect kept, grey 114 padding, RGB, [0, 1],
NCHW float32) and boxes mapped back to frame pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..config import ObjectsConfig
from ..errors import UserError

_DEFAULTS = ObjectsConfig()


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Resize ``frame`` (H, W, 3) to fit ``size`` x ``size`` with its aspect kept, pad with 114.

    Returns the padded image, the scale and the (left, top) padding in pixels.
    """
    h, w = frame.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = int(round(h * scale)), int(round(w * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.full((size, size, 3), 114, np.uint8)
    out[top:top + nh, left:left + nw] = resized
    return out, scale, (float(left), float(top))


class OnnxDetector:
    """Boxes of the chosen ``classes`` (COCO 0 = person) from a YOLO ONNX model."""

    name = "onnx"

    def __init__(self, path: str | Path, classes: Sequence[int] | None = tuple(_DEFAULTS.classes),
                 score_threshold: float = _DEFAULTS.score_threshold, nms_iou: float = 0.5, input_size: int = 640):
        self.path = Path(path)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.input_size = int(input_size)
        if not self.path.is_file():
            raise UserError(f"ONNX model {self.path} not found: check the path given to --object-detector onnx:PATH")
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the ONNX detector needs onnxruntime: pip install ddlvad[onnx]") from None
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"ONNX model {self.path} could not be loaded ({first[:200]}); "
                            f"re-export it or pick another file") from None
        self.input_name = self.session.get_inputs()[0].name
        self.runtime_version = ort.__version__

    def settings(self) -> dict:
        return {"name": self.name, "params": {"path": str(self.path), "classes": self.classes,
                                              "score_threshold": self.score_threshold,
                                              "nms_iou": self.nms_iou, "input_size": self.input_size},
                "onnxruntime": self.runtime_version}

    def detect_video(self, frames: np.ndarray) -> list[np.ndarray]:
        """``frames``: uint8 ``(N, H, W, C)`` (BGR, as cv2 reads them) or ``(N, H, W)``.
        Returns per frame a float32 ``(k, 5)`` array ``x1, y1, x2, y2, score`` in pixels."""
        frames = np.asarray(frames)
        return [self.detect(frame) for frame in frames]

    def detect(self, frame: np.ndarray) -> np.ndarray:
        if frame.ndim == 2 or frame.shape[2] == 1:
            frame = cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
        h, w = frame.shape[:2]
        img, scale, (left, top) = letterbox(frame, self.input_size)
        blob = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0  # (1, 3, S, S) RGB
        output = np.asarray(self.session.run(None, {self.input_name: blob})[0])
        boxes, scores, classes = self._decode(output)  # input-pixel xyxy (k, 4), (k,), (k,)
        keep = scores >= self.score_threshold
        if self.classes is not None:
            keep &= np.isin(classes, self.classes)
        boxes, scores = boxes[keep], scores[keep]
        if len(boxes) == 0:
            return np.zeros((0, 5), np.float32)
        boxes = (boxes - [left, top, left, top]) / scale  # back to frame pixels
        boxes = np.clip(boxes, 0, [w, h, w, h])
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return np.column_stack([boxes[ok], scores[ok]]).astype(np.float32)

    def _decode(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        expected = "(1, 4+nc, N) raw YOLOv8/YOLO11 or (1, N, 6) post-NMS"
        if output.ndim != 3 or output.shape[0] != 1:
            raise UserError(f"ONNX model {self.path}: output shape {tuple(output.shape)} is not {expected}")
        out = output[0].astype(np.float32)
        if out.shape[1] == 6 and out.shape[0] != 6:  # (N, 6) post-NMS
            return out[:, :4], out[:, 4], out[:, 5].astype(int)
        if out.shape[0] >= 5:  # (4 + nc, N) raw
            cx, cy, bw, bh = out[:4]
            cls_scores = out[4:]  # (nc, N)
            classes = cls_scores.argmax(0)
            scores = cls_scores.max(0)
            boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)  # (N, 4)
            keep = scores >= self.score_threshold
            boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
            if self.classes is not None:
                sel = np.isin(classes, self.classes)
                boxes, scores, classes = boxes[sel], scores[sel], classes[sel]
            if len(boxes) == 0:
                return boxes, scores, classes
            xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
            # class-aware NMS: offset each class far apart so boxes of different classes never overlap
            xywh[:, :2] += classes[:, None] * 4.0 * self.input_size
            idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.score_threshold, self.nms_iou)
            idx = np.asarray(idx, int).reshape(-1)
            return boxes[idx], scores[idx], classes[idx]
        raise UserError(f"ONNX model {self.path}: output shape {tuple(output.shape)} is not {expected}")
