"""Progressive resizing (beyond the paper): train at one frame size, then go on at a larger one.

    python -m bench.experiments.progressive --data ../shared/data/ped2 --out RUN \
        --first 900 --then 280 --first-size 128x192 --size 160x240 [--seed 0] [--cache-dir CACHE] \
        [--set KEY=VALUE ...]

Two ordinary runs glued by hand, which is how progressive resizing was first measured; since
then ``train.start_scale`` does it in one run, equal bit for bit (tests/test_progressive.py).
The network is fully convolutional, so its weights carry over to another frame size. Stage 1
trains the ``cpu`` preset (with ``--set`` changes, ``train.start_scale`` 1) for ``--first``
steps at ``--first-size`` and full learning rate; stage 2 resumes from its ``checkpoint.pt``
(weights, anomaly weight, Adam state) at ``--size`` for ``--then`` more steps with the learning
rate dropped by ``train.lr_gamma`` at the boundary. Stage 2's validation (at the new size) chooses its best
model afresh: signals at two sizes are not compared. ``RUN/stage2`` is then an ordinary run
folder for ``ddlvad evaluate``. The point: the cheap small-frame steps take the network through
its first plateau (learning the scene), the larger frames then lift the small anomalies
(bench/RESULTS.md, "The training-side search"). Asserts nothing; prints each stage's summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from bench.common import machine
from ddlvad.checkpoint import CHECKPOINT
from ddlvad.commands.train import train
from ddlvad.config import Config


def frame_size(text: str) -> tuple[int, int]:
    """``HxW`` -> ``(H, W)`` (argparse type of ``--first-size`` and ``--size``)."""
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def stage_configs(args: argparse.Namespace) -> tuple[Config, Config]:
    """The two stages' configs: the same run but for size, length and where the lr drops."""
    base = Config.preset("cpu").override(list(args.set))
    base.set("train.start_scale", 1.0)
    base.set("train.seed", args.seed)
    base.set("train.until", "steps")
    if args.cache_dir:
        base.set("data.cache_dir", args.cache_dir)
    total = args.first + args.then
    stages = []
    for (height, width), steps, drop in ((args.first_size, args.first, 1.0),          # no drop in stage 1
                                         (args.size, total, args.first / total)):     # the drop at the boundary
        cfg = Config.from_dict(base.to_dict())
        cfg.apply({"data.height": height, "data.width": width, "train.steps": steps, "train.lr_drop_at": drop})
        stages.append(cfg.validate())
    return stages[0], stages[1]


def hand_over(first_run: Path, second_run: Path, second: Config) -> None:
    """Stage 2's folder: stage 1's checkpoint relabelled with stage 2's config, the validation
    plateau forgotten, the metrics carried over."""
    second_run.mkdir(parents=True, exist_ok=True)
    state = torch.load(first_run / CHECKPOINT, map_location="cpu", weights_only=False)
    state["config"] = second.to_dict()
    state["plateau"] = None
    state["validated_at"] = None
    state["total_steps"] = second.train.steps
    torch.save(state, second_run / CHECKPOINT)
    shutil.copy(first_run / "metrics.jsonl", second_run / "metrics.jsonl")
    second.to_yaml(second_run / "config.yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, help="folder for stage1/ and stage2/")
    ap.add_argument("--first", type=int, required=True, help="steps at the preset's size")
    ap.add_argument("--then", type=int, required=True, help="steps at --size after them")
    ap.add_argument("--first-size", type=frame_size, default="128x192", help="HxW of stage 1 (default 128x192)")
    ap.add_argument("--size", type=frame_size, default="160x240", help="HxW of stage 2 (default 160x240)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    first, second = stage_configs(args)
    out = Path(args.out)
    print(machine(), flush=True)
    one = train(first, args.data, out / "stage1", force=True)
    hand_over(out / "stage1", out / "stage2", second)
    two = train(second, args.data, out / "stage2", resume=True)
    keep = ("steps", "minutes", "stopped", "anomaly_weight")
    print(json.dumps({"stage1": {k: one[k] for k in keep}, "stage2": {k: two[k] for k in keep},
                      "best_step": two.get("validation", {}).get("best_step")}, indent=2))


if __name__ == "__main__":
    main()
