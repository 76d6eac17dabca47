"""Scoring with an inference engine: the model's encoder and decoder as exported graphs.

:func:`window_errors <ddlvad.score.window_errors>` needs only ``model.frames``,
``model.encode_frames`` and ``model.decode_windows`` (and :class:`ddlvad.score.Scorer` the
eval/train switch and a parameter to read the device from). An :class:`Engine` offers
exactly those, with two graphs exported from the trained torch model (batch axis dynamic,
frame size fixed): the **encoder**, run once per frame, and the **decoder** (the Conv3d of
every level and the 2-D decoder), run once per window. So the encoder's outputs are still
computed once per frame and shared by the T windows that contain it (docs/method.md §3),
and everything around the two graphs (window stacking, flip averaging, the pixel error,
the patch scores) stays the torch code of :mod:`ddlvad.score`.

Engines (:data:`ENGINES`): ``torch`` (the model itself: the default and the reference),
``onnxruntime`` (CPU execution provider, all graph optimisations, torch's thread count) and
``openvino`` (CPU plugin reading the same ONNX files, float32 inference, latency hint). ``auto``:
:func:`choose_engine` times the candidates on this machine and keeps the fastest that
matches torch; the answer is cached in ``<cache>/engine-probe.json`` like the layout probe's
(:mod:`ddlvad.conv_layout`).

A model's graphs are exported once per model and frame size and kept in
``<cache>/engines/DIGEST/`` (``encoder.onnx``, ``decoder.onnx``, then ``export.json`` last,
each written atomically); the digest covers the model's weights and shape, the frame size,
torch's version and the export format, so a restart loads the files instead of exporting
again. Each engine version is checked against torch on random frames once per machine
(:data:`TOLERANCE`) and its verdict kept beside the graphs (``ENGINE-DIGEST.json``); an
engine that does not match raises :class:`EngineMismatch` (``auto`` then keeps torch).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import io
import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import ENGINE_CHOICES, Config
from .data.frames import FrameSpec, default_cache_dir
from .errors import UserError
from .files import atomic_write, cached_entry, read_json
from .machine import machine_info
from .models import DEFAULT_CONV_LAYOUT, apply_layout, conv_layout_of

ENGINES = ENGINE_CHOICES[1:]
"""The engines a model can score with; ``auto`` chooses among those installed (:func:`choose_engine`)."""
CHOICES = ENGINE_CHOICES
PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
"""The pip package each exported engine needs."""
TOLERANCE = 1e-5
"""Largest absolute difference from torch, in error-map and reconstruction values (both in
[0, 1]), that an engine may show on the check at build time."""
OPSET = 17
FORMAT = 1
"""Version of the files an engine folder holds; a change makes every cached engine stale."""
PROBE_FILE = "engine-probe.json"
Runner = Callable[[list[np.ndarray]], list[np.ndarray]]
"""One exported graph: its input arrays (in input order) -> its output arrays."""
_MEMO: dict[str, str] = {}


class EngineMismatch(RuntimeError):
    """An exported engine computes other values than the torch model (beyond :data:`TOLERANCE`)."""


class Engine:
    """A trained model's encoder and decoder run by an inference engine, with the scoring
    interface of the torch model (``frames``, ``encode_frames``, ``decode_windows``, ``eval``,
    ``train``, ``training``, ``parameters``): pass it to :class:`ddlvad.score.Scorer` in the
    model's place. Built by :func:`build_engine`. Input and output tensors are float32 on the
    CPU; frames must have the size the engine was built for (:attr:`input`)."""

    training = False

    def __init__(self, name: str, version: str, frames: int, input: tuple[int, int, int],
                 encoder: Runner, decoder: Runner, folder: Path, check: dict) -> None:
        self.name, self.version = name, version
        self.frames = frames
        """Window length T."""
        self.input = input
        """``(C, H, W)`` of the frames it takes."""
        self.folder = folder
        """Where its files are cached."""
        self.check = check
        """The parity check of its build: ``max_error`` and ``max_reconstruction`` differences from torch."""
        self._encoder, self._decoder = encoder, decoder

    def __repr__(self) -> str:
        return f"Engine({self.name} {self.version}, T={self.frames}, input {self.input})"

    def encode_frames(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Encoder outputs of independent frames ``(N, C, H, W)``: per level ``(N, ch, h, w)``."""
        if tuple(frames.shape[1:]) != self.input:
            raise ValueError(f"the {self.name} engine takes frames (N, {', '.join(map(str, self.input))}), "
                             f"got {tuple(frames.shape)}")
        return [torch.from_numpy(f) for f in self._encoder([_array(frames)])]

    def decode_windows(self, windows: list[torch.Tensor]) -> torch.Tensor:
        """Per level ``(B, ch, T, h, w)`` -> reconstructed middle frames ``(B, C, H, W)``."""
        return torch.from_numpy(self._decoder([_array(w) for w in windows])[0])

    def eval(self) -> Engine:
        return self

    def train(self, mode: bool = True) -> Engine:
        if mode:
            raise ValueError(f"the {self.name} engine only scores: train the torch model")
        return self

    def parameters(self) -> Iterator[torch.Tensor]:
        """A zero-size CPU tensor: what the scorer reads the input device from."""
        yield torch.empty(0)


# ---------------------------------------------------------------------- choosing and loading
def load_engine(model: nn.Module, cfg: Config, engine: str = "auto", batch: int | None = None,
                cache_dir: str | Path | None = None) -> nn.Module | Engine:
    """What to score ``model`` (trained on ``cfg``) with: the model itself for ``torch``, an
    :class:`Engine` for ``onnxruntime`` / ``openvino``, and for ``auto`` the one
    :func:`choose_engine` picks for ``batch`` windows per pass (default ``score.batch_size``;
    the model itself when the engine picked fails to build for it or does not match torch on
    it, with a warning). An unknown name or a missing package raises :class:`UserError`; an
    engine asked for by name that does not match torch raises :class:`EngineMismatch`."""
    _check_name(engine)
    if engine == "torch":
        return model
    if engine != "auto":
        return build_engine(model, cfg, engine, cache_dir)
    engine = choose_engine(model, cfg, "score", batch, cache_dir)
    if engine == "torch":
        return model
    try:
        return build_engine(model, cfg, engine, cache_dir)
    except Exception as exc:  # the probe chose on another model of this size; torch is always right
        warnings.warn(f"engine auto: {engine} failed on this model ({str(exc).splitlines()[0][:200]}); "
                      f"scoring with torch", stacklevel=2)
        return model


def choose_engine(model: nn.Module, cfg: Config, purpose: str = "score", batch: int | None = None,
                  cache_dir: str | Path | None = None, rounds: int = 2) -> str:
    """The fastest engine on this machine, among those installed that match torch, to score
    ``batch`` windows per pass (default ``score.batch_size``) of ``model`` (trained on ``cfg``).
    Cached in memory and in ``<cache>/engine-probe.json`` under the machine, the model's size
    and the engine versions. A model off the CPU keeps ``torch`` (the engines run on the CPU)."""
    if purpose != "score":
        raise ValueError(f"purpose {purpose!r}: engines only score")
    if _device(model).type != "cpu":
        return "torch"
    candidates = ["torch", *(e for e in ENGINES[1:] if _installed(e))]
    if len(candidates) == 1:
        return "torch"
    batch = batch or cfg.score.batch_size
    key = probe_key(model, cfg, batch, candidates)
    path = default_cache_dir(cache_dir if cache_dir is not None else cfg.data.cache_dir) / PROBE_FILE
    if key not in _MEMO:
        def measure() -> dict:
            seconds, reasons = probe(model, cfg, candidates, batch, cache_dir, rounds)
            return {"engine": min(seconds, key=seconds.__getitem__),
                    "seconds": {k: round(v, 5) for k, v in seconds.items()}, "excluded": reasons}

        _MEMO[key] = cached_entry(path, key, measure)["engine"]
    return _MEMO[key]


def probe(model: nn.Module, cfg: Config, candidates: list[str], batch: int, cache_dir: str | Path | None = None,
          rounds: int = 2) -> tuple[dict[str, float], dict[str, str]]:
    """Seconds of one :func:`ddlvad.score.window_errors` pass over ``batch`` windows of random
    frames per engine (the fastest of ``rounds`` alternating rounds, after one warm-up each),
    and why each engine left out was (its build failed or did not match torch)."""
    from .score import window_errors

    engines: dict[str, nn.Module | Engine] = {}
    reasons: dict[str, str] = {}
    for name in candidates:
        try:
            engines[name] = model if name == "torch" else build_engine(model, cfg, name, cache_dir)
        except Exception as exc:  # a broken or mismatching engine is simply not chosen
            reasons[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    spec = FrameSpec.for_scoring(cfg)
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch + _frames(model) - 1, spec.channels, spec.height, spec.width, generator=generator)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            best = dict.fromkeys(engines, float("inf"))
            for engine in engines.values():  # warm-up
                window_errors(engine, frames, 1, cfg.score.flip)
            for _ in range(rounds):
                for name, engine in engines.items():
                    t0 = time.perf_counter()
                    window_errors(engine, frames, 1, cfg.score.flip)
                    best[name] = min(best[name], time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return best, reasons


def probe_key(model: nn.Module, cfg: Config, batch: int, candidates: list[str]) -> str:
    """What the probe's answer depends on: the machine, the model's size and torch layout
    (:func:`ddlvad.models.conv_layout_of`), the batch and the engine versions."""
    m, d, spec = cfg.model, cfg.data, FrameSpec.for_scoring(cfg)
    info = machine_info(torch.device("cpu"))
    layout = conv_layout_of(model)
    return json.dumps({
        "machine": {"cpu": info["cpu"], "capability": info["simd"], "onednn_max_isa": info["onednn_max_isa"],
                    "threads": torch.get_num_threads()},
        "model": [m.arch, m.latent, m.block], "input": [spec.channels, d.frames, spec.height, spec.width],
        "batch": batch, "flip": cfg.score.flip, "engines": {name: _version(name) for name in candidates},
        "torch_layout": {"channels_last": layout.channels_last, "fold": layout.fold},
    }, sort_keys=True)


# ---------------------------------------------------------------------- building an engine
def build_engine(model: nn.Module, cfg: Config, engine: str, cache_dir: str | Path | None = None) -> Engine:
    """``model`` (trained on ``cfg``, scored at ``FrameSpec.for_scoring(cfg)``) as an
    ``onnxruntime`` or ``openvino`` :class:`Engine`. The graphs come from ``<cache>/engines/``
    when this model was exported before at this frame size (:func:`export_key`), else they
    are exported and cached; each engine version is checked against torch once per machine
    (:func:`parity`) and its verdict kept beside the graphs (:func:`engine_key`). Raises
    :class:`EngineMismatch` when the engine does not match torch."""
    _check_name(engine)
    if engine not in PACKAGES:
        raise ValueError(f"engine {engine!r} is not an exported engine ({', '.join(PACKAGES)})")
    spec, frames = FrameSpec.for_scoring(cfg), _frames(model)
    key = export_key(model, cfg)
    folder = default_cache_dir(cache_dir if cache_dir is not None else cfg.data.cache_dir) / "engines" / _digest(key)
    verdict_key = engine_key(key, engine)
    verdict_file = folder / f"{engine}-{_digest(verdict_key)}.json"
    verdict = read_json(verdict_file)
    if verdict.get("key") != verdict_key:
        verdict = {}
    if verdict and not verdict["check"]["passed"]:
        raise EngineMismatch(_mismatch(engine, verdict["check"]))
    reference = None
    if read_json(folder / "export.json").get("key") != key:
        reference = _export(model, spec, key, folder)
    try:
        built = _open(engine, folder, spec, frames, verdict.get("check", {}))
    except Exception:  # unreadable files: export again
        reference = _export(model, spec, key, folder)
        built = _open(engine, folder, spec, frames, {})
    if not verdict:
        built.check = parity(reference or _cpu_copy(model), built, spec)
        atomic_write(verdict_file, json.dumps({"key": verdict_key, "check": built.check}, indent=1),
                     what="--cache-dir")
    if not built.check["passed"]:
        raise EngineMismatch(_mismatch(engine, built.check))
    return built


def export_key(model: nn.Module, cfg: Config) -> str:
    """What the exported graphs depend on: the model's weights (:func:`model_digest`) and
    shape, the frame size, torch's version and the export format."""
    m, spec = cfg.model, FrameSpec.for_scoring(cfg)
    return json.dumps({
        "format": FORMAT, "opset": OPSET, "torch": str(torch.__version__), "weights": model_digest(model),
        "model": [m.arch, m.latent, m.block], "input": [spec.channels, _frames(model), spec.height, spec.width],
    }, sort_keys=True)


def engine_key(export: str, engine: str) -> str:
    """What an engine's check against torch depends on: the graphs (``export``, :func:`export_key`),
    the engine and its version, and the machine."""
    info = machine_info(torch.device("cpu"))
    return json.dumps({"export": export, "engine": engine, "version": _version(engine),
                       "machine": {"cpu": info["cpu"], "capability": info["simd"]}}, sort_keys=True)


def _export(model: nn.Module, spec: FrameSpec, key: str, folder: Path) -> nn.Module:
    """Export ``model``'s graphs into ``folder`` (``export.json`` last, naming ``key``); returns
    the eval-mode CPU copy that was exported, the reference of the check."""
    reference = _cpu_copy(model)
    encoder, decoder = export_graphs(reference, spec)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "encoder.onnx", encoder, what="--cache-dir")
    atomic_write(folder / "decoder.onnx", decoder, what="--cache-dir")
    atomic_write(folder / "export.json", json.dumps({"key": key}, indent=1), what="--cache-dir")
    return reference


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state (names, dtypes, shapes and values of every parameter and buffer)."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class _EncoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.model.encode_frames(frames))                 # per level (N, ch, h, w)


class _DecoderGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *windows: torch.Tensor) -> torch.Tensor:
        return self.model.decode_windows(list(windows))                # (B, C, H, W)


def export_graphs(model: nn.Module, spec: FrameSpec) -> tuple[bytes, bytes]:
    """The ONNX files of ``model``'s encoder (``frames (N, C, H, W)`` -> ``feature0..3``) and
    decoder (``window0..3 (B, ch, T, h, w)`` -> ``reconstruction (B, C, H, W)``) for frames of
    ``spec``; N and B dynamic. ``model``: an eval-mode CPU model that may be changed (a copy)."""
    apply_layout(model, DEFAULT_CONV_LAYOUT)  # NCHW with the folded projection: no pixel unshuffle in the graph
    model.eval()
    frames = torch.rand(2, spec.channels, spec.height, spec.width)
    with torch.no_grad():
        feats = model.encode_frames(frames)
    windows = tuple(torch.stack([f] * _frames(model), dim=2) for f in feats)   # (2, ch, T, h, w)
    levels = range(len(feats))
    encoder = _onnx(_EncoderGraph(model).eval(), (frames,), ["frames"], [f"feature{i}" for i in levels])
    decoder = _onnx(_DecoderGraph(model).eval(), windows, [f"window{i}" for i in levels], ["reconstruction"])
    return encoder, decoder


def _onnx(module: nn.Module, example: tuple[torch.Tensor, ...], inputs: list[str], outputs: list[str]) -> bytes:
    buffer = io.BytesIO()
    # Tracing records C, T, H, W as constants (as intended) and says so in TracerWarnings; the
    # legacy exporter adds a DeprecationWarning. Not for users. (It also restores the wrapper's
    # train/eval mode on the way out, so the wrappers are put in eval mode first.)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buffer, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, dynamic_axes={name: {0: "batch"} for name in inputs + outputs})
    return buffer.getvalue()


def parity(model: nn.Module, engine: Engine, spec: FrameSpec) -> dict:
    """How far ``engine`` is from ``model`` (eval mode, CPU) on :func:`ddlvad.score.window_errors`
    of ``T + 1`` random frames (two windows, more than the batch exported): the largest absolute
    differences of the error maps and reconstructions, and whether both are within :data:`TOLERANCE`."""
    from .score import window_errors

    frames = torch.rand(_frames(model) + 1, spec.channels, spec.height, spec.width,
                        generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        error, recon = window_errors(model, frames)
        error_e, recon_e = window_errors(engine, frames)
    d_error, d_recon = float((error - error_e).abs().max()), float((recon - recon_e).abs().max())
    return {"max_error": d_error, "max_reconstruction": d_recon,
            "passed": bool(d_error <= TOLERANCE and d_recon <= TOLERANCE), "tolerance": TOLERANCE}


def _open(engine: str, folder: Path, spec: FrameSpec, frames: int, check: dict) -> Engine:
    threads = torch.get_num_threads()
    if engine == "onnxruntime":
        encoder, decoder = (_onnxruntime(folder / name, threads) for name in ("encoder.onnx", "decoder.onnx"))
    else:
        encoder, decoder = (_openvino(folder / name, threads) for name in ("encoder.onnx", "decoder.onnx"))
    return Engine(engine, _version(engine), frames, (spec.channels, spec.height, spec.width), encoder, decoder,
                  folder, check)


def _onnxruntime(path: Path, threads: int, spinning: bool = False) -> Runner:
    """An ONNX Runtime runner of the ONNX file at ``path``. Without ``spinning`` its pool's threads
    sleep between runs instead of spinning: spinning ones took the cores from the torch code
    between the graphs (a torch pass after one could take 20x as long on 2 cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return lambda arrays: session.run(None, dict(zip(names, arrays)))


def _openvino(path: Path, threads: int, hint: str = "LATENCY") -> Runner:
    """An OpenVINO runner of the ONNX file at ``path`` (dynamic batch). A second compilation with
    the run's batch fixed was measured no faster (-10 % to +15 % per graph, bench/RESULTS.md), and
    the throughput hint splits the cores among streams that one synchronous request cannot use."""
    import openvino as ov

    core = ov.Core()
    # float32 explicitly: on CPUs with bf16 units the plugin would otherwise infer in bf16.
    config = {"PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    # The outputs are copied (share_outputs=False): the request's buffers are reused by the next call.
    return lambda arrays: list(compiled(arrays, share_inputs=True, share_outputs=False).values())


# ---------------------------------------------------------------------- helpers
def _check_name(engine: str) -> None:
    if engine not in CHOICES:
        raise UserError(f"engine {engine!r}: choose one of {', '.join(CHOICES)}")
    if engine in PACKAGES:
        _import(engine)


def _import(engine: str):
    try:
        return importlib.import_module(PACKAGES[engine])
    except ImportError:
        raise UserError(f"engine {engine} needs the {PACKAGES[engine]} package: pip install {PACKAGES[engine]} "
                        f"(or use engine torch)") from None


def _installed(engine: str) -> bool:
    try:
        _import(engine)
    except UserError:
        return False
    return True


def _version(engine: str) -> str:
    return str(torch.__version__) if engine == "torch" else str(_import(engine).__version__)


def _mismatch(engine: str, check: dict) -> str:
    return (f"engine {engine} does not match torch on this model (largest differences: error map "
            f"{check['max_error']:.3g}, reconstruction {check['max_reconstruction']:.3g}; tolerance "
            f"{check['tolerance']:g}): use engine torch")


def _cpu_copy(model: nn.Module) -> nn.Module:
    """An eval-mode CPU copy of ``model`` (exporting toggles modes and changes the layout)."""
    return copy.deepcopy(model).cpu().eval()


def _frames(model: nn.Module) -> int:
    return int(model.frames)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _array(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).contiguous().numpy()


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


