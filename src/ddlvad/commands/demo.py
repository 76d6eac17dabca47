"""``ddlvad demo``: synthesise a scene, track its objects, train, evaluate; one number at the end."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..config import DEMO, Config
from ..data.layouts import index_dataset
from ..data.synthetic import synthesize
from ..errors import UserError
from ..files import atomic_write
from ..objects.dataset import track_split
from . import Log, to_stderr
from .evaluate import evaluate
from .train import train


def demo(out: str | Path = "ddlvad-demo", *, seed: int = 0, force: bool = False, steps: int | None = None,
         progress: bool = True, log: Log = to_stderr) -> dict:
    """The synthetic scene -> motion boxes + OC-SORT -> the demo's training (:data:`ddlvad.config.DEMO`)
    -> paper-protocol evaluation; writes ``out/report.json`` and returns its content."""
    out = Path(out)
    data, run = out / "scene", out / "run"
    t0 = time.perf_counter()
    cfg = Config.preset(DEMO["preset"]).apply(DEMO["overrides"])
    cfg.train.seed = seed
    cfg.data.cache_dir = str(out / "cache")
    if steps is not None:
        cfg.train.steps = steps
    cfg.validate()  # --seed and --steps, before minutes of synthesis and tracking (train validates it again)
    if (run / "checkpoint.pt").exists() and not force:
        raise UserError(f"{out} already holds a demo: pass --force to run it again or choose another --out")
    if not (data / "scene.json").exists() or force:
        log(f"demo: synthesising a surveillance scene in {data}")
        synthesize(data, seed=seed)
    log("demo: detecting and tracking the training objects (motion detector + OC-SORT)")
    track_split(index_dataset(data, splits=("training",)), "training", cfg, progress=progress, log=log)
    summary = train(cfg, data, run, force=True, progress=progress, log=log)
    report = evaluate(run, data, out=out / "eval", cache_dir=cfg.data.cache_dir, progress=progress, log=log)
    result = {"auc_micro": report["auc_micro"], "auc_macro": report["auc_macro"],
              "protocol": report["protocol"], "frames_scored": report["frames_scored"],
              "localisation": {k: (report.get("localisation") or {}).get(k) for k in ("pixel_auc", "rbdc", "tbdc")},
              "minutes": round((time.perf_counter() - t0) / 60, 2), "training_minutes": summary["minutes"],
              "steps": summary["steps"], "stopped": summary["stopped"], "converged": summary["converged"],
              "machine": summary["machine"], "run": str(run), "evaluation": str(out / "eval")}
    atomic_write(out / "report.json", json.dumps(result, indent=2))
    return result
