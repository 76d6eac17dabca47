"""``score.position`` (beyond the paper, docs/method.md#position): errors measured against their
normal level at each place of the frame."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from ddlvad.config import Config
from ddlvad.score import Scorer, position_weights


class Blank(nn.Module):
    """A stand-in network that reconstructs every frame as black: the error is the frame itself
    (grey, in [0, 1]), which makes the expected scores easy to work out by hand."""

    frames = 3

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def encode_frames(self, frames: torch.Tensor) -> list[torch.Tensor]:
        return [frames]

    def decode_windows(self, windows: list[torch.Tensor]) -> torch.Tensor:
        return torch.zeros_like(windows[0][:, :, 0])


def video(n: int, level: float, bright: tuple[slice, slice] | None = None, blob: tuple[slice, slice] | None = None):
    frames = np.full((n, 64, 96, 1), round(255 * level), np.uint8)
    if bright is not None:
        frames[(slice(None), *bright)] = 128  # 0.5: where the model always errs (a static oddity)
    if blob is not None:
        frames[(slice(None), *blob)] = 77     # 0.3: a real anomaly elsewhere
    return frames


def test_a_place_that_always_errs_no_longer_outscores_an_anomaly_elsewhere():
    score = Config.preset("tiny").score
    score.patch = 16
    oddity, anomaly = (slice(0, 16), slice(0, 16)), (slice(32, 48), slice(64, 80))
    normal = [video(12, 0.1, oddity)]
    plain = Scorer(Blank(), score)
    weights = position_weights(plain, normal)
    # by hand: the normal error is 26/255 (0.1 in uint8), 128/255 on the oddity's 256 pixels; the
    # overall mean is 26/255 + (102/255) * 256 / 6144; far from the oddity a place's weight is that
    # mean over 26/255
    base, overall = 26 / 255, 26 / 255 + 102 / 255 * 256 / (64 * 96)
    assert float(weights[60, 5]) == pytest.approx(overall / base, rel=1e-5)
    assert float(weights[:16, :16].mean()) < 0.5  # the oddity is weighed down
    test = video(5, 0.1, oddity, anomaly)
    raw = plain.score_video(test)
    fair = Scorer(Blank(), score, weights=weights).score_video(test)
    assert raw[2] == pytest.approx(128 / 255)  # without weights the oddity is the worst patch (0.5 > 0.3)
    # with them the anomaly is: 77/255 x overall / base, where the oddity gets at most 0.5 x its weight
    assert fair[2] == pytest.approx(77 / 255 * overall / base, rel=1e-5)
    normal_scores = Scorer(Blank(), score, weights=weights).score_video(video(5, 0.1, oddity))
    assert fair[2] > 2 * normal_scores[2]


def test_a_run_trained_with_it_stores_its_weights_and_detect_uses_them(tmp_path, scene, cli):
    run = tmp_path / "run"
    code, out, err = cli("train", "--data", scene, "--preset", "tiny", "--steps", "4", "--out", run, "--quiet",
                         "--set", "score.position=mean", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    weights = ckpt["position"]["weights"]
    assert weights.shape == (32, 48) and torch.isfinite(weights).all() and 0 < float(weights.min()) <= 1 <= float(weights.max())
    from ddlvad.stream import AnomalyDetector

    detector = AnomalyDetector.load(run)
    assert torch.equal(detector.scorer.weights, weights)
    code, out, err = cli("evaluate", run, "--data", scene, "--quiet", "--no-plots", "--cache-dir", tmp_path / "cache")
    assert code == 0, err
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["protocol"]["position"] == "mean" and "position=mean (beyond the paper)" in out


def test_evaluate_measures_the_weights_of_a_run_trained_without_them(tmp_path, scene, tiny_run, cli):
    run, cache = tiny_run
    out_dir = tmp_path / "eval"
    code, out, err = cli("evaluate", run, "--data", scene, "--quiet", "--no-plots", "--cache-dir", cache,
                         "--position", "mean", "--out", out_dir)
    assert code == 0, err
    assert "position statistics" in err
    with_it = json.loads((out_dir / "report.json").read_text())
    assert with_it["protocol"]["position"] == "mean"
    code, _, err = cli("evaluate", run, "--data", scene, "--quiet", "--no-plots", "--cache-dir", cache,
                       "--out", tmp_path / "plain")
    without = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert without["protocol"]["position"] == "none" and without["auc_micro"] != with_it["auc_micro"]
