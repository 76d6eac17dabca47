"""Drawing the ground scenes' objects: a :class:`Sprite` holds one object's pixels (colour and
coverage) in its own window of the canvas; the functions below draw a person, a cyclist, a
person pushing a cart and a car into it, standing on a foot point, ``h`` canvas pixels for
the height of a :data:`~ddlvad.data.scenes.PERSON` at that depth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4
"""Sub-pixel bits of OpenCV's drawing calls."""


class Sprite:
    """One object drawn part by part into its own window of the canvas (canvas pixels)."""

    def __init__(self, x1: float, y1: float, x2: float, y2: float, pad: float):
        self.x0, self.y0 = int(math.floor(x1 - pad)), int(math.floor(y1 - pad))
        w, h = int(math.ceil(x2 + pad)) - self.x0, int(math.ceil(y2 + pad)) - self.y0
        self.colour = np.zeros((max(h, 1), max(w, 1)), np.float32)  # premultiplied by alpha
        self.alpha = np.zeros_like(self.colour)

    def _pt(self, p) -> tuple[int, int]:
        return int(round((p[0] - self.x0) * (1 << SHIFT))), int(round((p[1] - self.y0) * (1 << SHIFT)))

    def _paint(self, shade: float, draw) -> None:
        part = np.zeros(self.alpha.shape, np.uint8)
        draw(part)
        a = part.astype(np.float32) / 255
        self.colour = self.colour * (1 - a) + shade * a
        self.alpha = self.alpha * (1 - a) + a

    def line(self, p, q, width: float, shade: float) -> None:
        self._paint(shade, lambda m: cv2.line(m, self._pt(p), self._pt(q), 255, max(1, round(width)),
                                              cv2.LINE_AA, SHIFT))

    def ellipse(self, c, axes, angle: float, shade: float) -> None:
        ax = tuple(max(1 << (SHIFT - 1), round(a * (1 << SHIFT))) for a in axes)
        self._paint(shade, lambda m: cv2.ellipse(m, self._pt(c), ax, angle, 0, 360, 255, -1, cv2.LINE_AA, SHIFT))

    def ring(self, c, r: float, width: float, shade: float) -> None:
        rad = max(1 << (SHIFT - 1), round(r * (1 << SHIFT)))
        self._paint(shade, lambda m: cv2.circle(m, self._pt(c), rad, 255, max(1, round(width)), cv2.LINE_AA, SHIFT))

    def polygon(self, points, shade: float) -> None:
        pts = np.array([self._pt(p) for p in points], np.int32)
        self._paint(shade, lambda m: cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, SHIFT))

    def blur(self, dx: float, dy: float) -> None:
        """Motion blur along ``(dx, dy)`` canvas pixels (the motion during the exposure)."""
        length = math.hypot(dx, dy)
        if length < 1.5:
            return
        n = 2 * int(math.ceil(length / 2)) + 1
        kernel = np.zeros((n, n), np.uint8)
        c = n / 2 - 0.5
        cv2.line(kernel, *(tuple(int(round(v * (1 << SHIFT))) for v in (c - s * dx / 2, c - s * dy / 2))
                           for s in (1, -1)), 255, 1, cv2.LINE_AA, SHIFT)
        k = kernel.astype(np.float32) / kernel.sum()
        self.colour = cv2.filter2D(self.colour, -1, k, borderType=cv2.BORDER_CONSTANT)
        self.alpha = cv2.filter2D(self.alpha, -1, k, borderType=cv2.BORDER_CONSTANT)

    def composite(self, canvas: np.ndarray) -> tuple[slice, slice, np.ndarray] | None:
        """Draw over ``canvas`` in place; returns the window's canvas slices and clipped alpha."""
        H, W = canvas.shape
        h, w = self.alpha.shape
        y1, x1, y2, x2 = max(self.y0, 0), max(self.x0, 0), min(self.y0 + h, H), min(self.x0 + w, W)
        if y2 <= y1 or x2 <= x1:
            return None
        sy, sx = slice(y1, y2), slice(x1, x2)
        a = np.clip(self.alpha[y1 - self.y0:y2 - self.y0, x1 - self.x0:x2 - self.x0], 0, 1)
        c = self.colour[y1 - self.y0:y2 - self.y0, x1 - self.x0:x2 - self.x0]
        canvas[sy, sx] = canvas[sy, sx] * (1 - a) + c
        return sy, sx, a


# ---------------------------------------------------------------------- drawing the kinds
def person(sp: Sprite, fx, fy, h, sgn, side, phase, gait, shades, pose="walk") -> None:
    """A person standing at foot point ``(fx, fy)``, ``h`` pixels tall, facing ``sgn`` (+1 right);
    ``side``: 1 seen from the side, 0 walking towards or away from the camera."""
    torso, legs, head = shades
    crouch = 0.06 if pose == "skate" else 0.0
    lean = (0.12 if pose == "skate" else 0.04 * max(gait - 1, 0) + 0.02) * sgn * side
    hip = (fx + 0.5 * lean * h, fy - (0.5 - crouch) * h)
    shoulder = (fx + lean * h, fy - (0.8 - crouch) * h)
    swing = 0.16 * gait * h * math.sin(phase) * side
    lift = 0.035 * gait * h * math.cos(phase) * (1 - side)
    stance = 0.07 * h if pose == "skate" else 0.0
    for s in (-1, 1):
        sp.line(hip, (fx + s * (swing + stance), fy - max(0.0, s * lift) - (0.03 * h if pose == "skate" else 0)),
                0.085 * h, legs)
    mid = ((hip[0] + shoulder[0]) / 2, (hip[1] + shoulder[1]) / 2 - 0.02 * h)
    sp.ellipse(mid, ((0.1 + 0.04 * (1 - side)) * h, 0.19 * h), math.degrees(math.atan(lean)), torso)
    for s in (-1, 1):
        if pose == "skate":
            hand = (shoulder[0] + s * 0.22 * h, fy - 0.6 * h)
        elif pose == "push":
            hand = (fx + sgn * 0.24 * h, fy - 0.55 * h)
        else:
            hand = (shoulder[0] - 0.9 * s * swing, fy - 0.47 * h)
        sp.line(shoulder, hand, 0.055 * h, torso * 0.92)
    sp.ellipse((shoulder[0] + 0.1 * lean * h, fy - (0.905 - crouch) * h), (0.075 * h, 0.08 * h), 0, head)
    if pose == "skate":
        sp.line((fx - 0.25 * h, fy - 0.02 * h), (fx + 0.25 * h, fy - 0.02 * h), 0.035 * h, 35)


def cyclist(sp: Sprite, fx, fy, h, sgn, phase, shades) -> None:
    torso, legs, head = shades
    r = 0.19 * h
    rear, front = (fx - sgn * 0.3 * h, fy - r), (fx + sgn * 0.3 * h, fy - r)
    crank = (fx, fy - r)
    seat, bar = (fx - sgn * 0.08 * h, fy - 0.52 * h), (fx + sgn * 0.22 * h, fy - 0.62 * h)
    for wheel in (rear, front):
        sp.ring(wheel, r, max(1.0, 0.035 * h), 30)
    for p, q in ((rear, seat), (seat, crank), (crank, rear), (crank, bar), (bar, front), (seat, bar)):
        sp.line(p, q, max(1.0, 0.03 * h), 45)
    shoulder, hip = (fx + sgn * 0.08 * h, fy - 0.84 * h), (seat[0], seat[1] - 0.03 * h)
    for s in (-1, 1):
        pedal = (crank[0] + 0.09 * h * math.cos(phase + s * math.pi / 2), crank[1] + 0.09 * h * math.sin(phase + s * math.pi / 2))
        knee = ((hip[0] + pedal[0]) / 2 + sgn * 0.12 * h, (hip[1] + pedal[1]) / 2 - 0.04 * h)
        sp.line(hip, knee, 0.085 * h, legs)
        sp.line(knee, pedal, 0.075 * h, legs)
    sp.ellipse(((hip[0] + shoulder[0]) / 2, (hip[1] + shoulder[1]) / 2), (0.1 * h, 0.18 * h),
               math.degrees(math.atan(0.3 * sgn)), torso)
    sp.line(shoulder, bar, 0.055 * h, torso * 0.92)
    sp.ellipse((fx + sgn * 0.12 * h, fy - 0.95 * h), (0.075 * h, 0.08 * h), 0, head)


def cart(sp: Sprite, fx, fy, h, sgn, side, phase, gait, shades) -> None:
    person(sp, fx, fy, h, sgn, side, phase, gait, shades, pose="push")
    box, trim = (200.0 if shades[0] < 128 else 55.0), shades[1]
    near, far = fx + sgn * 0.28 * h, fx + sgn * 0.88 * h
    sp.polygon([(near, fy - 0.6 * h), (far, fy - 0.6 * h), (far, fy - 0.12 * h), (near, fy - 0.12 * h)], box)
    sp.line((fx + sgn * 0.24 * h, fy - 0.55 * h), (near, fy - 0.6 * h), max(1.0, 0.03 * h), trim)
    for u in (0.34, 0.82):
        sp.ellipse((fx + sgn * u * h, fy - 0.05 * h), (0.05 * h, 0.05 * h), 0, 30)


CAR = {"body": [(-1.22, 0.16), (1.22, 0.16), (1.22, 0.46), (0.95, 0.52), (-1.22, 0.52)],
        "cabin": [(-0.85, 0.5), (0.55, 0.5), (0.35, 0.82), (-0.7, 0.82)],
        "window": [(-0.76, 0.55), (0.47, 0.55), (0.31, 0.77), (-0.62, 0.77)]}
"""A car seen from the side in units of :data:`PERSON` (u forward, v up from the ground)."""


def vehicle(sp: Sprite, fx, fy, h, sgn, shades) -> None:
    body = shades[0]
    window = 60.0 if body > 128 else 200.0
    for part, shade in (("body", body), ("cabin", body), ("window", window)):
        sp.polygon([(fx + sgn * u * h, fy - v * h) for u, v in CAR[part]], shade)
    for u in (-0.78, 0.78):
        sp.ellipse((fx + u * h, fy - 0.17 * h), (0.17 * h, 0.17 * h), 0, 28)
        sp.ellipse((fx + u * h, fy - 0.17 * h), (0.07 * h, 0.07 * h), 0, 150)
