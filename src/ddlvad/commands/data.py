"""``ddlvad synth`` (write a synthetic dataset) and ``ddlvad data info`` (what a dataset holds)."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from ..config import check_seed
from ..data.info import summary
from ..data.layouts import index_dataset
from ..data.synthetic import SCENE_NAMES, synthesize
from ..errors import UserError


def synth(out: str | Path, *, seed: int = 0, force: bool = False, scene: str = "walkway") -> dict:
    """Write the synthetic surveillance scene ``scene`` (:data:`~ddlvad.data.synthetic.SCENE_NAMES`,
    folder layout) into ``out``; returns its description."""
    check_seed(seed, f"--seed {seed}")
    if scene not in SCENE_NAMES:
        raise UserError(f"--scene {scene}: no such synthetic scene; choose one of {', '.join(SCENE_NAMES)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise UserError(f"{out} is not empty: choose another folder or pass --force")
    return synthesize(out, seed=seed, scene=scene)


def info(root: str | Path, dataset: str | None = None, scene: str | None = None) -> dict:
    """Layout, videos, frames, scenes and abnormal frames of ``root`` (JSON-ready)."""
    return summary(index_dataset(root, dataset, scene))


def print_info(info: dict, stream: TextIO | None = None) -> None:
    print(f"dataset {info['dataset']} (layout {info.get('layout')}) at {info.get('root')}", file=stream)
    for split in ("training", "testing"):
        s = info[split]
        extra = f", {s['abnormal_frames']} abnormal" if s.get("abnormal_frames") is not None else ""
        print(f"  {split:9} {s['videos']:4} videos {s['frames']:8} frames{extra}", file=stream)
    if info.get("frame_size"):
        print(f"  frame size {info['frame_size'][0]}x{info['frame_size'][1]} (h x w)", file=stream)
    if info.get("scenes"):
        print(f"  scenes {', '.join(info['scenes'])}", file=stream)
