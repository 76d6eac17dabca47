"""A class-agnostic motion detector for fixed cameras (background subtraction).

DDL only needs *some* tracked box around each moving object (docs/method.md §2.1: the
pseudo anomaly is pasted inside one track's box), not a class label, so a background
model is enough on the fixed-camera benchmarks and needs no weights.

Pipeline per video:

1. Background from the temporal median of ``median_frames`` evenly spaced frames (moving
   objects vanish from the median); OpenCV's MOG2 is warmed up on that image
   (``warmup_frames`` feeds at ``warmup_learning_rate``) so that it flags objects from the
   first frame on instead of learning them as background.
2. Every frame is fed at a fixed, small ``learning_rate``; shadows (MOG2 value 127) are
   dropped; the mask is opened (removes speckle) and closed (fills holes), with kernels
   scaled to the frame size; ``merge`` dilates it so that the parts of one person (head,
   legs) join.
3. Connected components become boxes; tiny and huge ones are dropped.

Known limits (by design of background subtraction):

- objects that touch or overlap become one box (a group of pedestrians is one object);
- an object that stops moving is slowly absorbed into the background (after roughly
  ``1 / learning_rate`` frames) and its box disappears; one that is present in every
  frame *and never moves* is in the median and is never detected;
- camera motion, flicker or global illumination changes produce large false boxes (the
  ``max_area`` cut removes the worst of them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass
class MotionParams:
    """Settings of :class:`MotionDetector`. Sizes are fractions of the frame, so one set of
    defaults works on Ped2 (360x240) and Avenue (640x360) alike."""

    median_frames: int = 60
    """Evenly spaced frames whose per-pixel median is the initial background."""
    warmup_frames: int = 20
    """How many times the median image is fed to MOG2 before the first real frame."""
    warmup_learning_rate: float = 0.3
    """MOG2 learning rate of the warm-up feeds (1.0 would reset the model each time)."""
    learning_rate: float = 0.002
    """Fixed MOG2 learning rate on real frames; an object still for ~1/rate frames fades."""
    history: int = 500
    """MOG2 history length (only used by MOG2 when ``learning_rate`` < 0, i.e. automatic)."""
    var_threshold: float = 25.0
    """MOG2 squared Mahalanobis distance above which a pixel is foreground (25 = 5 sigma)."""
    var_min: float = 6.0
    """Lower bound of MOG2's per-pixel variance (grey levels^2); keeps camera noise and JPEG
    artefacts out of the foreground after the noise-free median warm-up."""
    blur: float = 0.006
    """Gaussian blur sigma before subtraction, as a fraction of the frame's shorter side
    (0 disables); suppresses pixel noise."""
    detect_shadows: bool = True
    """Let MOG2 label shadows (value 127); they are removed from the mask."""
    shadow_threshold: float = 0.7
    """MOG2 shadow test: a pixel darker than the background by a factor in
    [shadow_threshold, 1) with the same colour counts as shadow. On grey video every dark
    object passes the colour test: at OpenCV's 0.5 most Ped2 pedestrians vanish as "shadow",
    at 0.7 only their cast shadows do, which separates walkers that a shadow joined."""
    open_kernel: float = 0.008
    """Side of the elliptic opening kernel, fraction of the shorter frame side (speckle)."""
    close_kernel: float = 0.012
    """Side of the elliptic closing kernel, fraction of the shorter side (fills holes)."""
    merge: float = 0.0
    """Side of a dilation that joins nearby blobs of one object before labelling (0 disables).
    Boxes are fitted to the undilated mask. Off by default: on crowded Ped2 it joins
    neighbouring walkers more often than it repairs a split one."""
    min_area: float = 0.0012
    """Smallest box kept, as a fraction of the frame area (Ped2: ~100 px)."""
    max_area: float = 0.25
    """Largest box kept, as a fraction of the frame area (bigger = global change)."""

    def __post_init__(self) -> None:
        if not 0 < self.min_area < self.max_area <= 1:
            raise ValueError(f"MotionParams: need 0 < min_area ({self.min_area}) < max_area ({self.max_area}) <= 1")
        if self.median_frames < 1 or self.warmup_frames < 0:
            raise ValueError("MotionParams: median_frames must be >= 1 and warmup_frames >= 0")


def _odd_kernel(fraction: float, short_side: int) -> np.ndarray | None:
    size = int(round(fraction * short_side))
    if size < 2:
        return None
    size += 1 - size % 2  # odd, so the kernel is centred
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


class MotionDetector:
    """Boxes around moving blobs: ``detect_video(frames)`` -> per-frame ``(k, 5)`` arrays."""

    name = "motion"

    def __init__(self, params: MotionParams | None = None):
        self.params = params or MotionParams()

    def settings(self) -> dict:
        return {"name": self.name, "params": asdict(self.params), "opencv": cv2.__version__}

    def detect_video(self, frames: np.ndarray) -> list[np.ndarray]:
        """Detect moving objects in every frame of one video.

        ``frames``: uint8 ``(N, H, W, C)`` or ``(N, H, W)``, the whole video (the median
        background needs all of it). Returns ``N`` float32 arrays ``(k, 5)`` of
        ``x1, y1, x2, y2, score`` in pixels (x2/y2 exclusive); ``score`` in [0, 1] is the
        fraction of the box covered by the (undilated) foreground mask.
        """
        p = self.params
        frames = np.asarray(frames)
        if frames.ndim not in (3, 4) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N,H,W[,C]); got {frames.dtype} {frames.shape}")
        n, h, w = frames.shape[:3]
        short = min(h, w)
        sigma = p.blur * short
        k_open, k_close = _odd_kernel(p.open_kernel, short), _odd_kernel(p.close_kernel, short)
        k_merge = _odd_kernel(p.merge, short)
        min_px, max_px = p.min_area * h * w, p.max_area * h * w

        def prep(img: np.ndarray) -> np.ndarray:
            return cv2.GaussianBlur(img, (0, 0), sigma) if sigma >= 0.3 else img

        mog = cv2.createBackgroundSubtractorMOG2(history=p.history, varThreshold=p.var_threshold,
                                                 detectShadows=p.detect_shadows)
        mog.setVarMin(p.var_min)
        mog.setShadowThreshold(p.shadow_threshold)
        mog.setVarInit(max(p.var_min, mog.getVarInit()))
        pick = np.linspace(0, n - 1, min(n, p.median_frames)).round().astype(int)
        median = np.median(frames[pick], axis=0).astype(np.uint8)  # (H, W[, C])
        background = prep(median)
        for i in range(p.warmup_frames):
            mog.apply(background, learningRate=1.0 if i == 0 else p.warmup_learning_rate)

        out: list[np.ndarray] = []
        for frame in frames:
            mask = mog.apply(prep(frame), learningRate=p.learning_rate)  # (H, W) 0/127/255
            fg = (mask > 200).astype(np.uint8)  # drop shadows (127)
            if k_open is not None:
                fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, k_open)
            if k_close is not None:
                fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, k_close)
            joined = cv2.dilate(fg, k_merge) if k_merge is not None else fg
            count, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
            boxes = []
            for x, y, bw, bh, _area in stats[1:count]:  # label 0 is the background
                x1, y1, x2, y2 = x, y, x + bw, y + bh
                if k_merge is not None:  # undo the dilation's margin where the object is
                    ys, xs = np.nonzero(fg[y1:y2, x1:x2])
                    if len(xs) == 0:
                        continue
                    x1, x2, y1, y2 = x1 + xs.min(), x1 + xs.max() + 1, y1 + ys.min(), y1 + ys.max() + 1
                box_area = (x2 - x1) * (y2 - y1)
                if not min_px <= box_area <= max_px:
                    continue
                score = float(fg[y1:y2, x1:x2].mean())
                boxes.append((x1, y1, x2, y2, score))
            out.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 5))
        return out
