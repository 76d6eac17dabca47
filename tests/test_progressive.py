"""Progressive resizing (``train.start_scale``, docs/method.md#progressive): frames at a smaller size
until the learning rate drops, then at the full size; the same as two runs glued by hand."""

import json
import signal

import numpy as np
import pytest
import torch

from ddlvad import Config, UserError
from ddlvad.checkpoint import BEST, CHECKPOINT, load_checkpoint, save_atomic
from ddlvad.data.clips import TrainingData
from ddlvad.data.tracks import VideoTracks
from ddlvad.trainer import Trainer, TrainingInterrupted

FULL, START = (64, 96), (32, 48)


def videos(size, seed, count=2, frames=14):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (frames, *size, 1), dtype=np.uint8) for _ in range(count)]


def data(start: bool = True) -> TrainingData:
    """Two videos at 64x96 (and, with ``start``, their 32x48 copies; the pixels need not match
    for what is tested here), one tracked object each."""
    rows = np.array([[f, 7, 0.1, 0.2, 0.5, 0.7, 1.0] for f in range(14)], float)
    return TrainingData(videos(FULL, 0), [VideoTracks(14, rows)] * 2, ["00", "01"],
                        start_frames=videos(START, 1) if start else None)


def small_data() -> TrainingData:
    whole = data()
    return TrainingData(whole.start_frames, whole.tracks, whole.video_ids)


def grown_cfg(**sets) -> Config:
    """7 steps, the learning rate drops before step index 4: 4 steps at 32x48, 3 at 64x96,
    validated every 2 steps on held-out frames."""
    cfg = Config.preset("tiny")
    cfg.apply({"data.height": FULL[0], "data.width": FULL[1], "train.steps": 7, "train.lr_drop_at": 4 / 7,
               "train.start_scale": 0.5, "train.val_fraction": 0.3, "train.val_every": 2,
               "train.bn_recalibration": 8, **sets})
    return cfg.validate()


def train(cfg, frames, folder, resume=False):
    folder.mkdir(exist_ok=True)
    trainer = Trainer(cfg, frames, folder, progress=False)
    trainer.run(resume=resume)
    return trainer


def validations(folder) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val_auc" in r]


def test_the_cpu_preset_trains_900_steps_at_128x192_then_at_most_280_at_160x240():
    cfg = Config.preset("cpu").validate()
    start = cfg.at_start()
    assert (start.data.height, start.data.width, cfg.data.height, cfg.data.width) == (128, 192, 160, 240)
    assert round(cfg.train.lr_drop_at * cfg.train.steps) == 900 and cfg.train.steps == 1180


def test_the_start_size_is_the_full_size_scaled_to_multiples_of_16():
    cfg = Config.preset("cpu")
    cfg.apply({"data.height": 160, "data.width": 240, "train.start_scale": 0.8})
    start = cfg.at_start()
    assert (start.data.height, start.data.width) == (128, 192) and (cfg.data.height, cfg.data.width) == (160, 240)
    assert start.train == cfg.train and start.model == cfg.model
    cfg.train.start_scale = 1.0
    assert cfg.at_start() is cfg


@pytest.mark.parametrize("sets, flag", [
    ({"train.start_scale": 0.1}, "train.start_scale"),
    ({"train.start_scale": 1.5}, "train.start_scale"),
    ({"train.start_scale": 0.8, "train.lr_drop_at": 1.0}, "train.lr_drop_at"),
])
def test_a_start_scale_that_cannot_work_is_refused(sets, flag):
    cfg = Config.preset("tiny")
    cfg.apply(sets)
    with pytest.raises(UserError, match=flag):
        cfg.validate()


@pytest.mark.parametrize("sets, signal", [({}, "real"), ({"ddl.paste": 0.5}, "real"), ({}, "start-wins")],
                         ids=["noise", "moved-objects", "start-size-model-kept"])
def test_growing_equals_two_runs_glued_by_hand(tmp_path, request, sets, signal):
    """One run with ``start_scale`` 0.5 ends bit for bit like a 4-step run at 32x48 whose
    checkpoint a 64x96 run resumes (weights, l and Adam's state carried; the validation's
    best counted afresh), which is how bench/experiments/progressive.py measured it; its kept
    model is the better by the validation signal of the two runs' kept models (with the real
    signal here the 64x96 one; with a signal made higher at 32x48, the first run's)."""
    if signal == "start-wins":
        request.getfixturevalue("sized_signal")
    cfg = grown_cfg(**sets)
    grown = train(cfg, data(), tmp_path / "grown")

    first = Config.from_dict(cfg.to_dict())
    first.apply({"data.height": START[0], "data.width": START[1], "train.start_scale": 1.0,
                 "train.steps": 4, "train.lr_drop_at": 1.0})
    train(first, small_data(), tmp_path / "first")
    second = Config.from_dict(cfg.to_dict())
    second.train.start_scale = 1.0
    state = load_checkpoint(tmp_path / "first")
    state.update(config=second.to_dict(), plateau=None, validated_at=None)
    (tmp_path / "second").mkdir()
    save_atomic(state, tmp_path / "second" / CHECKPOINT)
    glued = train(second, data(start=False), tmp_path / "second", resume=True)

    a, b = load_checkpoint(tmp_path / "grown"), load_checkpoint(tmp_path / "second")
    assert a["step"] == b["step"] == 7 and a["lr_dropped_at"] == b["lr_dropped_at"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["anomaly_logit"], b["anomaly_logit"])
    summary = json.loads((tmp_path / "grown" / "summary.json").read_text())
    kept_first = signal == "start-wins"
    assert summary["kept_size"] == list(START if kept_first else FULL)
    best_a = load_checkpoint(tmp_path / "grown" / BEST)
    best_b = load_checkpoint(tmp_path / ("first" if kept_first else "second") / BEST)
    assert best_a["kept_step"] == best_b["kept_step"] == summary["validation"]["best_step"]
    assert best_a["kept_step"] < 4 if kept_first else best_a["kept_step"] >= 6
    assert [best_a["config"]["data"]["height"], best_a["config"]["data"]["width"]] == summary["kept_size"]
    assert all(torch.equal(best_a["model"][k], best_b["model"][k]) for k in best_a["model"])
    assert best_a["threshold"] == best_b["threshold"]
    after = [r for r in validations(tmp_path / "grown") if r["step"] > 4]
    assert after == validations(tmp_path / "second")[-len(after):] and after[0]["best"] and after[0]["stale"] == 0
    assert grown.generator.size == glued.generator.size == FULL
    assert summary["start_size"] == list(START) and summary["grown_at"] == 4


def signal_by_size(monkeypatch, start: float, full: float) -> None:
    """The validation signal made a function of the frame size alone: ``start`` at 32x48,
    ``full`` at 64x96."""
    from ddlvad.validation import Validator

    monkeypatch.setattr(Validator, "__call__", lambda self, model, weight=None: {
        "val_recon": 0.01, "val_auc": start if self.cfg.data.height == START[0] else full})


@pytest.fixture
def sized_signal(monkeypatch):
    """0.9 at 32x48, 0.7 at 64x96: a model that looks worse after growing, as the synthetic
    scene's did (bench/RESULTS.md, "Progressive resizing")."""
    signal_by_size(monkeypatch, 0.9, 0.7)


@pytest.mark.parametrize("start, full, kept, size", [
    (0.9, 0.7, 2, START),   # no full-size model beats the start size's best: it is kept, at its size
    (0.7, 0.9, 6, FULL),    # the usual case (Ped2): the best full-size model
    (0.55, 0.58, 6, FULL),  # neither above the floor (0.6): a start-size model is never set aside
], ids=["start-size-wins", "full-size-wins", "below-the-floor"])
def test_the_kept_model_is_the_best_by_signal_of_either_size_and_scores_at_its_own(
        tmp_path, monkeypatch, start, full, kept, size):
    from ddlvad.checkpoint import START_BEST, load_model
    from ddlvad.score import Scorer, calibrate_thresholds

    signal_by_size(monkeypatch, start, full)
    trainer = train(grown_cfg(), data(), tmp_path / "run")
    rows = validations(tmp_path / "run")
    assert [(r["step"], r["best"]) for r in rows] == [(2, True), (4, False), (6, True), (7, False)]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["kept_size"] == list(size) and summary["validation"]["best_step"] == kept
    assert summary["validation"]["best_signal"] == max(start, full) and summary["validation"]["learned"] == (
        max(start, full) > 0.6)
    assert (tmp_path / "run" / START_BEST).is_file() == (start > 0.6)
    model, cfg, ckpt = load_model(tmp_path / "run")  # what evaluate, detect and export load
    assert ckpt["kept_step"] == kept and (cfg.data.height, cfg.data.width) == size
    frames = trainer.data.at_start().frames if size == START else trainer.data.frames  # the training part
    assert ckpt["threshold"] == calibrate_thresholds(Scorer(model, cfg.score), frames)


@pytest.mark.parametrize("until, stop_after", [("steps", 4), ("steps", 5), ("converged", 4)],
                         ids=["at-the-drop", "after-it", "converged-at-the-drop"])
def test_a_run_resumed_around_the_growth_ends_bit_for_bit_like_an_uninterrupted_one(
        tmp_path, sized_signal, until, stop_after):
    """``converged``: the signal levels at step 4 (patience 1), the learning rate drops and the
    frames grow from step 4 on; the fresh patience at 64x96 then ends the run at step 8."""
    sets = {"train.until": until, "train.patience": 1, "train.steps": 9} if until == "converged" else {}
    whole = train(grown_cfg(**sets), data(), tmp_path / "whole")
    folder = tmp_path / "part"
    folder.mkdir()
    part = Trainer(grown_cfg(**sets), data(), folder, progress=False)
    real = part.train_step
    part.train_step = lambda step: (real(step), step == stop_after - 1 and signal.raise_signal(signal.SIGINT))[0]
    with pytest.raises(TrainingInterrupted):
        part.run()
    assert load_checkpoint(folder)["step"] == stop_after
    resumed = train(grown_cfg(**sets), data(), folder, resume=True)
    a, b = load_checkpoint(tmp_path / "whole"), load_checkpoint(folder)
    assert a["step"] == b["step"] == (8 if until == "converged" else 7)
    assert a["lr_dropped_at"] == b["lr_dropped_at"] == 4
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert validations(tmp_path / "whole") == validations(folder)
    assert whole.weight.logit.item() == resumed.weight.logit.item()


def test_a_run_that_never_drops_its_learning_rate_still_ends_at_the_full_size(tmp_path):
    """With a time budget that ends first, the frames never grew: the kept model still gets its
    BatchNorm statistics and threshold at the size it scores at, and the summary says so."""
    cfg = grown_cfg(**{"train.minutes": 1e-6, "train.lr_drop_at": 1.0})
    trainer = train(cfg, data(), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["stopped"] == "minutes" and summary["grown_at"] is None
    assert trainer.generator.size == FULL and trainer.data.frames[0].shape[1:3] == FULL


def test_the_cli_trains_with_start_scale_and_says_how(scene, cli, tmp_path):
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--out", tmp_path / "run",
                       "--cache-dir", tmp_path / "cache", "--set", "data.height=64", "--set", "data.width=96",
                       "--set", "train.start_scale=0.5", "--set", "train.lr_drop_at=0.5", "--quiet")
    assert code == 0, err
    assert "frames at 32x48 until the learning rate drops, then 64x96" in err and "frames grown at step 3" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["start_size"] == [32, 48] and summary["grown_at"] == 3 and summary["kept_size"] == [64, 96]
    assert load_checkpoint(tmp_path / "run")["config"]["data"]["height"] == 64
    assert "kept the model of step" not in err


def test_the_cli_says_when_it_keeps_a_start_size_model_and_evaluate_scores_at_that_size(
        scene, cli, tmp_path, sized_signal):
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--out", tmp_path / "run",
                       "--cache-dir", tmp_path / "cache", "--set", "data.height=64", "--set", "data.width=96",
                       "--set", "train.start_scale=0.5", "--set", "train.lr_drop_at=0.5",
                       "--set", "train.val_fraction=0.2", "--set", "train.val_every=2", "--quiet")
    assert code == 0, err
    assert "kept the model of step 2, trained at 32x48: its validation signal (0.900) beat every 64x96" in err
    assert "no full-size model beat the best one trained at the start size" in err  # stopped by steps, not levelled
    code, _, err = cli("evaluate", tmp_path / "run", "--data", scene, "--cache-dir", tmp_path / "cache", "--quiet")
    assert code == 0, err
    assert "no full-size model beat the best one trained at the start size" in err  # repeated from best.pt
    report = json.loads((tmp_path / "run" / "eval" / "report.json").read_text())
    assert report["model"]["size"] == report["model"]["scored_size"] == [32, 48]


def test_the_layout_is_probed_at_the_start_size_where_most_steps_train(tmp_path, monkeypatch):
    from ddlvad import conv_layout as lay

    sizes = []

    def probe(cfg, purpose, options, device, rounds=2):
        sizes.append((purpose, cfg.data.height, cfg.data.width))
        return {c: 1.0 for c in options}

    monkeypatch.setattr(lay, "probe", probe)
    monkeypatch.setattr(lay, "_MEMO", {})
    cfg = grown_cfg(**{"model.channels_last": None, "data.cache_dir": str(tmp_path / "cache")})
    Trainer(cfg, data(), tmp_path / "run", progress=False)
    assert sizes == [("train", *START)]


@pytest.mark.parametrize("start, full", [(0.9, 0.7), (0.7, 0.9)], ids=["start-size-wins", "full-size-wins"])
def test_a_run_killed_after_growing_and_resumed_from_an_earlier_checkpoint_keeps_the_right_model(
        tmp_path, monkeypatch, start, full):
    """A hard kill (no checkpoint) after the growth and a full-size validation: the files on disk
    are newer than the checkpoint resumed from (step 3), and the run still ends as an
    uninterrupted one, with each size's best model in its own file."""
    import shutil

    from ddlvad.checkpoint import START_BEST

    signal_by_size(monkeypatch, start, full)
    train(grown_cfg(), data(), tmp_path / "whole")
    folder = tmp_path / "killed"
    folder.mkdir()
    part = Trainer(grown_cfg(), data(), folder, progress=False)
    real = part.train_step

    def step(i):
        if i == 3:
            shutil.copy(folder / CHECKPOINT, tmp_path / "step3.pt")  # the last checkpoint before the kill
        out = real(i)
        if i == 5:
            signal.raise_signal(signal.SIGINT)
        return out

    part.train_step = step
    with pytest.raises(TrainingInterrupted):
        part.run()
    assert load_checkpoint(folder / BEST)["step"] == 6  # a full-size validation had written its best
    shutil.copy(tmp_path / "step3.pt", folder / CHECKPOINT)  # the kill: that checkpoint never happened
    train(grown_cfg(), data(), folder, resume=True)
    for name in (BEST, START_BEST):
        a, b = load_checkpoint(tmp_path / "whole" / name), load_checkpoint(folder / name)
        assert a["step"] == b["step"] and a.get("threshold") == b.get("threshold")
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
