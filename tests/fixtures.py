"""Helpers the tests share (plain functions and constants; the pytest fixtures are in conftest.py).

Each builds its data from scratch with a fixed seed, so tests that use them stay independent.
"""

from __future__ import annotations

import numpy as np

from ddlvad.checkpoint import BEST, START_BEST
from ddlvad.config import Config
from ddlvad.data.clips import TrainingData
from ddlvad.data.tracks import VideoTracks
from ddlvad.runs import RUN_FILES

PLAIN_RUN_FILES = sorted(set(RUN_FILES) - {BEST, START_BEST, "snapshots"})
"""What a run without validation, averaging or snapshots writes (:data:`ddlvad.runs.RUN_FILES`
without the files only those write)."""


def noise_training_data(videos: int = 2, frames: int = 14, height: int = 32, width: int = 48) -> TrainingData:
    """``videos`` videos of uniform-noise grey frames (the ``tiny`` preset's size) with one tracked
    box in every frame, so that every window has a pseudo-anomaly mask."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, (frames, height, width, 1), dtype=np.uint8) for _ in range(videos)]
    rows = np.array([[f, 7, 0.1, 0.2, 0.5, 0.7, 1.0] for f in range(frames)], float)
    return TrainingData(arrays, [VideoTracks(frames, rows) for _ in range(videos)], [f"{i:02d}" for i in range(videos)])


def tiny_cfg(**sets) -> Config:
    """The ``tiny`` preset with ``{"section.field": value}`` changes (validated)."""
    return Config.preset("tiny").apply(sets).validate()
