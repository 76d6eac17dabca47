"""The frames of ``overlay.mp4``: what the detector saw, drawn for a person to check.

Each output frame is the source frame (resized to at most :data:`LONG_SIDE` pixels on its
long side) with the error map blended in as a heat map, the worst patch boxed (red when the
frame is anomalous, yellow otherwise), the anomalous regions boxed in magenta, the frame's
time and score, and below it a strip with the running score line of the last frames and the
threshold (a horizontal red line).
"""

from __future__ import annotations

import math
import time
from collections import deque

import cv2
import numpy as np

from .data.frames import FrameSpec, convert_frame
from .stream import FrameResult

LONG_SIDE = 640
"""Longest side of the overlay picture, pixels (smaller sources keep their size)."""
STRIP = 56
"""Height of the score strip under the picture, pixels."""
HEAT_FULL = 2.0
"""Pixel errors of ``HEAT_FULL x threshold`` and above get the hottest colour, blended at 70 %
(the opacity grows with the square of the error, so small errors leave the picture clear). With a
threshold of 0 (every scored frame anomalous) the largest score of the strip's frames takes the
place of ``HEAT_FULL x threshold``."""

RED, YELLOW, WHITE, GREY, MAGENTA = (0, 0, 255), (0, 220, 255), (255, 255, 255), (90, 90, 90), (255, 0, 255)


class OverlayRenderer:
    """Draws one BGR frame ``(height, width, 3)`` uint8 per :class:`FrameResult` whose
    ``image`` is an OpenCV image (as :class:`ddlvad.infer.VideoSource` yields them).

    ``source_shape``: the shape of the source's frames (sets the picture size);
    ``threshold``: the detection threshold (scales the heat map and the score strip);
    ``wall_clock``: frame times are unix times (live cameras), shown as the local time of day.
    """

    def __init__(self, source_shape: tuple[int, ...], threshold: float, wall_clock: bool = False) -> None:
        self.wall_clock = wall_clock
        h, w = source_shape[:2]
        scale = min(1.0, LONG_SIDE / max(h, w))
        self.picture = FrameSpec(max(2, round(h * scale / 2) * 2), max(2, round(w * scale / 2) * 2), 3)
        self.threshold = float(threshold)
        self.history: deque[tuple[float, bool]] = deque(maxlen=max(2, self.picture.width // 2))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the output frames, as ``cv2.VideoWriter`` wants it."""
        return self.picture.width, self.picture.height + STRIP

    def render(self, result: FrameResult) -> np.ndarray:
        """:meth:`note` the frame's score, then :meth:`draw` it."""
        self.note(result)
        return self.draw(result)

    def note(self, result: FrameResult) -> None:
        """Add the frame's score to the strip's history (without drawing: a live service draws only
        the frames someone looks at)."""
        self.history.append((result.score, result.anomalous))

    def draw(self, result: FrameResult) -> np.ndarray:
        """The output frame of ``result``, the strip showing the history noted so far."""
        ph, pw = self.picture.height, self.picture.width
        picture = np.ascontiguousarray(convert_frame(result.image, self.picture, f"frame {result.frame}")[..., ::-1])
        self.history.append((result.score, result.anomalous))
        top = self._top()
        if result.error_map is not None:
            full = HEAT_FULL * self.threshold if self.threshold > 0 else top   # the error of the hottest colour
            heat_level = np.clip(result.error_map / full, 0.0, 1.0)
            heat_level = cv2.resize(heat_level, (pw, ph), interpolation=cv2.INTER_LINEAR)      # (ph, pw)
            heat = cv2.applyColorMap((heat_level * 255).astype(np.uint8), cv2.COLORMAP_JET)    # (ph, pw, 3)
            alpha = (0.7 * heat_level ** 2)[..., None]                                  # low errors stay clear
            picture = (picture * (1 - alpha) + heat * alpha).astype(np.uint8)
        if result.box is not None and result.error_map is not None:
            sy, sx = ph / result.error_map.shape[0], pw / result.error_map.shape[1]
            x, y, bw, bh = result.box
            cv2.rectangle(picture, (int(x * sx), int(y * sy)), (int((x + bw) * sx) - 1, int((y + bh) * sy) - 1),
                          RED if result.anomalous else YELLOW, 2 if result.anomalous else 1)
            for region in result.regions:  # the anomalous regions, in magenta
                x1, y1, x2, y2 = region.box
                cv2.rectangle(picture, (int(x1 * sx), int(y1 * sy)), (int(x2 * sx) - 1, int(y2 * sy) - 1), MAGENTA, 2)
        when = time.strftime("%H:%M:%S", time.localtime(result.time)) if self.wall_clock else f"{result.time:.2f} s"
        _text(picture, f"#{result.frame}  {when}", (4, 14), WHITE)
        if result.anomalous:
            _text(picture, "ANOMALY", (4, 30), RED)
        return np.vstack([picture, self._strip(result, top)])

    def _top(self) -> float:
        """The score at the top of the strip: ``HEAT_FULL x threshold`` or the largest score of the
        strip's frames, whichever is larger; 1 when both are 0 (threshold 0, no error yet)."""
        finite = [s for s, _ in self.history if math.isfinite(s)]
        return max([HEAT_FULL * self.threshold, *finite]) or 1.0

    def _strip(self, result: FrameResult, top: float) -> np.ndarray:
        pw = self.picture.width
        strip = np.full((STRIP, pw, 3), 24, np.uint8)
        plot_h = STRIP - 16                                     # the line lives in rows 14 .. STRIP-2

        def row(score: float) -> int:
            return int(round(STRIP - 2 - plot_h * min(score / top, 1.0)))

        cv2.line(strip, (0, row(self.threshold)), (pw - 1, row(self.threshold)), RED, 1)
        step = pw / self.history.maxlen
        previous = None
        for k, (score, anomalous) in enumerate(self.history):
            point = (int(k * step), row(score)) if math.isfinite(score) else None
            if point is not None and previous is not None:
                cv2.line(strip, previous, point, RED if anomalous else WHITE, 1)
            previous = point
        label = "no score (edge frame)" if not math.isfinite(result.score) else f"score {result.score:.4g}"
        _text(strip, f"{label}  threshold {self.threshold:.4g}", (4, 11), RED if result.anomalous else GREY
              if not math.isfinite(result.score) else WHITE)
        return strip


def _text(image: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int]) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1, cv2.LINE_AA)
