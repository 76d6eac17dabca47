"""Choosing the convolution layout that is fastest on this machine: a short probe, cached.

Channels-last weights and the folded encoder projection compute the same sums as the
straightforward NCHW code, but which is faster depends on the machine: with AVX-512 both
gain (1.27x training at the ``cpu`` size), with AVX2 channels-last trained the ``paper``
size 0.69x as fast and the fold lost 29 % in NHWC (bench/RESULTS.md, "Layout probe"). Where
``model.channels_last`` or ``model.fold_projection`` is None (``auto``), :func:`choose` times
one training step (or one scoring pass) of the run's model in each candidate layout,
alternating rounds, and keeps the fastest. The answer is cached in memory and in
``<cache>/layout-probe.json`` under a key naming the machine (CPU model, SIMD level that
PyTorch uses, oneDNN ISA limit, threads, device, torch version) and the model's shape, so
a machine probes each size once.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from .config import Config, scaled_size
from .data.frames import default_cache_dir
from .files import cached_entry
from .machine import machine_info
from .models import ConvLayout, apply_layout, build_model

CANDIDATES = (ConvLayout(False, True), ConvLayout(True, True), ConvLayout(True, False))
"""NCHW with the fold (never slower than NCHW without it), NHWC with and without the fold."""
PURPOSES = ("train", "score")
_MEMO: dict[str, ConvLayout] = {}


def choose(cfg: Config, purpose: str, device: torch.device | None = None, cache_dir: str | Path | None = None,
           rounds: int = 2) -> ConvLayout:
    """The layout to ``train`` or ``score`` ``cfg``'s model in on this machine (see the module doc)."""
    m = cfg.model
    options = [c for c in CANDIDATES if m.channels_last in (None, c.channels_last)
               and m.fold_projection in (None, c.fold)]
    if len(options) == 1:
        return options[0]
    if not options:  # NCHW without the fold, asked for explicitly
        return ConvLayout(bool(m.channels_last), bool(m.fold_projection))
    device = device or torch.device("cpu")
    key = probe_key(cfg, purpose, device, options)
    path = default_cache_dir(cache_dir if cache_dir is not None else cfg.data.cache_dir) / "layout-probe.json"
    if key not in _MEMO:
        def measure() -> dict:
            seconds = probe(cfg, purpose, options, device, rounds)
            best = min(options, key=lambda c: seconds[c])
            return {"layout": {"channels_last": best.channels_last, "fold": best.fold},
                    "seconds": {_name(c): round(s, 5) for c, s in seconds.items()}}

        _MEMO[key] = ConvLayout(**cached_entry(path, key, measure)["layout"])
    return _MEMO[key]


def probe(cfg: Config, purpose: str, options: list[ConvLayout], device: torch.device, rounds: int = 2
          ) -> dict[ConvLayout, float]:
    """Seconds of one timed step per layout (the fastest of ``rounds`` alternating rounds,
    after one warm-up each): training = forward of a clip and of a noised clip plus backward
    on a batch of :func:`probe_batch` windows; scoring = one :class:`ddlvad.score.Scorer` pass
    over :func:`probe_batch` windows."""
    from .score import Scorer

    d = cfg.data
    generator = torch.Generator().manual_seed(0)
    models = {}
    for layout in options:
        torch.manual_seed(0)
        models[layout] = apply_layout(build_model(cfg), layout).to(device)
    if purpose == "train":
        clip = torch.rand(probe_batch(cfg, purpose), d.channels, d.frames, d.height, d.width, generator=generator)
        clip = clip.to(device)

        def step(model):
            model.train()
            loss = model(clip).mean() + model(clip.flip(-1)).mean()
            loss.backward()
            model.zero_grad(set_to_none=True)
    else:
        count = probe_batch(cfg, purpose) + d.frames - 1
        height, width = probe_size(cfg, purpose)
        frames = np.random.default_rng(0).integers(0, 256, (count, height, width, d.channels), dtype=np.uint8)

        def step(model):
            Scorer(model, cfg.score).errors(frames)

    best = {layout: float("inf") for layout in options}
    for layout in options:  # warm-up
        step(models[layout])
    for _ in range(rounds):
        for layout in options:
            _sync(device)
            t0 = time.perf_counter()
            step(models[layout])
            _sync(device)
            best[layout] = min(best[layout], time.perf_counter() - t0)
    return best


def probe_size(cfg: Config, purpose: str) -> tuple[int, int]:
    """The frame size the probe times: the training size, or for scoring the size frames are
    scored at (``score.scale``, :func:`ddlvad.config.scaled_size`)."""
    d = cfg.data
    return scaled_size(d.height, d.width, cfg.score.scale) if purpose == "score" else (d.height, d.width)


def probe_batch(cfg: Config, purpose: str) -> int:
    """Windows per probe step: the run's batch (layouts rank differently at different batch
    sizes), capped so that one step costs about what 8 windows of the ``cpu`` preset cost
    (the ``paper`` size then probes 2 windows, not 10)."""
    height, width = probe_size(cfg, purpose)
    cap = max(1, (8 * 128 * 192 * 64) // (height * width * cfg.model.latent * cfg.data.channels))
    return max(1, min(cfg.train.batch_size if purpose == "train" else cfg.score.batch_size, cap))


def probe_key(cfg: Config, purpose: str, device: torch.device, options: list[ConvLayout]) -> str:
    """What the probe's answer depends on: the machine, the model's shape, the purpose and the candidates."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r}: one of {PURPOSES}")
    m, d = cfg.model, cfg.data
    batch = probe_batch(cfg, purpose)
    return json.dumps({
        "machine": _machine(device), "torch": str(torch.__version__), "threads": torch.get_num_threads(),
        "purpose": purpose, "model": [m.arch, m.latent, m.block], "input": [d.channels, d.frames, *probe_size(cfg, purpose)],
        "batch": batch, "candidates": [_name(c) for c in options],
    }, sort_keys=True)


def _machine(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"device": torch.cuda.get_device_name(device)}
    info = machine_info(device)
    return {"device": "cpu", "cpu": info["cpu"], "capability": info["simd"], "onednn_max_isa": info["onednn_max_isa"]}


def _name(layout: ConvLayout) -> str:
    return f"{'nhwc' if layout.channels_last else 'nchw'}{'' if layout.fold else '-unfolded'}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
