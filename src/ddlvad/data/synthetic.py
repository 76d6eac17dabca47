"""A procedural surveillance scene with known anomalies (the demo's data and the tests').

A fixed camera looks at a paved walkway crossing a lawn. Normal: pedestrians walk along
the walkway, left or right, at walking speed. Test videos add anomalies of four kinds:

- ``fast``: a cyclist (wider, motion-blurred) riding along the walkway at 5-7 px/frame;
- ``vehicle``: a car-sized box driving along the walkway (unusual shape and size);
- ``crossing``: a pedestrian walking up or down across the lawn (wrong direction);
- ``lawn``: a pedestrian standing and wandering on the lawn (an object where none goes).

Written in the ``folder`` layout: ``OUT/<split>/frames/<video>/<frame>.jpg``, frame labels
``OUT/testing/labels/<video>.npy`` (0/1 per frame, 1 while an anomaly is in view), pixel masks
of the anomalies ``OUT/testing/masks/<video>/<frame>.png`` (255 on the anomalous objects'
pixels) and the true boxes of every object as tracks, ``OUT/<split>/tracks.npz`` (see
``tracks.py``).

This is the ``walkway`` scene, ``ddlvad synth``'s default. The other named scenes (``--scene``:
perspective, crowd, lighting, distant, fast) are set in :mod:`ddlvad.data.scenes` and drawn by
:mod:`ddlvad.data.ground` into the same layout.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes, gaussian_filter

from .ground import GroundRenderer, Video
from .scenes import SCENES, GroundSpec
from .tracks import Tracks

ANOMALY_KINDS = ("fast", "vehicle", "crossing", "lawn")


@dataclass
class SceneSpec:
    width: int = 240
    height: int = 160
    train_videos: int = 8
    test_videos: int = 6
    frames: int = 120
    noise_sigma: float = 3.0
    """Camera noise (grey levels, per pixel and frame)."""
    walkway: tuple[float, float] = (0.38, 0.72)
    """Top and bottom of the walkway as fractions of the height."""


@dataclass
class _Object:
    track: int
    x: float
    y: float
    vx: float
    vy: float
    w: float
    h: float
    shade: float
    kind: str = "pedestrian"
    anomaly: bool = False
    phase: float = 0.0


def _background(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    H, W = spec.height, spec.width
    lawn = 95 + 18 * gaussian_filter(rng.standard_normal((H, W)), 6) * 6 + 8 * rng.standard_normal((H, W))
    top, bottom = int(spec.walkway[0] * H), int(spec.walkway[1] * H)
    yy, xx = np.mgrid[0:H, 0:W]
    paving = 150 + 10 * (((xx // 12) + (yy // 12)) % 2) + 4 * gaussian_filter(rng.standard_normal((H, W)), 1)
    bg = lawn.copy()
    bg[top:bottom] = paving[top:bottom]
    bg[top:top + 2] = 200
    bg[bottom - 2:bottom] = 200
    return np.clip(bg, 0, 255).astype(np.float32)


def _draw(canvas: np.ndarray, ob: _Object, t: int) -> np.ndarray:
    """Render one object in place (float image); returns its coverage (H, W) in [0, 1]."""
    H, W = canvas.shape
    x0, y0 = ob.x, ob.y
    if ob.kind == "vehicle":
        x1, y1, x2, y2 = (int(round(v)) for v in (x0 - ob.w / 2, y0 - ob.h / 2, x0 + ob.w / 2, y0 + ob.h / 2))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), ob.shade, -1)
        cv2.rectangle(canvas, (x1 + 4, y1 + 3), (x2 - 4, y1 + int(ob.h * 0.4)), 255 - ob.shade, -1)
        cover = np.zeros_like(canvas)
        cv2.rectangle(cover, (x1, y1), (x2, y2), 1.0, -1)
        return cover
    layer = np.zeros_like(canvas)
    alpha = np.zeros_like(canvas)
    bw, bh = ob.w / 2, ob.h * 0.32
    cv2.ellipse(layer, (int(x0), int(y0)), (max(1, int(bw)), max(1, int(bh))), 0, 0, 360, ob.shade, -1)
    cv2.ellipse(alpha, (int(x0), int(y0)), (max(1, int(bw)), max(1, int(bh))), 0, 0, 360, 1, -1)
    head = (int(x0), int(y0 - ob.h * 0.38))
    cv2.circle(layer, head, max(1, int(ob.w * 0.28)), min(255, ob.shade + 40), -1)
    cv2.circle(alpha, head, max(1, int(ob.w * 0.28)), 1, -1)
    swing = ob.w * 0.3 * np.sin(ob.phase + 0.5 * t) if (ob.vx or ob.vy) else 0.0
    for side in (-1, 1):
        foot = (int(x0 + side * swing), int(y0 + ob.h * 0.5))
        cv2.line(layer, (int(x0), int(y0 + bh * 0.6)), foot, ob.shade * 0.8, max(1, int(ob.w * 0.22)))
        cv2.line(alpha, (int(x0), int(y0 + bh * 0.6)), foot, 1, max(1, int(ob.w * 0.22)))
    if ob.kind == "cyclist":  # a wheel pair and motion blur along x
        for dx in (-ob.w * 0.6, ob.w * 0.6):
            c = (int(x0 + dx), int(y0 + ob.h * 0.4))
            cv2.circle(layer, c, max(2, int(ob.h * 0.18)), 30, 2)
            cv2.circle(alpha, c, max(2, int(ob.h * 0.18)), 1, 2)
        k = max(3, int(abs(ob.vx)) | 1)
        kernel = np.full((1, k), 1.0 / k, np.float32)
        layer = cv2.filter2D(layer, -1, kernel)
        alpha = cv2.filter2D(alpha, -1, kernel)
    alpha = np.clip(alpha, 0, 1)
    canvas[:] = canvas * (1 - alpha) + layer  # layer is premultiplied by alpha (blur keeps that)
    return alpha


def _blob(silhouette: np.ndarray) -> np.ndarray:
    """A silhouette closed (7x7 ellipse) and with its holes filled: one region per object."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    closed = cv2.morphologyEx(silhouette.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    return binary_fill_holes(closed | silhouette)


def _box(ob: _Object, W: int, H: int) -> tuple[float, float, float, float] | None:
    """Normalised visible box, or None when the object is out of view."""
    if ob.kind == "vehicle":
        x1, x2, y1, y2 = ob.x - ob.w / 2, ob.x + ob.w / 2, ob.y - ob.h / 2, ob.y + ob.h / 2
    else:
        extra = ob.w * 0.6 + (abs(ob.vx) / 2 if ob.kind == "cyclist" else 0)
        x1, x2 = ob.x - max(ob.w / 2, extra), ob.x + max(ob.w / 2, extra)
        y1, y2 = ob.y - ob.h * 0.38 - ob.w * 0.28, ob.y + ob.h * 0.5 + 1
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, W), min(y2, H)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return None
    return x1 / W, y1 / H, x2 / W, y2 / H


class _SceneRenderer:
    def __init__(self, spec: SceneSpec, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        self.bg = _background(spec, rng)
        self.next_track = 0
        H = spec.height
        self.lane = (spec.walkway[0] * H + 10, spec.walkway[1] * H - 12)

    def pedestrian(self, anomaly: bool = False) -> _Object:
        r, W = self.rng, self.spec.width
        direction = 1 if r.random() < 0.5 else -1
        h = r.uniform(20, 26)
        ob = _Object(self.next_track, -8.0 if direction > 0 else W + 8.0, r.uniform(*self.lane),
                     direction * r.uniform(0.7, 1.4), r.uniform(-0.05, 0.05), h * 0.4, h,
                     float(r.choice([r.uniform(30, 80), r.uniform(180, 230)])), anomaly=anomaly,
                     phase=r.uniform(0, 6.28))
        self.next_track += 1
        return ob

    def anomaly(self, kind: str) -> _Object:
        r, W, H = self.rng, self.spec.width, self.spec.height
        ob = self.pedestrian(anomaly=True)
        direction = np.sign(ob.vx)
        if kind == "fast":
            ob.kind, ob.vx, ob.w = "cyclist", direction * r.uniform(5, 7), ob.w * 1.6
        elif kind == "vehicle":
            ob.kind, ob.w, ob.h, ob.vx = "vehicle", r.uniform(44, 56), r.uniform(24, 30), direction * r.uniform(1.2, 2.0)
            ob.y = float(np.mean(self.lane))
        elif kind == "crossing":
            ob.x, ob.vx = r.uniform(0.2 * W, 0.8 * W), r.uniform(-0.2, 0.2)
            down = r.random() < 0.5
            ob.y, ob.vy = (-14.0, r.uniform(0.8, 1.2)) if down else (H + 14.0, -r.uniform(0.8, 1.2))
        elif kind == "lawn":
            top = r.random() < 0.5
            ob.x = r.uniform(0.15 * W, 0.85 * W)
            ob.y = r.uniform(16, self.spec.walkway[0] * H - 16) if top else r.uniform(self.spec.walkway[1] * H + 16, H - 14)
            ob.vx, ob.vy = r.uniform(-0.3, 0.3), r.uniform(-0.1, 0.1)
        else:
            raise ValueError(kind)
        return ob

    def render(self, frames: int, anomalies: list[tuple[int, str]]) -> Video:
        r, spec = self.rng, self.spec
        W, H = spec.width, spec.height
        objects: list[_Object] = [self.pedestrian() for _ in range(r.integers(1, 4))]
        for ob in objects:  # start some already inside the frame
            ob.x = r.uniform(0.1 * W, 0.9 * W)
        pending = sorted(anomalies)
        out = np.empty((frames, H, W), np.uint8)
        masks = np.zeros((frames, H, W), bool)
        labels = np.zeros(frames, np.uint8)
        rows: list[list[float]] = []
        events: list[dict] = []
        for t in range(frames):
            while pending and pending[0][0] <= t:
                start, kind = pending.pop(0)
                objects.append(self.anomaly(kind))
                events.append({"kind": kind, "start": t, "track": objects[-1].track})
            if r.random() < 0.04 and sum(not o.anomaly for o in objects) < 5:
                objects.append(self.pedestrian())
            canvas = self.bg.copy()
            for ob in sorted(objects, key=lambda o: o.y):
                cover = _draw(canvas, ob, t)
                if ob.anomaly:  # the silhouette as one blob (head, legs and wheels joined), as annotators draw it
                    masks[t] |= _blob(cover > 0.5)
                box = _box(ob, W, H)
                if box is not None:
                    rows.append([t, ob.track, *box, 1.0])
                    if ob.anomaly:
                        labels[t] = 1
            canvas += r.normal(0, spec.noise_sigma, canvas.shape)
            out[t] = np.clip(canvas, 0, 255).astype(np.uint8)
            for ob in objects:
                ob.x += ob.vx
                ob.y += ob.vy
                if ob.kind == "pedestrian" and not ob.anomaly:
                    ob.y = float(np.clip(ob.y, *self.lane))
            objects = [o for o in objects if -30 < o.x < W + 30 and -30 < o.y < H + 30]
        for ev in events:
            seen = [row[0] for row in rows if row[1] == ev["track"]]
            ev["first_frame"], ev["last_frame"] = (int(min(seen)), int(max(seen))) if seen else (None, None)
        return Video(out, masks, labels, rows, events)


SCENE_NAMES = ("walkway", *SCENES)
"""Every scene ``synthesize`` draws: the walkway (this module) and the ground scenes of
:mod:`ddlvad.data.scenes`."""


def scene_spec(scene: str) -> SceneSpec | GroundSpec:
    """The default spec of a named scene (``ValueError`` for an unknown name)."""
    if scene == "walkway":
        return SceneSpec()
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r}: choose one of {', '.join(SCENE_NAMES)}")
    return SCENES[scene]


def synthesize(out: str | Path, seed: int = 0, spec: SceneSpec | GroundSpec | None = None,
               scene: str = "walkway") -> dict:
    """Write a scene to ``out`` (folder layout) and return its description: ``scene`` by
    name with its default spec, or ``spec`` (a :class:`SceneSpec` draws the walkway, a
    :class:`~ddlvad.data.scenes.GroundSpec` its own scene). The walkway's files for a
    given seed are those of every earlier version (the demo's published AUC depends on
    them); a ground scene seeds its generator with ``[seed, crc32(name)]``."""
    spec = spec or scene_spec(scene)
    out = Path(out)
    if isinstance(spec, GroundSpec):
        rng = np.random.default_rng([seed, zlib.crc32(spec.name.encode())])
        renderer: _SceneRenderer | GroundRenderer = GroundRenderer(spec, rng)
        spec_dict = {k: v for k, v in asdict(spec).items() if k != "camera"}
        description: dict = {"scene": spec.name, "seed": seed, "spec": spec_dict,
                             "camera": {"horizon_row": spec.camera.horizon, "height_m": spec.camera.elevation,
                                        "focal_px": spec.camera.f}, "testing": {}}
        kinds, first = spec.anomalies, tuple(int(spec.frames * f) for f in spec.anomaly_start)
        gap = spec.second_anomaly_gap
    else:
        rng = np.random.default_rng(seed)
        renderer = _SceneRenderer(spec, rng)
        description = {"seed": seed, "spec": asdict(spec), "testing": {}}
        kinds, first, gap = ANOMALY_KINDS, (spec.frames // 6, spec.frames // 2), 25
    for split, count in (("training", spec.train_videos), ("testing", spec.test_videos)):
        tracks = Tracks(settings={"source": "synthetic ground truth", "seed": seed})
        for v in range(count):
            vid = f"{v + 1:02d}"
            anomalies: list[tuple[int, str]] = []
            if split == "testing" and v > 0:  # video 01 stays normal
                names = [kinds[(v - 1) % len(kinds)]]
                if v >= len(kinds) + 1:
                    names.append(kinds[v % len(kinds)])
                anomalies = [(int(rng.integers(*first)) + gap * i, k) for i, k in enumerate(names)]
            video = renderer.render(spec.frames, anomalies)
            _write_video(out, split, vid, video)
            tracks.add(vid, spec.frames, np.asarray(video.rows, np.float64).reshape(-1, 7))
            if split == "testing":
                description["testing"][vid] = {"abnormal_frames": int(video.labels.sum()),
                                               "anomalies": video.events}
        tracks.save(out / split / "tracks.npz")
    (out / "scene.json").write_text(json.dumps(description, indent=2))
    return description


def _write_video(out: Path, split: str, vid: str, video: Video) -> None:
    """Frames as JPEG; for testing videos also the labels (.npy) and the masks (PNG)."""
    folder = out / split / "frames" / vid
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        cv2.imwrite(str(folder / f"{t:03d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, video.quality])
    if split == "testing":
        (out / "testing" / "labels").mkdir(parents=True, exist_ok=True)
        np.save(out / "testing" / "labels" / f"{vid}.npy", video.labels)
        mask_folder = out / "testing" / "masks" / vid
        mask_folder.mkdir(parents=True, exist_ok=True)
        for t, mask in enumerate(video.masks):
            cv2.imwrite(str(mask_folder / f"{t:03d}.png"), mask.astype(np.uint8) * 255)
