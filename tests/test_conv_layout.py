"""The layout probe: it keeps the fastest candidate, caches it per machine, and a resumed run
keeps the layout it began with."""

import json
import signal

import pytest
import torch

from ddlvad import Config
from ddlvad import conv_layout as lay
from ddlvad.models import ConvLayout, conv_layout_of
from ddlvad.trainer import Trainer, TrainingInterrupted
from fixtures import noise_training_data

NCHW, NHWC, NHWC_UNFOLDED = lay.CANDIDATES


def auto_cfg(tmp_path, **sets) -> Config:
    cfg = Config.preset("tiny")
    cfg.model.channels_last = None
    cfg.model.fold_projection = None
    cfg.data.cache_dir = str(tmp_path / "cache")
    cfg.apply(sets)
    return cfg


@pytest.fixture(autouse=True)
def fresh_memo(monkeypatch):
    monkeypatch.setattr(lay, "_MEMO", {})


def fake_probe(seconds: dict, calls: list):
    def probe(cfg, purpose, options, device, rounds=2):
        calls.append(purpose)
        return {c: seconds[c] for c in options}
    return probe


def test_fixed_settings_need_no_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(lay, "probe", lambda *a, **k: pytest.fail("probed"))
    cfg = auto_cfg(tmp_path, **{"model.channels_last": True, "model.fold_projection": False})
    assert lay.choose(cfg, "train") == NHWC_UNFOLDED
    cfg.model.fold_projection = None  # NCHW is only ever probed with the fold
    cfg.model.channels_last = False
    assert lay.choose(cfg, "train") == NCHW


def test_the_fastest_layout_is_kept_and_cached_per_machine(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(lay, "probe", fake_probe({NCHW: 3.0, NHWC: 1.0, NHWC_UNFOLDED: 2.0}, calls))
    cfg = auto_cfg(tmp_path)
    assert lay.choose(cfg, "train") == NHWC and calls == ["train"]
    saved = json.loads((tmp_path / "cache" / "layout-probe.json").read_text())
    (entry,) = saved.values()
    assert entry["layout"] == {"channels_last": True, "fold": True} and entry["seconds"]["nchw"] == 3.0
    monkeypatch.setattr(lay, "_MEMO", {})  # a new process reads the file instead of probing
    monkeypatch.setattr(lay, "probe", lambda *a, **k: pytest.fail("probed twice"))
    assert lay.choose(cfg, "train") == NHWC
    monkeypatch.setattr(lay, "probe", fake_probe({NCHW: 1.0, NHWC: 2.0, NHWC_UNFOLDED: 2.0}, calls))
    assert lay.choose(cfg, "score") == NCHW  # scoring is probed on its own
    cfg.model.channels_last = True  # only NHWC candidates: with or without the fold
    monkeypatch.setattr(lay, "probe", fake_probe({NHWC: 2.0, NHWC_UNFOLDED: 1.0}, calls))
    assert lay.choose(cfg, "train") == NHWC_UNFOLDED


def test_the_real_probe_times_every_candidate(tmp_path):
    cfg = auto_cfg(tmp_path)
    seconds = lay.probe(cfg, "train", list(lay.CANDIDATES), torch.device("cpu"), rounds=1)
    assert set(seconds) == set(lay.CANDIDATES) and all(0 < s < 60 for s in seconds.values())
    assert lay.choose(cfg, "score") in lay.CANDIDATES


def test_scoring_is_probed_at_the_size_frames_are_scored_at(tmp_path, monkeypatch):
    cfg = auto_cfg(tmp_path)  # 32x48 frames
    cfg.score.scale = 1.5     # scored at 48x64 (72 rounds to the even multiple of 16, 64)
    seen = []
    from ddlvad import score

    class Spy(score.Scorer):
        def errors(self, frames):
            seen.append(frames.shape[1:3])
            return super().errors(frames)

    monkeypatch.setattr(score, "Scorer", Spy)
    lay.probe(cfg, "score", [NCHW, NHWC], torch.device("cpu"), rounds=1)
    assert seen and set(seen) == {(48, 64)}
    assert lay.probe_size(cfg, "train") == (32, 48)
    plain = auto_cfg(tmp_path)
    assert lay.probe_key(cfg, "score", torch.device("cpu"), [NCHW]) != lay.probe_key(plain, "score", torch.device("cpu"), [NCHW])
    assert lay.probe_key(cfg, "train", torch.device("cpu"), [NCHW]) == lay.probe_key(plain, "train", torch.device("cpu"), [NCHW])


def test_a_resumed_run_keeps_the_layout_it_began_with(tmp_path, monkeypatch):
    monkeypatch.setattr(lay, "probe", fake_probe({NCHW: 2.0, NHWC: 1.0, NHWC_UNFOLDED: 3.0}, []))
    full = Trainer(auto_cfg(tmp_path / "a"), noise_training_data(), tmp_path / "full", progress=False)
    (tmp_path / "full").mkdir()
    full.run()
    part = Trainer(auto_cfg(tmp_path / "b"), noise_training_data(), tmp_path / "part", progress=False)
    (tmp_path / "part").mkdir()
    real = part.train_step
    part.train_step = lambda step: (real(step), step == 2 and signal.raise_signal(signal.SIGINT))[0]
    with pytest.raises(TrainingInterrupted):
        part.run()
    # another machine (or a new probe) would choose NCHW: the resumed run stays NHWC
    monkeypatch.setattr(lay, "probe", fake_probe({NCHW: 1.0, NHWC: 2.0, NHWC_UNFOLDED: 3.0}, []))
    monkeypatch.setattr(lay, "_MEMO", {})
    resumed = Trainer(auto_cfg(tmp_path / "c"), noise_training_data(), tmp_path / "part", progress=False)
    assert resumed.conv_layout == NCHW
    resumed.run(resume=True)
    assert resumed.conv_layout == NHWC and conv_layout_of(resumed.model) == ConvLayout(True, True)
    assert all(torch.equal(v, resumed.model.state_dict()[k]) for k, v in full.model.state_dict().items())
