"""Render a ground scene of :mod:`ddlvad.data.scenes`, one video at a time.

Per frame: walkers arrive and leave along the paths (the scene's density), anomalies come in
or start, everything is drawn far to near at ``supersample`` times the written size (sub-pixel
motion, anti-aliased edges, motion blur along the on-screen velocity), shrunk to the written
size, then lit (brightness/contrast drift, cloud shadow) and given sensor noise. An anomaly's
mask is the part of it that is visible (nearer objects hide it), closed into one blob per
object as annotators draw it; a frame is labelled abnormal iff its mask has a pixel.

One concern, in one module though it is long: rendering the ground-plane scenes of
:mod:`ddlvad.data.scenes` (camera, walkers, anomalies, lighting, sensor), stage by stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes, gaussian_filter

from .scenes import ANOMALIES, FPS, KINDS, PERSON, GroundSpec, Kind, Route
from .sprites import Sprite, cart, cyclist, person, vehicle

EXPOSURE = 0.6
"""Shutter time in frames: the length of the motion blur as a share of a frame's motion."""
EXTENT = {"person": (0.6, 1.0), "skater": (0.9, 1.0), "cyclist": (1.9, 1.05), "cart": (1.7, 1.0),
          "vehicle": (4.4, 0.85)}
"""Width and height of each shape in units of :data:`PERSON` (for entering the frame)."""


@dataclass
class Video:
    """One rendered video, at the written size."""

    frames: np.ndarray
    """(T, H, W) uint8 grey frames."""
    masks: np.ndarray
    """(T, H, W) bool: pixels of anomalies."""
    labels: np.ndarray
    """(T,) uint8: 1 where the mask has a pixel."""
    rows: list[list[float]]
    """Tracks rows ``frame, track, x1, y1, x2, y2, 1`` (normalised boxes, see tracks.py)."""
    events: list[dict]
    """One per anomaly: kind, start frame, track, first and last labelled frame."""
    quality: int = 95
    """JPEG quality to write the frames at."""


@dataclass
class _Actor:
    track: int
    kind: str
    route: Route
    route_index: int
    pos: np.ndarray
    """(X, Z) on the ground (m)."""
    heading: np.ndarray
    """Unit vector of motion on the ground."""
    speed: float
    """m/frame."""
    height: float
    """Body height (m)."""
    shades: tuple[float, float, float]
    """Torso, legs, head (grey levels); carts and vehicles use the first two for body and trim."""
    phase: float
    anomaly: str | None = None
    """The anomaly this actor is or will be (labelled while ``abnormal``)."""
    abnormal: bool = False
    state: str = "walk"
    """walk (follows ``heading``), leave (to ``target``), wander, stop."""
    target: np.ndarray | None = None
    seen: bool = False
    box: tuple[float, float, float, float] | None = None
    """Visible box (written pixels) in the last frame drawn, None when out of view."""

    @property
    def shape(self) -> Kind:
        return KINDS[self.kind]


# ---------------------------------------------------------------------- the scene
def _route_frame(camera, route: Route) -> tuple[np.ndarray, np.ndarray, float]:
    """A route's start point (X, Z), unit direction and length (m) on the ground."""
    a = np.array(camera.ground(route.start[0] * camera.width, route.start[1] * camera.height))
    b = np.array(camera.ground(route.end[0] * camera.width, route.end[1] * camera.height))
    return a, (b - a) / np.linalg.norm(b - a), float(np.linalg.norm(b - a))


class GroundRenderer:
    """Renders videos of one scene; the background and props are drawn once (a fixed camera)."""

    def __init__(self, spec: GroundSpec, rng: np.random.Generator):
        self.spec, self.rng, self.cam = spec, rng, spec.camera
        self.S = spec.supersample
        self.routes = [_route_frame(self.cam, r) for r in spec.routes]
        self.next_track = 0
        self.bg = self._background()
        self.props = self._props()

    # ---------------------------------------------------------------- geometry
    def paved(self, X, Z, margin: float = 0.0):
        """True where the ground point(s) lie on a path (``margin`` m wider)."""
        X, Z = np.asarray(X, float), np.asarray(Z, float)
        on = np.zeros(np.broadcast(X, Z).shape, bool)
        for route, (a, d, _) in zip(self.spec.routes, self.routes):
            if not route.paved:
                continue
            across = np.abs((X - a[0]) * d[1] - (Z - a[1]) * d[0])
            on |= across < route.width / 2 + margin
        return on

    def _ground_grid(self) -> tuple[np.ndarray, np.ndarray]:
        S, cam = self.S, self.cam
        ys, xs = np.mgrid[0:cam.height * S, 0:cam.width * S].astype(np.float64)
        Z = cam.f * cam.elevation / ((ys + 0.5) / S - cam.horizon)
        return ((xs + 0.5) / S - cam.width / 2) * Z / cam.f, Z

    def _background(self) -> np.ndarray:
        """Grass and paving in perspective (textures live on the ground, in metres)."""
        spec, r = self.spec, self.rng
        X, Z = self._ground_grid()
        cell = 0.05  # m per texel of the ground textures
        size = 1024
        coarse = gaussian_filter(r.standard_normal((size, size)), 24, mode="wrap")
        fine = gaussian_filter(r.standard_normal((size, size)), 1.0, mode="wrap")
        coarse, fine = coarse / coarse.std(), fine / fine.std()
        u = ((X / cell) % size).astype(np.float32)
        v = ((Z / cell) % size).astype(np.float32)

        def sample(tex: np.ndarray) -> np.ndarray:
            return cv2.remap(tex.astype(np.float32), u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)

        bg = spec.grass + 10 * sample(coarse) + 7 * sample(fine)
        for route, (a, d, _) in zip(spec.routes, self.routes):
            if not route.paved:
                continue
            along = (X - a[0]) * d[0] + (Z - a[1]) * d[1]
            across = (X - a[0]) * d[1] - (Z - a[1]) * d[0]
            inside = np.abs(across) < route.width / 2
            tiles = (np.floor(along / 0.6) + np.floor(across / 0.6)) % 2
            paving = spec.grass + 55 + 9 * tiles + 3 * sample(fine)
            paving[np.abs(across) > route.width / 2 - 0.12] = spec.grass + 100  # kerb
            bg = np.where(inside, paving, bg)
        return np.clip(bg, 0, 255).astype(np.float32)

    def _props(self) -> list[tuple[float, Sprite]]:
        """Bushes and lamp posts on the grass in view, 3 m apart or more: (depth, drawn sprite)."""
        cam, r, S, out = self.cam, self.rng, self.S, []
        spots: list[tuple[float, float]] = []
        for _ in range(300):
            if len(out) == self.spec.props:
                break
            x, y = r.uniform(0.05, 0.95) * cam.width, r.uniform(0.1, 1.0) * cam.height
            X, Z = cam.ground(x, y)
            if self.paved(X, Z, margin=1.2) or any(math.hypot(X - a, Z - b) < 3 for a, b in spots):
                continue
            spots.append((X, Z))
            px = cam.scale(Z) * S  # canvas pixels per metre
            fx, fy = x * S, y * S
            if r.random() < 0.6:  # a bush: overlapping round clumps of leaves
                w, h = r.uniform(1.0, 2.0) * px, r.uniform(1.0, 1.6) * px
                sp = Sprite(fx - w / 2, fy - h, fx + w / 2, fy, 2)
                base = r.uniform(40, 60)
                for k in range(6):
                    rad = r.uniform(0.28, 0.4) * min(w, h)
                    cx = fx + r.uniform(-0.5, 0.5) * (w - 2 * rad)
                    cy = fy - rad - r.uniform(0, 1) * (h - 2 * rad)
                    sp.ellipse((cx, cy), (rad, rad), 0, base + 6 * k * r.uniform(0.5, 1))
            else:
                h = 4.0 * px
                sp = Sprite(fx - 0.3 * px, fy - h - 0.2 * px, fx + 0.3 * px, fy, 2)
                sp.line((fx, fy), (fx, fy - h), max(1.0, 0.12 * px), 60)
                sp.ellipse((fx, fy - h), (0.25 * px, 0.12 * px), 0, 215)
            out.append((Z, sp))
        return out

    # ---------------------------------------------------------------- actors
    def _actor(self, kind: str, route_index: int, backwards: bool, anomaly: str | None = None) -> _Actor:
        r, k = self.rng, KINDS[kind]
        route = self.spec.routes[route_index]
        a, d, length = self.routes[route_index]
        margin = {"vehicle": 1.1, "cyclist": 0.6, "cart": 0.6}.get(kind, 0.3)
        lane = r.uniform(-1, 1) * max(route.width / 2 - margin, 0.0)
        normal = np.array([d[1], -d[0]])
        heading = -d if backwards else d
        start = a + lane * normal + (length * d if backwards else 0)
        if k.shape == "person":
            shades = (float(r.choice([r.uniform(25, 80), r.uniform(170, 235)])), r.uniform(30, 110), r.uniform(120, 185))
        else:
            shades = (float(r.choice([r.uniform(35, 80), r.uniform(180, 230)])), r.uniform(30, 110), r.uniform(120, 185))
        ob = _Actor(self.next_track, kind, route, route_index, start, heading, r.uniform(*k.speed) / FPS,
                    r.uniform(1.6, 1.9) if k.shape != "vehicle" else PERSON, shades, r.uniform(0, 2 * math.pi),
                    anomaly=anomaly)
        self.next_track += 1
        return ob

    def _approx_box(self, ob: _Actor, pos: np.ndarray) -> tuple[float, float, float, float] | None:
        if pos[1] <= 0.5:
            return None
        x, y = self.cam.project(*pos)
        px = self.cam.scale(pos[1])
        w, h = EXTENT[KINDS[ob.kind].shape]
        return x - w * PERSON * px / 2, y - h * ob.height * px, x + w * PERSON * px / 2, y

    def _visible_steps(self, ob: _Actor, inside: bool) -> np.ndarray:
        """Distances (m) along the heading from ``ob.pos`` at which it is in view (``inside``:
        wholly inside the frame with its feet on screen)."""
        _, _, length = self.routes[ob.route_index]
        W, H = self.cam.width, self.cam.height
        steps = np.arange(0.0, length, 0.1)
        ok = np.zeros(len(steps), bool)
        for i, s in enumerate(steps):
            box = self._approx_box(ob, ob.pos + s * ob.heading)
            if box is None:
                continue
            x1, y1, x2, y2 = box
            ok[i] = (x1 >= 0 and x2 <= W and y2 <= H and y1 >= -0.2 * (y2 - y1)) if inside else \
                (x2 > 0 and x1 < W and y2 > 0 and y1 < H)
        return steps[ok]

    def enter(self, ob: _Actor, behind: float = 0.0) -> bool:
        """Put ``ob`` outside the frame where its path comes in (``behind`` m further back);
        False if it never does."""
        steps = self._visible_steps(ob, inside=False)
        if not len(steps):
            return False
        ob.pos = ob.pos + max(steps[0] - 0.1 - behind, 0.0) * ob.heading
        return True

    def place(self, ob: _Actor) -> bool:
        """Put ``ob`` anywhere along its path where it is wholly in view (a video's first frame)."""
        steps = self._visible_steps(ob, inside=True)
        if not len(steps):
            return False
        ob.pos = ob.pos + self.rng.choice(steps) * ob.heading
        return True

    def _walker(self) -> _Actor:
        weights = np.array([r.traffic for r in self.spec.routes])
        i = int(self.rng.choice(len(weights), p=weights / weights.sum()))
        return self._actor("walker", i, self.rng.random() < self.spec.routes[i].back_share)

    def _anomaly_route(self) -> int:
        weights = np.array([r.anomalies for r in self.spec.routes])
        return int(self.rng.choice(len(weights), p=weights / weights.sum()))

    def start_anomaly(self, name: str, actors: list[_Actor]) -> tuple[_Actor | None, bool]:
        """Start the anomaly ``name``: ``(actor, new)``: a new actor coming in, or a walker in
        view that will change its behaviour (``offpath``, ``loiter``; a walker who comes in
        first when none fits). ``(None, False)`` when its path never comes into view."""
        kind, behaviour = ANOMALIES[name]
        if behaviour in ("enter", "against"):
            for _ in range(10):  # another path or lane when this one never comes into view
                i = self._anomaly_route()
                route = self.spec.routes[i]
                back = (route.back_share < 0.5) if behaviour == "against" else self.rng.random() < route.back_share
                ob = self._actor(kind, i, back, anomaly=name)
                ob.abnormal = True
                if self.enter(ob):
                    return ob, True
            return None, False
        lo, hi = self.spec.anomaly_rows
        H, W = self.cam.height, self.cam.width
        fits = [o for o in actors if o.kind == "walker" and o.anomaly is None and o.box is not None
                and o.route.anomalies > 0 and 0.15 * W < o.box[0] and o.box[2] < 0.85 * W
                and lo * H <= o.box[3] <= hi * H]
        if fits:
            ob = fits[int(self.rng.integers(len(fits)))]
            ob.anomaly = name
            return ob, False
        for _ in range(10):
            i = self._anomaly_route()
            ob = self._actor("walker", i, self.rng.random() < self.spec.routes[i].back_share, anomaly=name)
            if self.enter(ob):
                return ob, True
        return None, False

    def _deviate(self, ob: _Actor) -> None:
        """An ``offpath``/``loiter`` walker starts its anomaly once wholly in view."""
        W = self.cam.width
        if ob.box is None or not (0.02 * W < ob.box[0] and ob.box[2] < 0.98 * W):
            return
        if ob.anomaly == "loiter":
            ob.state, ob.abnormal = "stop", True
            return
        r = self.rng
        normal = np.array([ob.heading[1], -ob.heading[0]])
        for _ in range(20):
            side = 1 if r.random() < 0.5 else -1
            target = ob.pos + side * normal * (ob.route.width / 2 + r.uniform(1.5, 4.0)) + ob.heading * r.uniform(0, 2)
            x, y = self.cam.project(*target) if target[1] > 0.5 else (-1, -1)
            if not self.paved(*target, margin=0.5) and 0.05 * W < x < 0.95 * W and 0.12 * self.cam.height < y <= self.cam.height:
                ob.state, ob.target, ob.abnormal = "leave", target, True
                ob.speed = r.uniform(0.8, 1.2) / FPS
                return
        ob.state, ob.abnormal = "stop", True  # no grass in view beside the path: it stops instead

    def _move(self, ob: _Actor, t: int) -> None:
        if ob.anomaly and not ob.abnormal and ob.state == "walk" and ob.anomaly in ("offpath", "loiter"):
            self._deviate(ob)
        if ob.state == "leave":
            to = ob.target - ob.pos
            dist = float(np.linalg.norm(to))
            if dist < 0.2:
                ob.state, ob.speed = "wander", self.rng.uniform(0.2, 0.4) / FPS
            else:
                ob.heading = to / dist
        elif ob.state == "wander":
            angle = self.rng.normal(0, 0.15)
            c, s = math.cos(angle), math.sin(angle)
            heading = np.array([c * ob.heading[0] - s * ob.heading[1], s * ob.heading[0] + c * ob.heading[1]])
            nxt = ob.pos + heading * ob.speed
            ob.heading = -heading if self.paved(*nxt, margin=0.3) else heading
        if ob.state != "stop":
            ob.pos = ob.pos + ob.heading * ob.speed
            ob.phase += 2 * math.pi * ob.speed / ob.shape.stride

    # ---------------------------------------------------------------- drawing
    def _sprite(self, ob: _Actor, t: int) -> Sprite | None:
        S, cam = self.S, self.cam
        X, Z = ob.pos
        if Z <= 0.5:
            return None
        x, y = cam.project(X, Z)
        moving = ob.state != "stop"
        nx, ny = cam.project(*(ob.pos + ob.heading * ob.speed)) if moving else (x, y)
        dx, dy = (nx - x) * S, (ny - y) * S
        h = ob.height * cam.scale(Z) * S
        fx, fy = x * S, y * S
        if ob.state == "stop":  # shifting weight from foot to foot
            fx += 0.02 * h * math.sin(0.15 * t + ob.phase)
        box = self._approx_box(ob, ob.pos)
        pad = 0.25 * h + abs(dx) * EXPOSURE + abs(dy) * EXPOSURE + 3
        sp = Sprite(box[0] * S, box[1] * S, box[2] * S, box[3] * S, pad)
        sgn = 1.0 if dx >= 0 else -1.0
        side = abs(dx) / (abs(dx) + abs(dy) + 1e-9) if moving else 1.0
        shape, gait = ob.shape.shape, ob.shape.gait if moving else 0.0
        if shape == "cyclist":
            cyclist(sp, fx, fy, h, sgn, ob.phase, ob.shades)
        elif shape == "cart":
            cart(sp, fx, fy, h, sgn, side, ob.phase, gait, ob.shades)
        elif shape == "vehicle":
            vehicle(sp, fx, fy, h, sgn, ob.shades)
        else:
            person(sp, fx, fy, h, sgn, side, ob.phase, gait, ob.shades, "skate" if shape == "skater" else "walk")
        sp.blur(dx * EXPOSURE, dy * EXPOSURE)
        return sp

    def _density(self, frames: int) -> np.ndarray:
        """Normal walkers wanted about, per frame: fixed per video, or (``density_changes``)
        ramping from quiet to dense or back within it."""
        spec, r = self.spec, self.rng
        lo, hi = spec.walkers
        if spec.density_changes:
            a, b = r.uniform(0, 0.2), r.uniform(0.8, 1.0)
            ends = (a, b) if r.random() < 0.5 else (b, a)
            ramp = np.clip(np.arange(frames) / max(frames - 1, 1) * r.uniform(1.3, 2.0) - r.uniform(0, 0.2), 0, 1)
            density = ends[0] + (ends[1] - ends[0]) * ramp * ramp * (3 - 2 * ramp)  # smoothstep
        else:
            density = np.full(frames, r.uniform(0, 1))
        return np.rint(lo + (hi - lo) * density).astype(int)

    def _lighting(self, frames: int) -> tuple:
        """Per-video gain(t), contrast(t) and cloud shadow (None: no cloud in this video)."""
        spec, r, W, H = self.spec, self.rng, self.cam.width, self.cam.height
        cycles, phase = r.uniform(0.5, 1.0, 2), r.uniform(0, 2 * math.pi, 2)
        t = np.arange(frames) / frames
        gain = 1 + spec.brightness * np.sin(2 * math.pi * cycles[0] * t + phase[0])
        contrast = 1 + spec.contrast * np.sin(2 * math.pi * cycles[1] * t + phase[1])
        cloud = None
        if spec.cloud > 0 and r.random() < spec.cloud_share:
            rx, ry = r.uniform(0.35, 0.6) * W, r.uniform(0.3, 0.6) * H
            direction = 1 if r.random() < 0.5 else -1
            x0, cy = (-rx if direction > 0 else W + rx), r.uniform(0.2, 0.8) * H
            speed = direction * (W + 2 * rx) / (frames * r.uniform(0.9, 1.4))
            t0 = r.uniform(-0.3, 0.2) * frames
            cloud = (x0, cy, rx, ry, speed, t0)
        return gain, contrast, cloud

    def _arrive(self, wanted: int, actors: list[_Actor]) -> None:
        """Walkers come in, more the more are missing (``arrival`` per missing walker)."""
        missing = wanted - sum(o.anomaly is None for o in actors)
        for _ in range(self.rng.poisson(self.spec.arrival * missing) if missing > 0 else 0):
            ob = self._walker()
            if self.enter(ob, behind=self.rng.uniform(0, 2)):  # staggered: no clumps where a crowd grows
                actors.append(ob)

    def _draw(self, t: int, actors: list[_Actor], rows: list[list[float]]) -> tuple[np.ndarray, dict]:
        """Frame ``t`` at the drawing size, far to near; appends the objects' boxes to ``rows``
        and returns the canvas and each abnormal actor's visible coverage (track -> map)."""
        S, W, H = self.S, self.cam.width, self.cam.height
        canvas = self.bg.copy()
        abnormal: dict[int, np.ndarray] = {}
        items = [(o.pos[1], o) for o in actors] + list(self.props)
        for _, item in sorted(items, key=lambda p: -p[0]):
            actor = item if isinstance(item, _Actor) else None
            sp = self._sprite(actor, t) if actor is not None else item
            drawn = sp.composite(canvas) if sp is not None else None
            if actor is not None:
                actor.box = None
            if drawn is None:
                continue
            sy, sx, a = drawn
            for m in abnormal.values():  # nearer objects hide the anomalies behind them
                m[sy, sx] *= 1 - a
            if actor is None:
                continue
            if actor.abnormal:
                abnormal[actor.track] = m = np.zeros(canvas.shape, np.float32)
                m[sy, sx] = a
            ys, xs = np.nonzero(a > 0.3)
            if len(xs):
                actor.box = ((sx.start + xs.min()) / S, (sy.start + ys.min()) / S,
                             (sx.start + xs.max() + 1) / S, (sy.start + ys.max() + 1) / S)
                x1, y1, x2, y2 = actor.box
                if x2 - x1 >= 1 and y2 - y1 >= 2:
                    rows.append([t, actor.track, x1 / W, y1 / H, x2 / W, y2 / H, 1.0])
        return canvas, abnormal

    def _expose(self, canvas: np.ndarray, t: int, light: tuple) -> np.ndarray:
        """The canvas shrunk to the written size, lit (gain, cloud, contrast) and with sensor
        noise: (H, W) uint8."""
        spec, W, H = self.spec, self.cam.width, self.cam.height
        gain, contrast, cloud = light
        frame = cv2.resize(canvas, (W, H), interpolation=cv2.INTER_AREA)
        lit = gain[t]
        if cloud is not None:
            x0, cy, rx, ry, speed, t0 = cloud
            yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
            dist = np.sqrt(((xx - x0 - speed * (t - t0)) / rx) ** 2 + ((yy - cy) / ry) ** 2)
            lit = lit * (1 - spec.cloud / (1 + np.exp((dist - 1) / 0.12)))  # soft-edged shadow
        frame = 128 + contrast[t] * (frame * lit - 128) + self.rng.normal(0, spec.noise_sigma, (H, W))
        return np.clip(np.rint(frame), 0, 255).astype(np.uint8)

    def render(self, frames: int, anomalies: list[tuple[int, str]]) -> Video:
        """One video of ``frames`` frames; ``anomalies``: (start frame, anomaly name) pairs."""
        spec, W, H = self.spec, self.cam.width, self.cam.height
        quality = int(self.rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
        target = self._density(frames)
        light = self._lighting(frames)
        actors = [ob for ob in (self._walker() for _ in range(target[0])) if self.place(ob)]
        pending = sorted(anomalies)
        out = np.empty((frames, H, W), np.uint8)
        masks = np.zeros((frames, H, W), bool)
        rows: list[list[float]] = []
        events: list[dict] = []
        for t in range(frames):
            while pending and pending[0][0] <= t:
                name = pending.pop(0)[1]
                ob, new = self.start_anomaly(name, actors)
                if new:
                    actors.append(ob)
                if ob is not None:
                    events.append({"kind": name, "start": t, "track": ob.track, "first_frame": None,
                                   "last_frame": None})
            self._arrive(target[t], actors)
            canvas, abnormal = self._draw(t, actors, rows)
            for track, m in abnormal.items():
                mask = _blob(cv2.resize(m, (W, H), interpolation=cv2.INTER_AREA) > 0.4)
                if mask.sum() >= spec.min_visible:  # a sliver is not labelled
                    masks[t] |= mask
                    ev = next(e for e in events if e["track"] == track)
                    ev["first_frame"] = t if ev["first_frame"] is None else ev["first_frame"]
                    ev["last_frame"] = t
            out[t] = self._expose(canvas, t, light)
            for ob in actors:
                ob.seen = ob.seen or ob.box is not None
                self._move(ob, t)
            actors = [o for o in actors if not (o.seen and o.box is None)]  # gone out of view
        return Video(out, masks, labels=masks.any(axis=(1, 2)).astype(np.uint8), rows=rows, events=events,
                     quality=quality)


def _blob(mask: np.ndarray) -> np.ndarray:
    """The visible part of one anomaly closed into one region (limbs, wheels, cart joined),
    with a closing as large as a quarter of its height."""
    if not mask.any():
        return mask
    ys, _ = np.nonzero(mask)
    size = max(3, int(round((ys.max() - ys.min() + 1) * 0.25)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    return binary_fill_holes(closed | mask)
