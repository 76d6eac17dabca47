"""The named synthetic scenes beside the walkway: what each one draws, in one table.

Each scene is a fixed camera over a flat ground (:class:`Camera`): an object's size and
speed on screen scale with its depth, as on a real camera. Normal walkers follow the
scene's paths (:class:`Route`); test videos add anomalies (:data:`ANOMALIES`). Every
parameter of a scene is a field of :class:`GroundSpec`; :data:`SCENES` holds the five
scenes' values (the one place they are set). The renderer is :mod:`ddlvad.data.ground`.

Units: frame sizes and object heights on screen in pixels of the written frames (the
training size of the ``cpu`` preset, 160x240, unless ``width``/``height`` change); positions
on the ground in metres; speeds in metres per second at :data:`FPS` frames per second.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

FPS = 20.0
"""Frames per second of every scene (speeds in m/s become m/frame through it)."""
PERSON = 1.75
"""Height (m) of the reference person that ``near_height`` and ``far_height`` describe."""


@dataclass(frozen=True)
class Kind:
    """How one kind of moving object looks and moves."""

    shape: str
    """``person``, ``cyclist``, ``skater``, ``cart`` (a person pushing a trolley) or ``vehicle``."""
    speed: tuple[float, float]
    """Range of ground speed (m/s), drawn uniformly per object."""
    gait: float
    """Leg swing (0: none, 1: walking, 1.6: running)."""
    stride: float
    """Ground distance (m) of one gait cycle (legs, pedals)."""


KINDS: dict[str, Kind] = {
    "walker": Kind("person", (1.0, 1.5), 1.0, 1.5),
    "runner": Kind("person", (4.0, 6.0), 1.6, 2.8),
    "skater": Kind("skater", (4.0, 6.0), 0.15, 4.0),
    "cyclist": Kind("cyclist", (4.5, 6.2), 1.0, 2.2),
    "cart": Kind("cart", (0.9, 1.3), 1.0, 1.5),
    "vehicle": Kind("vehicle", (3.0, 4.5), 0.0, 1.0),
}
"""Every kind. The normal one is ``walker`` (median 1.25 m/s); the fast kinds move at
3.2-5x that (the ``fast`` scene's point)."""

ANOMALIES: dict[str, tuple[str, str]] = {
    "cyclist": ("cyclist", "enter"),
    "skater": ("skater", "enter"),
    "runner": ("runner", "enter"),
    "cart": ("cart", "enter"),
    "vehicle": ("vehicle", "enter"),
    "against": ("runner", "against"),
    "offpath": ("walker", "offpath"),
    "loiter": ("walker", "loiter"),
}
"""Anomaly name -> (kind, behaviour). Behaviours: ``enter`` (comes in from outside the
frame along a path, either way), ``against`` (comes in against the scene's main flow),
``offpath`` (a walker already in view leaves the path and wanders on the grass), ``loiter``
(a walker already in view stops and stays where nobody stops). Labels start when the
anomaly is visible (``enter``, ``against``) or when the behaviour starts."""


@dataclass(frozen=True)
class Route:
    """A straight paved path that normal walkers follow, given by its ends on screen."""

    start: tuple[float, float]
    """``(x, y)`` of one end's centre line as fractions of the frame width and height (may lie
    outside [0, 1]: paths run on beyond the frame)."""
    end: tuple[float, float]
    """The other end, likewise; walkers go start -> end, or back (``back_share``)."""
    width: float
    """Paved width (m) across the path; walkers keep 0.3 m inside its edges."""
    traffic: float = 1.0
    """Share of normal walkers on this path (relative to the scene's other paths)."""
    anomalies: float = 0.0
    """Share of anomalies placed on this path (relative); 0: none here."""
    back_share: float = 0.5
    """Share of walkers going end -> start (0: a one-way flow start -> end)."""
    paved: bool = True
    """Draw paving under it (False: a way across a plaza that another route paves)."""


@dataclass(frozen=True)
class Camera:
    """A pinhole camera over flat ground, described by how tall a :data:`PERSON` looks.

    A person standing on row ``y`` is ``far_height + (near_height - far_height) * y / height``
    pixels tall (linear in ``y``: sizes scale as 1 / depth); the horizon is the row where that
    is 0 (above the frame). ``focal`` (in frame widths) sets how many metres the frame spans
    across: smaller is wider.
    """

    width: int
    height: int
    near_height: float
    far_height: float
    focal: float

    @property
    def horizon(self) -> float:
        """Row (px, negative: above the frame) of the horizon."""
        return -self.far_height * self.height / (self.near_height - self.far_height)

    @property
    def elevation(self) -> float:
        """Height (m) of the camera over the ground."""
        return PERSON * (self.height - self.horizon) / self.near_height

    @property
    def f(self) -> float:
        """Focal length (px)."""
        return self.focal * self.width

    def depth(self, row: float) -> float:
        """Depth (m) of the ground seen at ``row`` (px, below the horizon)."""
        return self.f * self.elevation / (row - self.horizon)

    def row(self, depth: float) -> float:
        """Row (px) of the ground at ``depth`` (m)."""
        return self.horizon + self.f * self.elevation / depth

    def scale(self, depth: float) -> float:
        """Pixels per metre at ``depth`` (m)."""
        return self.f / depth

    def ground(self, x: float, row: float) -> tuple[float, float]:
        """``(X, Z)`` (m) on the ground of pixel ``(x, row)``."""
        z = self.depth(row)
        return (x - self.width / 2) * z / self.f, z

    def project(self, X: float, Z: float) -> tuple[float, float]:
        """Pixel ``(x, row)`` of the ground point ``(X, Z)`` (m)."""
        return self.width / 2 + self.f * X / Z, self.row(Z)


@dataclass(frozen=True)
class GroundSpec:
    """One named scene: camera, paths, walkers, anomalies, lighting, sensor."""

    name: str
    routes: tuple[Route, ...]
    anomalies: tuple[str, ...]
    """Anomaly names (:data:`ANOMALIES`) the test videos cycle through."""
    width: int = 240
    height: int = 160
    train_videos: int = 8
    test_videos: int = 6
    frames: int = 120
    near_height: float = 40.0
    """Height (px) of a 1.75 m person standing on the bottom row."""
    far_height: float = 20.0
    """Height (px) of a 1.75 m person standing on the top row (< ``near_height``)."""
    focal: float = 1.0
    """Focal length in frame widths (smaller: a wider view)."""
    walkers: tuple[int, int] = (2, 6)
    """Fewest and most normal walkers about at once; each video draws its own density."""
    density_changes: bool = False
    """Let the density go from quiet to dense (or back) within each video."""
    arrival: float = 0.03
    """Chance per frame and missing walker that one comes in."""
    anomaly_rows: tuple[float, float] = (0.0, 1.0)
    """Rows (fractions of the height) where ``offpath``/``loiter`` anomalies may happen."""
    anomaly_start: tuple[float, float] = (1 / 6, 1 / 2)
    """When the first anomaly of a test video starts, as fractions of its frames."""
    second_anomaly_gap: int = 25
    """Frames between a video's first and second anomaly."""
    grass: float = 95.0
    """Mean grey level of the grass; paving is ~60 lighter."""
    props: int = 5
    """Bushes and lamp posts standing on the grass (static, drawn in depth order)."""
    brightness: float = 0.0
    """Amplitude of the slow global brightness drift (0.3: gain 0.7-1.3 over a video)."""
    contrast: float = 0.0
    """Amplitude of the slow contrast drift around mid-grey."""
    cloud: float = 0.0
    """Darkening (0-1) under a passing cloud shadow; 0: no clouds."""
    cloud_share: float = 0.0
    """Share of videos a cloud passes through (training and testing alike)."""
    noise_sigma: float = 3.0
    """Sensor noise (grey levels, per pixel and frame)."""
    jpeg_quality: tuple[int, int] = (95, 95)
    """Range of JPEG quality of the written frames, drawn per video (low: blocky)."""
    supersample: int = 2
    """Drawing resolution as a multiple of the written one (smooth sub-pixel motion)."""
    min_visible: int = 6
    """Fewest visible pixels (written resolution) of an anomaly for its frame to be labelled."""
    camera: Camera = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.far_height < self.near_height:
            raise ValueError(f"scene {self.name}: need 0 < far_height < near_height")
        unknown = [a for a in self.anomalies if a not in ANOMALIES]
        if unknown:
            raise ValueError(f"scene {self.name}: unknown anomalies {unknown}; known: {', '.join(ANOMALIES)}")
        object.__setattr__(self, "camera", Camera(self.width, self.height, self.near_height, self.far_height,
                                                  self.focal))

    def replace(self, **changes) -> GroundSpec:
        """A copy with some fields changed (e.g. fewer videos or frames for a test)."""
        return replace(self, **changes)


def _lateral(row: float, width: float, **kw) -> Route:
    """A path across the frame at ``row`` (fraction of the height), running on past both sides."""
    return Route((-0.3, row), (1.3, row), width, **kw)


SCENES: dict[str, GroundSpec] = {
    # A long path straight away from the camera, crossed by a near and a far path. People
    # near the camera are 50-60 px tall and cross at ~2.5 px/frame; the anomalies keep mostly
    # to the far path (~25 px tall, a cyclist at ~1.5-2 px/frame) or leave it for the grass.
    "perspective": GroundSpec(
        "perspective",
        routes=(Route((0.56, 1.25), (0.47, -0.1), 3.2, traffic=1.2),
                _lateral(0.82, 2.6, traffic=1.0, anomalies=0.15),
                _lateral(0.28, 3.0, traffic=1.0, anomalies=0.85)),
        anomalies=("cyclist", "skater", "cart", "offpath"),
        near_height=64.0, far_height=12.0, walkers=(3, 8), anomaly_rows=(0.12, 0.4)),
    # A plaza crossed left to right by a flow of people (and some coming up from below the
    # camera) whose number swings between a few and ~30 within each video, training included.
    "crowd": GroundSpec(
        "crowd",
        routes=(Route((-0.35, 0.47), (1.35, 0.47), 8.7, anomalies=1.0, back_share=0.1),
                Route((0.05, 1.4), (1.1, 0.3), 3.0, traffic=0.3, back_share=0.1, paved=False)),
        anomalies=("against", "loiter", "cart"),
        near_height=46.0, far_height=18.0, walkers=(2, 30), density_changes=True, arrival=0.08,
        anomaly_rows=(0.35, 0.9), props=3),
    # The walkway's layout under changing light: slow brightness and contrast drift, a cloud
    # shadow passing through most videos, stronger sensor noise and JPEG blocks.
    "lighting": GroundSpec(
        "lighting",
        routes=(_lateral(0.62, 4.0, anomalies=1.0),),
        anomalies=("cyclist", "vehicle"),
        near_height=40.0, far_height=22.0, walkers=(2, 6), brightness=0.3, contrast=0.2,
        cloud=0.45, cloud_share=0.75, noise_sigma=5.0, jpeg_quality=(25, 45)),
    # A wide view (a person is 1/6 of the height at the bottom, 1/12 at the top): walkers
    # near and far, anomalies only on the far path and the grass beside it, 17-26 px tall
    # (1-2 patches of 16x16).
    "distant": GroundSpec(
        "distant",
        routes=(_lateral(0.75, 2.5, traffic=1.0), _lateral(0.3, 3.0, traffic=0.8, anomalies=1.0)),
        anomalies=("cyclist", "vehicle", "offpath", "skater"),
        near_height=42.0, far_height=13.0, walkers=(3, 8), anomaly_rows=(0.14, 0.42), props=7),
    # The walkway's layout; runners, skaters and cyclists look like walkers (same heights,
    # shades) but move at 3.2-5x a walker's median speed.
    "fast": GroundSpec(
        "fast",
        routes=(_lateral(0.64, 5.0, anomalies=1.0),),
        anomalies=("runner", "skater", "cyclist"),
        near_height=44.0, far_height=20.0, walkers=(2, 6)),
}
"""The named ground scenes (``ddlvad synth --scene NAME``); ``walkway`` is
:mod:`ddlvad.data.synthetic`'s own scene."""
