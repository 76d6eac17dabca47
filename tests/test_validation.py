"""Training that knows when it is done: held-out windows, the validation signal, patience,
time budgets, the best model, the moving average, and exact resume of all of it."""

import json
import signal

import numpy as np
import pytest
import torch

from ddlvad import Config
from ddlvad.checkpoint import load_checkpoint, load_model
from ddlvad.runs import convergence_warning
from ddlvad.trainer import Trainer, TrainingInterrupted
from ddlvad.validation import Plateau, Validator, hold_out
from fixtures import noise_training_data


def cfg_with(**sets) -> Config:
    cfg = Config.preset("tiny")
    cfg.apply({"train.val_fraction": 0.2, "train.val_every": 2, "train.val_windows": 8, **sets})
    return cfg


def rows_of(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------- hold-out and signal
def test_hold_out_keeps_each_video_tail_apart_and_renumbers_its_tracks():
    data = noise_training_data(frames=30)
    data.frames.append(np.zeros((6, 32, 48, 1), np.uint8))  # too short to split: all for training
    data.tracks.append(None)
    data.video_ids.append("short")
    train, held = hold_out(data, 0.2, 3)
    assert [len(f) for f in train.frames] == [24, 24, 6] and [len(f) for f in held.frames] == [6, 6]
    assert held.video_ids == ["00", "01"]
    np.testing.assert_array_equal(held.frames[0], data.frames[0][24:])
    assert held.tracks[0].num_frames == 6 and held.tracks[0].rows[:, 0].tolist() == list(range(6))
    assert train.tracks[0].num_frames == 24 and train.tracks[2] is None


class Copy(torch.nn.Module):
    """A network that reconstructs every window's middle frame exactly (in the encode/decode interface)."""

    frames = 3

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def encode_frames(self, frames):
        return [frames]

    def decode_windows(self, windows):
        return windows[0][:, :, windows[0].shape[2] // 2]


def test_a_model_that_copies_its_input_cannot_tell_pseudo_anomalies_apart():
    _, held = hold_out(noise_training_data(frames=30), 0.2, 3)
    values = Validator(cfg_with(), held)(Copy())
    # every error is 0: the reconstruction error is 0 and all scores tie (AUC 1/2)
    assert values == {"val_recon": 0.0, "val_auc": 0.5}


def test_the_signal_is_the_same_at_every_validation_of_the_same_model():
    _, held = hold_out(noise_training_data(frames=30), 0.2, 3)
    model = Trainer(cfg_with(), noise_training_data(frames=30), "unused", progress=False).model
    validator = Validator(cfg_with(), held)
    assert validator(model) == validator(model)  # fixed masks and noise, eval mode
    assert len(validator) == 8 and 0 <= validator(model)["val_auc"] <= 1
    # the weight given replaces train.val_weight: at s = 0 the pseudo anomaly is the clean window
    assert validator(model)["val_auc"] != 0.5 and validator(model, 0.0)["val_auc"] == 0.5


def test_plateau_counts_validations_without_a_real_rise():
    # min_improvement 0.01: 0.505 is a new best but not a rise; 0.52 rises above 0.5 + 0.01
    p = Plateau(patience=2, min_improvement=0.01)
    seen = [(p.update(v, s), p.stale, p.levelled) for s, v in enumerate([0.5, 0.505, 0.52, 0.52, 0.515, 0.6])]
    assert seen == [(True, 0, False), (True, 1, False), (True, 0, False), (False, 1, False), (False, 2, True),
                    (True, 0, False)]
    assert (p.best, p.best_step) == (0.6, 5)


def test_a_flat_signal_below_the_floor_is_not_a_plateau():
    # an unlearned model: flat at 0.43 (below chance) never levels off; above the floor it can
    p = Plateau(patience=2, min_improvement=0.01, floor=0.6)
    for step, value in enumerate([0.43, 0.43, 0.43, 0.43, 0.43]):
        p.update(value, step)
        assert p.stale == 0 and not p.levelled
    for step, value in enumerate([0.7, 0.7, 0.7], start=5):
        p.update(value, step)
    assert p.stale == 2 and p.levelled and p.best_step == 5


# ---------------------------------------------------------------------- stopping
def scripted(monkeypatch, aucs, check=0.45):
    """Validator.__call__ returns the AUCs of ``aucs`` in turn (then the last one), and ``check``
    when called with the stronger weight of the end-of-run check."""
    calls = []

    def fake(self, model, weight=None):
        if weight is not None:
            assert weight == self.cfg.train.val_check_weight
            return {"val_recon": 0.1, "val_auc": check}
        calls.append(1)
        return {"val_recon": 0.1, "val_auc": aucs[min(len(calls), len(aucs)) - 1]}

    monkeypatch.setattr(Validator, "__call__", fake)
    return calls


def test_until_converged_drops_the_lr_at_the_first_plateau_and_stops_at_the_second(tmp_path, monkeypatch):
    # validations every 2 steps; patience 2: steps 2 4 6 -> plateau after 6 (best at 2): lr drops;
    # 8 10 -> plateau again: stop at step 10 with the best model of step 2.
    scripted(monkeypatch, [0.7, 0.7, 0.7, 0.7, 0.7])
    cfg = cfg_with(**{"train.until": "converged", "train.patience": 2, "train.steps": 100})
    trainer = Trainer(cfg, noise_training_data(frames=30), tmp_path, progress=False)
    summary = trainer.run()
    assert summary["stopped"] == "converged" and summary["converged"] is True and summary["steps"] == 10
    assert summary["validation"]["best_step"] == 2 and summary["model_file"] == "best.pt"
    lrs = [r["lr"] for r in rows_of(tmp_path) if "lr" in r]
    assert lrs == pytest.approx([1e-3] * 6 + [5e-4] * 4)
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2 and load_checkpoint(tmp_path)["step"] == 10
    assert [r["step"] for r in rows_of(tmp_path) if "val_auc" in r] == [2, 4, 6, 8, 10]


def test_a_run_whose_signal_stays_below_the_floor_keeps_its_lr_and_says_it_has_not_learned(tmp_path, monkeypatch):
    scripted(monkeypatch, [0.43])  # flat below chance: the blurred-scene state of an unlearned model
    cfg = cfg_with(**{"train.until": "converged", "train.patience": 2, "train.steps": 12})
    summary = Trainer(cfg, noise_training_data(frames=30), tmp_path, progress=False).run()
    assert summary["stopped"] == "steps" and summary["converged"] is False and summary["steps"] == 12
    assert summary["validation"]["learned"] is False
    # no drop at the false plateau of step 6 (the schedule's own drop comes at 80 % of the steps)
    assert {r["lr"] for r in rows_of(tmp_path) if "lr" in r and r["step"] <= 9} == {1e-3}
    assert summary["validation"]["check"] == {"weight": 0.5, "val_auc": 0.45, "above_floor": False}
    warning = convergence_warning(summary, tmp_path)
    assert "has not learned" in warning and "--seed" in warning
    assert "has not learned" in convergence_warning(load_checkpoint(tmp_path / "best.pt"), tmp_path)


def test_a_signal_too_faint_for_the_scene_is_told_apart_from_a_model_that_has_not_learned(tmp_path, monkeypatch):
    # the Avenue sample: 0.51 at s = 0.2 for the whole run, 0.91 for the same model at s = 0.5
    scripted(monkeypatch, [0.51], check=0.91)
    cfg = cfg_with(**{"train.until": "converged", "train.patience": 2, "train.steps": 6})
    summary = Trainer(cfg, noise_training_data(frames=30), tmp_path, progress=False).run()
    assert summary["validation"]["learned"] is False
    assert summary["validation"]["check"] == {"weight": 0.5, "val_auc": 0.91, "above_floor": True}
    for info in (summary, load_checkpoint(tmp_path / "best.pt")):
        warning = convergence_warning(info, tmp_path)
        assert "has learned" in warning and "too faint" in warning and "not learned" not in warning
        # a stronger validation weight saturates early and keeps an early model (bench/RESULTS.md): not suggested
        assert "val_weight" not in warning


def test_a_run_that_ends_before_its_signal_levels_off_says_so(tmp_path, monkeypatch, cli, scene):
    scripted(monkeypatch, [0.5, 0.6, 0.7, 0.8])  # still rising at the end
    run = tmp_path / "run"
    code, out, err = cli("train", "--data", scene, "--preset", "tiny", "--steps", "6", "--out", run, "--quiet",
                         "--cache-dir", tmp_path / "cache", "--set", "train.val_fraction=0.2", "--set",
                         "train.val_every=2")
    assert code == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["converged"] is False and summary["stopped"] == "steps"
    assert "before its validation signal levelled off" in err
    code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", tmp_path / "cache", "--quiet", "--no-plots")
    assert code == 0 and "before its validation signal levelled off" in err
    assert json.loads((run / "eval" / "report.json").read_text())["converged"] is False


def test_a_time_budget_ends_training_cleanly_at_the_best_model(tmp_path, monkeypatch):
    scripted(monkeypatch, [0.9, 0.8])
    cfg = cfg_with(**{"train.minutes": 1e-9, "train.steps": 100})
    summary = Trainer(cfg, noise_training_data(frames=30), tmp_path, progress=False).run()
    assert summary["stopped"] == "minutes" and summary["steps"] == 1 and summary["threshold"]["value"] > 0
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["step"] == 1 and best["stopped"] == "minutes" and best["threshold"] == summary["threshold"]
    model, _, ckpt = load_model(tmp_path)  # scoring loads the kept model
    assert ckpt["step"] == 1 and "optimizer" not in ckpt


# ---------------------------------------------------------------------- averaging, warm-up, resume
def test_warmup_raises_the_learning_rate_linearly(tmp_path):
    Trainer(Config.preset("tiny").apply({"train.warmup_steps": 3}), noise_training_data(frames=30), tmp_path,
            progress=False).run()
    assert [r["lr"] for r in rows_of(tmp_path)][:4] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])


def test_the_moving_average_is_what_is_kept(tmp_path):
    trainer = Trainer(Config.preset("tiny").apply({"train.ema": 0.5}), noise_training_data(frames=30), tmp_path, progress=False)
    summary = trainer.run()
    assert summary["model_file"] == "best.pt"
    kept = load_checkpoint(tmp_path / "best.pt")["model"]
    last = load_checkpoint(tmp_path)["model"]
    weight = next(k for k in kept if k.endswith("weight") and kept[k].dim() == 4)
    assert not torch.equal(kept[weight], last[weight])
    assert torch.equal(kept[weight], trainer.average.module.state_dict()[weight])


def test_resumed_validated_averaged_run_ends_like_an_uninterrupted_one(tmp_path):
    cfg = cfg_with(**{"train.ema": 0.9, "train.until": "converged", "train.patience": 1, "train.steps": 12,
                      "train.warmup_steps": 2, "train.clip_grad": 1.0})
    full = Trainer(cfg, noise_training_data(frames=30), tmp_path / "full", progress=False)
    (tmp_path / "full").mkdir()
    a = full.run()
    part = Trainer(cfg, noise_training_data(frames=30), tmp_path / "part", progress=False)
    (tmp_path / "part").mkdir()
    real = part.train_step
    part.train_step = lambda step: (real(step), step == 2 and signal.raise_signal(signal.SIGINT))[0]
    with pytest.raises(TrainingInterrupted):
        part.run()
    b = Trainer(cfg, noise_training_data(frames=30), tmp_path / "part", progress=False).run(resume=True)
    same = {"steps", "stopped", "converged", "anomaly_weight", "threshold"}
    assert {k: a[k] for k in same} == {k: b[k] for k in same} and a["validation"] == b["validation"]
    for name in ("checkpoint.pt", "best.pt"):
        x, y = load_checkpoint(tmp_path / "full" / name), load_checkpoint(tmp_path / "part" / name)
        assert all(torch.equal(v, y["model"][k]) for k, v in x["model"].items()), name
