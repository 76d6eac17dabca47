"""Inference engines: an exported encoder + decoder scores exactly like the torch model
(error maps, frame scores, decisions), is built once per model and cached, and ``auto``
keeps the fastest engine that matches torch. An engine whose package is missing is skipped."""

import json
import sys

import numpy as np
import pytest
import torch

from ddlvad import AnomalyDetector, Config, UserError, build_model
from ddlvad import engines as eng
from ddlvad.cli import main
from ddlvad.data.frames import FrameStore
from ddlvad.data.layouts import index_dataset
from ddlvad.score import Scorer, score_video_naive, window_errors

EXPORTED = [pytest.param(name, marks=pytest.mark.skipif(not eng._installed(name), reason=f"{name} not installed"))
            for name in eng.PACKAGES]
MAP_TOLERANCE = 1e-5      # largest absolute difference of an error map (values in [0, 1])
SCORE_RTOL = 1e-6         # frame scores: relative difference (measured: at most 8.2e-7 on the trained model) ...
SCORE_ATOL = 1e-7         # ... or absolute (measured: 3e-8 there; the map tolerance bounds it, 1e-5)


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(eng, "_MEMO", {})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, scene):
    """A tiny model trained 60 steps on the synthetic scene (as in test_detect.py), its test
    videos in the model's spec, and a cache folder for the engines."""
    base = tmp_path_factory.mktemp("engines")
    cache, run = base / "cache", base / "run"
    assert main(["train", "--data", str(scene), "--preset", "tiny", "--steps", "60", "--lr", "0.01",
                 "--out", str(run), "--cache-dir", str(cache), "--quiet"]) == 0
    detector = AnomalyDetector.load(run)
    store = FrameStore(index_dataset(scene).testing, detector.spec, cache)
    return detector, [np.asarray(a) for a in store.arrays], cache


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for the module: the engines of one (seeded, identical) random model share its graphs."""
    return tmp_path_factory.mktemp("engine-cache")


def scored(scorer: Scorer, frames: np.ndarray, batch: int):
    results = [r for r in scorer.stream(frames, batch_size=batch) if r.error is not None]
    return (np.array([r.score for r in results]), torch.stack([r.error for r in results]),
            torch.stack([r.anomaly_map for r in results]))


@pytest.mark.parametrize("name", EXPORTED)
def test_a_trained_model_scores_the_same_with_the_engine(trained, name):
    detector, videos, cache = trained
    engine = eng.load_engine(detector.model, detector.cfg, name, cache_dir=cache)
    assert isinstance(engine, eng.Engine) and engine.check["passed"]
    torch_scorer, engine_scorer = Scorer(detector.model, detector.cfg.score), Scorer(engine, detector.cfg.score)
    threshold = detector.threshold
    assert threshold is not None
    for frames in videos:
        scores, errors, maps = scored(torch_scorer, frames, 8)
        for batch in (8, 1):  # files (34 windows: 4 passes of 8 and one of 2), a live stream
            e_scores, e_errors, e_maps = scored(engine_scorer, frames, batch)
            assert float((errors - e_errors).abs().max()) <= MAP_TOLERANCE
            assert float((maps - e_maps).abs().max()) <= MAP_TOLERANCE
            np.testing.assert_allclose(e_scores, scores, rtol=SCORE_RTOL, atol=SCORE_ATOL)
            assert ((e_scores > threshold) == (scores > threshold)).all()
    # The detector takes an engine in the model's place.
    frames = videos[-1]
    same = AnomalyDetector(engine, detector.cfg, threshold, region_threshold=detector.region_threshold)
    ours = [(r.frame, r.anomalous, [g.box for g in r.regions]) for r in same.stream(frames)]
    theirs = [(r.frame, r.anomalous, [g.box for g in r.regions]) for r in detector.stream(frames)]
    assert ours == theirs and any(a for _, a, _ in ours)


def random_model(arch: str, channels: int, size: str, cache) -> tuple[torch.nn.Module, Config]:
    cfg = Config.preset("tiny" if size == "tiny" else "cpu")
    cfg.apply({"model.arch": arch, "data.channels": channels, "data.frames": 1 if arch == "unet" else 3,
               "data.cache_dir": str(cache)})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():  # BatchNorm statistics away from (0, 1), so that folding them in matters
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model, cfg


def check_random_model(name, arch, channels, size, cache):
    model, cfg = random_model(arch, channels, size, cache)
    engine = eng.build_engine(model, cfg, name)
    assert engine.frames == model.frames and engine.check["passed"]
    assert engine.eval() is engine and engine.train(False) is engine and not engine.training
    with pytest.raises(ValueError, match="only scores"):
        engine.train()
    with pytest.raises(ValueError, match=r"takes frames \(N, "):
        engine.encode_frames(torch.rand(3, channels, 16, 16))
    frames = np.random.default_rng(1).integers(0, 256, (4 + 3 + model.frames - 1, cfg.data.height, cfg.data.width,
                                                         channels), dtype=np.uint8)
    for flip in (False, True):
        cfg.score.flip = flip
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        with torch.inference_mode():
            error, recon = window_errors(model, x, 1, flip)
            e_error, e_recon = window_errors(engine, x, 1, flip)
        assert float((error - e_error).abs().max()) <= MAP_TOLERANCE
        assert float((recon - e_recon).abs().max()) <= MAP_TOLERANCE
        ref = Scorer(model, cfg.score).score_video(frames)
        np.testing.assert_allclose(Scorer(engine, cfg.score, 4).score_video(frames), ref, rtol=SCORE_RTOL,
                                   atol=SCORE_ATOL)
        # Separate clips (stride T) go through the same two graphs.
        np.testing.assert_allclose(score_video_naive(engine, frames, cfg.score, 4), ref, rtol=SCORE_RTOL,
                                   atol=SCORE_ATOL)


@pytest.mark.parametrize("arch,channels", [("c3dsu", 1), ("c3dsu", 3), ("unet", 1), ("unet", 3)])
@pytest.mark.parametrize("name", EXPORTED)
def test_a_random_model_scores_the_same_grey_and_rgb_t3_and_unet(name, arch, channels, shared_cache):
    check_random_model(name, arch, channels, "tiny", shared_cache)


@pytest.mark.slow
@pytest.mark.parametrize("arch,channels", [("c3dsu", 1), ("c3dsu", 3), ("unet", 1), ("unet", 3)])
@pytest.mark.parametrize("name", EXPORTED)
def test_a_random_model_of_the_cpu_preset_size_scores_the_same(name, arch, channels, shared_cache):
    check_random_model(name, arch, channels, "cpu", shared_cache)


def test_graphs_are_exported_once_per_model_and_frame_size_and_checked_once_per_engine(tmp_path, monkeypatch):
    names = [n for n in eng.PACKAGES if eng._installed(n)]
    if not names:
        pytest.skip("no exported engine installed")
    model, cfg = random_model("c3dsu", 1, "tiny", tmp_path)
    exports, checks = [], []
    export, parity = eng.export_graphs, eng.parity
    monkeypatch.setattr(eng, "export_graphs", lambda *a: exports.append(1) or export(*a))
    monkeypatch.setattr(eng, "parity", lambda *a: checks.append(1) or parity(*a))
    first = eng.build_engine(model, cfg, names[0])
    verdict = json.loads((first.folder / f"{names[0]}-{eng._digest(eng.engine_key(eng.export_key(model, cfg), names[0]))}"
                          ".json").read_text())
    assert verdict["check"] == first.check and first.check["passed"] and (exports, checks) == ([1], [1])
    again = eng.build_engine(model, cfg, names[0])   # a restart: read from the cache, checked before
    assert again.folder == first.folder and again.check == first.check and (exports, checks) == ([1], [1])
    for other in names[1:]:                          # another engine: the same graphs, its own check
        assert eng.build_engine(model, cfg, other).folder == first.folder and (exports, checks) == ([1], [1, 1])
    cfg.score.scale = 1.5                            # another frame size: other graphs
    bigger = eng.build_engine(model, cfg, names[0])
    assert bigger.folder != first.folder and bigger.input == (1, 48, 64) and len(exports) == 2
    cfg.score.scale = 1.0
    with torch.no_grad():                            # other weights: other graphs
        next(model.parameters()).add_(0.01)
    assert eng.build_engine(model, cfg, names[0]).folder not in (first.folder, bigger.folder) and len(exports) == 3
    with torch.no_grad():
        next(model.parameters()).sub_(0.01)
    (first.folder / "encoder.onnx").write_bytes(b"broken")   # unreadable graphs are exported again
    assert eng.build_engine(model, cfg, names[0]).check["passed"] and len(exports) == 4
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("name", EXPORTED)
def test_an_engine_that_does_not_match_torch_is_refused_and_never_chosen(name, tmp_path, monkeypatch):
    model, cfg = random_model("c3dsu", 1, "tiny", tmp_path)
    monkeypatch.setattr(eng, "parity", lambda *a: {"max_error": 0.1, "max_reconstruction": 0.2, "passed": False,
                                                    "tolerance": eng.TOLERANCE})
    with pytest.raises(eng.EngineMismatch, match="does not match torch"):
        eng.load_engine(model, cfg, name)
    monkeypatch.setattr(eng, "export_graphs", lambda *a: pytest.fail("exported again"))
    monkeypatch.setattr(eng, "_open", lambda *a: pytest.fail("opened: the verdict is cached"))
    with pytest.raises(eng.EngineMismatch):
        eng.build_engine(model, cfg, name)
    seconds, excluded = eng.probe(model, cfg, ["torch", name], batch=2, rounds=1)
    assert set(seconds) == {"torch"} and "EngineMismatch" in excluded[name]
    # auto, with a choice probed on another model of this size: torch, with a warning
    monkeypatch.setattr(eng, "choose_engine", lambda *a: name)
    with pytest.warns(UserWarning, match=f"engine auto: {name} failed on this model"):
        assert eng.load_engine(model, cfg, "auto") is model


def test_auto_keeps_the_fastest_engine_and_caches_it_per_machine(tmp_path, monkeypatch):
    model, cfg = random_model("c3dsu", 1, "tiny", tmp_path)
    monkeypatch.setattr(eng, "_installed", lambda name: True)
    calls = []

    def fake_probe(model, cfg, candidates, batch, cache_dir=None, rounds=2):
        calls.append((tuple(candidates), batch))
        return {"torch": 3.0, "onnxruntime": 1.0, "openvino": 2.0}, {}

    monkeypatch.setattr(eng, "probe", fake_probe)
    monkeypatch.setattr(eng, "_version", lambda name: "1.0")
    assert eng.choose_engine(model, cfg) == "onnxruntime"
    assert calls == [(eng.ENGINES, cfg.score.batch_size)]
    saved = json.loads((tmp_path / eng.PROBE_FILE).read_text())
    (entry,) = saved.values()
    assert entry["engine"] == "onnxruntime" and entry["seconds"]["torch"] == 3.0
    monkeypatch.setattr(eng, "_MEMO", {})        # a new process reads the file instead of probing
    assert eng.choose_engine(model, cfg) == "onnxruntime" and len(calls) == 1
    assert eng.choose_engine(model, cfg, batch=1) == "onnxruntime" and len(calls) == 2   # live streams: own entry
    monkeypatch.setattr(eng, "_version", lambda name: "2.0")   # an upgraded engine is probed again
    eng.choose_engine(model, cfg)
    assert len(calls) == 3
    monkeypatch.setattr(eng, "_installed", lambda name: False)  # nothing to choose from
    assert eng.choose_engine(model, cfg) == "torch" and len(calls) == 3
    with pytest.raises(ValueError, match="purpose"):
        eng.choose_engine(model, cfg, "train")


def test_the_real_probe_times_every_installed_engine(tmp_path):
    model, cfg = random_model("c3dsu", 1, "tiny", tmp_path)
    candidates = ["torch", *(n for n in eng.PACKAGES if eng._installed(n))]
    seconds, excluded = eng.probe(model, cfg, candidates, batch=2, rounds=1)
    assert set(seconds) == set(candidates) and excluded == {}
    assert all(0 < s < 60 for s in seconds.values())
    chosen = eng.load_engine(model, cfg, "auto", batch=2)
    assert chosen is model or chosen.name in candidates
    assert not model.training


def test_unknown_engines_and_missing_packages_are_user_errors(tmp_path, monkeypatch):
    model, cfg = random_model("c3dsu", 1, "tiny", tmp_path)
    with pytest.raises(UserError, match="engine 'tensorrt': choose one of auto, torch, onnxruntime, openvino"):
        eng.load_engine(model, cfg, "tensorrt")
    for name, package in eng.PACKAGES.items():
        monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
        with pytest.raises(UserError, match=f"engine {name} needs the {package} package: pip install {package}"):
            eng.load_engine(model, cfg, name)
    assert eng.load_engine(model, cfg, "auto") is model  # auto without any engine: torch
    assert eng.load_engine(model, cfg, "torch") is model
