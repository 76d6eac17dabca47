"""Export a trained model to ONNX or TorchScript, for scoring without ddlvad.

The exported :class:`ScoringModule` maps a batch of clips to the reconstruction, the error
map and the frame score of each clip's middle frame (the same computation as
:mod:`ddlvad.score`, through the same :func:`ddlvad.score.window_errors` and
:func:`ddlvad.score.frame_scores`):

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

import io
import warnings

import torch
from torch import nn

from . import __version__
from .config import Config, ScoreConfig
from .data.frames import FrameSpec
from .errors import UserError
from .score import clip_errors, frame_scores

FORMATS = ("onnx", "torchscript")
OPSET = 17
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
OUTPUTS = ("reconstruction", "error", "score")


class ScoringModule(nn.Module):
    """``clip (B, C, T, H, W)`` in [0, 1] -> ``(reconstruction (B, C, H, W), error (B, H, W), score (B,))``."""

    def __init__(self, model: nn.Module, score: ScoreConfig) -> None:
        super().__init__()
        self.model = model
        self.score = score

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        error, recon = clip_errors(self.model, clip, self.score.flip)   # (B, H, W), (B, C, H, W)
        return recon, error, frame_scores(error, self.score)


def export_metadata(cfg: Config, ckpt: dict) -> dict:
    """What a consumer of the exported file needs to prepare clips and read the score."""
    d, s, size = cfg.data, cfg.score, FrameSpec.for_scoring(cfg)
    return {"ddlvad": __version__, "input": "clip (B, C, T, H, W) float32 in [0, 1], RGB or grey",
            "outputs": list(OUTPUTS), "frames": d.frames, "height": size.height, "width": size.width,
            "channels": d.channels, "patch": s.patch, "shifted_grid": s.shifted_grid, "flip": s.flip,
            "scale": s.scale, "trained_size": [d.height, d.width],
            "threshold": (ckpt.get("threshold") or {}).get("value"), "arch": cfg.model.arch,
            "mode": cfg.ddl.mode, "steps": ckpt.get("step")}


def exported_bytes(module: ScoringModule, cfg: Config, fmt: str, meta: str) -> bytes:
    """The file content of ``module`` in ``fmt`` (``onnx`` or ``torchscript``) with ``meta`` inside."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    d, size = cfg.data, FrameSpec.for_scoring(cfg)
    example = torch.rand(2, d.channels, d.frames, size.height, size.width)
    buffer = io.BytesIO()
    # Tracing records C, T, H, W and the patch grid as constants (as intended) and says so in
    # TracerWarnings; the legacy ONNX exporter adds a DeprecationWarning. Not for users.
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if fmt == "onnx":
            return _onnx_bytes(module.eval(), example, meta)
        torch.jit.save(torch.jit.trace(module.eval(), example), buffer, _extra_files={"ddlvad.json": meta})
    return buffer.getvalue()


def _onnx_bytes(module: nn.Module, example: torch.Tensor, meta: str) -> bytes:
    try:
        import onnx
    except ImportError:
        raise UserError("--format onnx needs the onnx package: pip install 'ddlvad[onnx]' "
                        "(or use --format torchscript)") from None
    buffer = io.BytesIO()
    batch = {0: "batch"}
    torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=OPSET,
                      input_names=["clip"], output_names=list(OUTPUTS),
                      dynamic_axes={name: batch for name in ("clip", *OUTPUTS)})
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = "ddlvad", meta
    return proto.SerializeToString()
