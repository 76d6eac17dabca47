"""What one change to a preset costs per training step, as a ratio to the preset itself.

The accuracy search (bench/RESULTS.md, "Accuracy") compares changes at a fixed wall-clock
budget; a change that makes a step k times slower gets 1/k of the steps. This prints the
seconds per DDL training step of the preset and of each variant, timed in one process with
the rounds alternating (:func:`bench.common.timed_rounds`), and the ratio. Prints figures,
asserts nothing.

    python -m bench.speed.variant_cost                                   # the search's levers
    python -m bench.speed.variant_cost --variant "t7=data.frames=7" --threads 2

The base is the preset at the size it starts training at (:func:`bench.common.preset_sizes`:
128x192 for the ``cpu`` preset, whose last steps train at 160x240; the arm "full size" times
those).
"""

from __future__ import annotations

import argparse

import torch

from bench.common import machine, preset_sizes, random_training_data, timed_rounds
from ddlvad.trainer import Trainer

LEVERS = {
    "T=5": "data.frames=5",
    "3 channels": "data.channels=3",
    "256x256": "data.height=256;data.width=256",
    "latent 128": "model.latent=128",
}


def trainer_for(preset: str, sets: list[str], size: int = 0) -> Trainer:
    cfg = preset_sizes(preset)[size]
    # a fixed layout for every arm, so that the ratio is the change's own cost
    cfg.apply({"train.val_fraction": 0, "train.until": "steps", "model.channels_last": False,
               "model.fold_projection": True})
    cfg.override(sets)
    trainer = Trainer(cfg, random_training_data(cfg, 40), "unused-run-dir", progress=False)
    trainer.train_step(0)  # warm-up
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--variant", action="append", default=[], help="NAME=SET;SET (default: the search's levers)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="steps per round")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = dict(v.split("=", 1) for v in args.variant) if args.variant else LEVERS
    arms = {"preset": trainer_for(args.preset, [])}
    if len(preset_sizes(args.preset)) > 1:
        arms["full size"] = trainer_for(args.preset, [], size=-1)
    arms.update({name: trainer_for(args.preset, [s for s in sets.split(";") if s]) for name, sets in variants.items()})
    seconds = timed_rounds(arms, args.rounds, args.steps)
    steps = args.rounds * args.steps
    print(f"{machine()}; `{args.preset}` preset, DDL steps of "
          f"{arms['preset'].cfg.train.batch_size} windows, {steps} steps per arm")
    base = seconds["preset"] / steps
    for name, total in seconds.items():
        per = total / steps
        print(f"{name:12s} {per:7.3f} s/step  x{per / base:5.2f}  ({1 / (per / base):.2f} of the preset's steps "
              f"in the same time)")


if __name__ == "__main__":
    main()
