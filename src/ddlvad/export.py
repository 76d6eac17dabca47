"""Export a trained model to ONNX or TorchScript, for scoring without ddlvad.

The exported module maps a batch of clips to the reconstruction, the error map and the
frame score of each clip's middle frame (the same computation as :mod:`ddlvad.score`):

- input ``clip``: ``(B, C, T, H, W)`` float32 in [0, 1] (RGB or grey, resized as in
  training; B is dynamic, C, T, H, W are the run's);
- outputs ``reconstruction`` ``(B, C, H, W)``, ``error`` ``(B, H, W)`` (``e(X_t, f(X))``)
  and ``score`` ``(B,)`` (worst patch mean; a frame is anomalous when it exceeds the
  threshold).

The run's settings travel with the file as JSON (:func:`export_metadata`): in the ONNX
``metadata_props`` under the key ``ddlvad``, in TorchScript as the extra file ``ddlvad.json``.
ONNX uses the TorchScript-based exporter (``dynamo=False``, opset :data:`OPSET`): the
torch.export-based one needs the ``onnxscript`` package, which is not a dependency.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .errors import UserError
from .loss import pixel_error
from .score import patch_scores

FORMATS = ("onnx", "torchscript")
OPSET = 17
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OUTPUTS = ("reconstruction", "error", "score")


class ScoringModule(nn.Module):
    """``clip (B, C, T, H, W)`` in [0, 1] -> ``(reconstruction (B, C, H, W), error (B, H, W), score (B,))``."""

    def __init__(self, model: nn.Module, patch: int, shifted_grid: bool) -> None:
        super().__init__()
        self.model = model
        self.patch = patch
        self.shifted_grid = shifted_grid

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        recon = self.model(clip)                                        # (B, C, H, W)
        error = pixel_error(clip[:, :, clip.shape[2] // 2], recon)      # (B, H, W)
        return recon, error, patch_scores(error, self.patch, self.shifted_grid)


def export_metadata(cfg, ckpt: dict) -> dict:
    """What a consumer of the exported file needs to prepare clips and read the score."""
    d, s = cfg.data, cfg.score
    return {"ddlvad": __version__, "input": "clip (B, C, T, H, W) float32 in [0, 1], RGB or grey",
            "outputs": list(OUTPUTS), "frames": d.frames, "height": d.height, "width": d.width,
            "channels": d.channels, "patch": s.patch, "shifted_grid": s.shifted_grid,
            "threshold": (ckpt.get("threshold") or {}).get("value"), "arch": cfg.model.arch,
            "mode": cfg.ddl.mode, "steps": ckpt.get("step")}


def export_model(run: str | Path, fmt: str = "onnx", out: str | Path | None = None) -> Path:
    """Write the :class:`ScoringModule` of ``run`` as ``fmt`` to ``out`` (default
    ``RUN/model.onnx`` or ``RUN/model.torchscript.pt``); returns the path."""
    from .checkpoint import load_model

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    model, cfg, ckpt = load_model(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    path = Path(out) if out else run_dir / f"model{SUFFIX[fmt]}"
    module = ScoringModule(model, cfg.score.patch, cfg.score.shifted_grid).eval()
    d = cfg.data
    example = torch.rand(2, d.channels, d.frames, d.height, d.width)
    meta = json.dumps(export_metadata(cfg, ckpt))
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Tracing records C, T, H, W and the patch grid as constants (as intended) and says so
        # in TracerWarnings; the legacy ONNX exporter adds a DeprecationWarning. Not for users.
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if fmt == "onnx":
                _export_onnx(module, example, tmp, meta)
            else:
                traced = torch.jit.trace(module, example)
                torch.jit.save(traced, str(tmp), _extra_files={"ddlvad.json": meta})
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {path} ({exc.strerror or exc}); choose another --out") from None
    return path


def _export_onnx(module: nn.Module, example: torch.Tensor, path: Path, meta: str) -> None:
    try:
        import onnx
    except ImportError:
        raise UserError("--format onnx needs the onnx package: pip install 'ddlvad[onnx]' "
                        "(or use --format torchscript)") from None
    batch = {0: "batch"}
    torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=OPSET,
                      input_names=["clip"], output_names=list(OUTPUTS),
                      dynamic_axes={name: batch for name in ("clip", *OUTPUTS)})
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "ddlvad", meta
    onnx.save(proto, str(path))
