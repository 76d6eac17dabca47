"""Golden and equivalence tests of ddlvad.metrics (hand-worked values in comments)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import average_precision_score, roc_auc_score

from ddlvad.config import PROTOCOLS, Protocol, get_protocol
from ddlvad.errors import UserError
from ddlvad.metrics import (
    PAPER_TABLE,
    ablation_table,
    aggregate_scenes,
    auc,
    average_precision,
    eer,
    frame_metrics,
    normalise,
    pooled,
    smooth,
)

RAW = get_protocol("raw")
NAN = np.nan

# Golden case used by several tests. Sorted by score, descending:
#   0.6 P, 0.5 N, 0.4 N, 0.3 P, 0.1 N       (P = abnormal, N = normal)
# AUC: 2 positives x 3 negatives = 6 pairs. P=0.6 beats all 3 N; P=0.3 beats only N=0.1 -> 4/6.
# AP: precision at each positive's rank: 1/1 (rank 1) and 2/4 (rank 4) -> (1 + 0.5)/2 = 0.75.
# EER: ROC points (FPR, TPR) = (0,0) (0,.5) (1/3,.5) (2/3,.5) (2/3,1) (1,1). FPR = 1-TPR = 0.5 lies
#   on the flat segment TPR=.5 between FPR 1/3 and 2/3 -> EER = 0.5 (no ROC point has FPR .5).
GOLD_SCORES = np.array([0.1, 0.4, 0.5, 0.3, 0.6])
GOLD_LABELS = np.array([0, 0, 0, 1, 1], dtype=np.uint8)


# ------------------------------------------------------------------------------- protocols
def test_presets_and_to_dict():
    paper = get_protocol("paper")
    assert (paper.smoothing, paper.window, paper.normalise) == ("median", 17, "none")
    assert get_protocol("raw").smoothing == "none"
    d = get_protocol("gaussian").to_dict()
    assert d["smoothing"] == "gaussian" and d["sigma"] == 3.0 and d["name"] == "gaussian"
    assert get_protocol("minmax").normalise == "minmax"
    json.dumps(paper.to_dict())
    # get_protocol returns a copy: overriding it does not touch the preset
    p = get_protocol("paper", window=9, patch=8, shifted_grid=False)
    assert (p.window, p.patch, p.shifted_grid) == (9, 8, False)
    assert PROTOCOLS["paper"].window == 17


def test_protocol_errors_name_the_fix():
    with pytest.raises(UserError, match="paper, raw"):
        get_protocol("nope")
    with pytest.raises(UserError, match="windw"):
        get_protocol("paper", windw=3)
    with pytest.raises(UserError, match="odd"):
        get_protocol("paper", window=16)
    with pytest.raises(UserError, match="sigma"):
        Protocol(smoothing="gaussian", sigma=0)
    with pytest.raises(UserError, match="smoothing"):
        Protocol(smoothing="mean")
    with pytest.raises(UserError, match="normalise"):
        Protocol(normalise="zscore")


# ------------------------------------------------------------------------------- smoothing
def test_median_removes_one_frame_spike():
    p3 = get_protocol("paper", window=3)
    np.testing.assert_array_equal(smooth(np.array([0, 0, 5, 0, 0.0]), p3), np.zeros(5))
    x = np.ones(30)
    x[15] = 10.0
    np.testing.assert_array_equal(smooth(x, get_protocol("paper")), np.ones(30))


def test_median_edges_repeat_the_end_values():
    # Window 3, "nearest" padding: [1] 1 5 2 3 9 [9]
    #   frame 0: med(1,1,5)=1  1: med(1,5,2)=2  2: med(5,2,3)=3  3: med(2,3,9)=3  4: med(3,9,9)=9
    # (scipy.signal.medfilt pads with 0 and would give 3 at frame 4.)
    x = np.array([1, 5, 2, 3, 9.0])
    np.testing.assert_array_equal(smooth(x, get_protocol("paper", window=3)), [1, 2, 3, 3, 9])
    # Window 17 on 5 frames: frame 0 sees 8+1 ones, 5, 2, 3 and 4 nines -> 9th of 17 sorted = 1;
    # frame 2 sees 7 ones, 2, 3, 5, 7 nines -> 3; frame 4 sees 5 ones, 2, 3, 5, 9 nines -> 9.
    y = smooth(x, get_protocol("paper"))
    assert (y[0], y[2], y[4]) == (1, 3, 9)


def test_smoothing_none_gaussian_and_bad_input():
    x = np.array([0, 0, 4, 0, 0.0])
    np.testing.assert_array_equal(smooth(x, RAW), x)
    g = smooth(x, get_protocol("gaussian"))
    np.testing.assert_allclose(g, gaussian_filter1d(x, 3.0, mode="nearest"))
    spike = np.zeros(41)
    spike[20] = 4.0
    g = smooth(spike, get_protocol("gaussian"))  # mass kept, peak spread over ~sigma frames
    assert g.sum() == pytest.approx(4.0) and g.max() == pytest.approx(4 / (3.0 * np.sqrt(2 * np.pi)), rel=0.01)
    np.testing.assert_allclose(smooth(np.full(7, 2.5), get_protocol("gaussian")), 2.5)
    assert smooth(np.zeros(0), get_protocol("paper")).size == 0
    with pytest.raises(ValueError, match="NaN"):
        smooth(np.array([1.0, NAN]), RAW)


def test_edge_frames_dropped_with_labels_then_smoothed():
    scores = np.array([NAN, 1, 5, 2, 3, 9, NAN])
    labels = np.array([1, 0, 0, 1, 0, 1, 1], dtype=np.uint8)  # edge labels (1) must vanish
    pool = pooled({"v": (scores, labels)}, get_protocol("paper", window=3))
    np.testing.assert_array_equal(pool.scores, [1, 2, 3, 3, 9])  # as in the edge test above
    np.testing.assert_array_equal(pool.labels, [0, 0, 1, 0, 1])
    np.testing.assert_array_equal(pool.smoothed["v"], [NAN, 1, 2, 3, 3, 9, NAN])
    rep = frame_metrics({"v": (scores, labels)}, get_protocol("paper", window=3))
    assert rep["videos"]["v"] == {"frames": 7, "frames_scored": 5, "abnormal": 2, "auc": rep["auc_micro"]}
    assert rep["frames_abnormal"] == 2 and rep["frames_scored"] == 5
    # sorted desc: 9 P, 3 P|N tie, 2 N, 1 N -> pairs: 9 beats 3 N; 3(P) beats 2 N, ties 3 N -> (3+2.5)/6
    assert rep["auc_micro"] == pytest.approx(5.5 / 6)


def test_median_smoothing_changes_auc_as_intended():
    # A one-frame false alarm inside a normal run is removed by the paper's median filter.
    scores = np.r_[np.zeros(20), 5.0, np.zeros(20), np.full(20, 3.0)]
    labels = np.r_[np.zeros(41), np.ones(20)].astype(np.uint8)
    assert frame_metrics({"v": (scores, labels)}, RAW)["auc_micro"] < 1
    assert frame_metrics({"v": (scores, labels)}, get_protocol("paper"))["auc_micro"] == 1.0


def test_minmax_is_per_video_and_after_smoothing():
    p = get_protocol("raw", normalise="minmax")
    np.testing.assert_allclose(normalise(np.array([2, 4, 6.0]), p), [0, 0.5, 1])
    np.testing.assert_array_equal(normalise(np.array([7, 7.0]), p), [0, 0])  # constant -> 0
    videos = {
        "a": (np.array([2, 4, 6.0]), np.array([0, 0, 1], np.uint8)),
        "b": (np.array([100, 300.0]), np.array([0, 1], np.uint8)),
    }
    pool = pooled(videos, p)
    np.testing.assert_allclose(pool.scores, [0, 0.5, 1, 0, 1])
    # without normalisation video b's normal frame (100) outranks video a's abnormal one (6)
    assert frame_metrics(videos, RAW)["auc_micro"] < 1 and frame_metrics(videos, p)["auc_micro"] == 1.0
    # median first, then min-max: the spike is gone before it could set the maximum
    q = get_protocol("minmax", window=3)
    np.testing.assert_allclose(pooled({"c": (np.array([0, 0, 50, 1, 2.0]), None)}, q).smoothed["c"],
                               [0, 0, 0.5, 1, 1])


# ------------------------------------------------------------------------------- metrics
def test_auc_golden_and_sklearn():
    assert auc(GOLD_SCORES, GOLD_LABELS) == pytest.approx(4 / 6)
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.3).astype(np.uint8)
    scores = np.round(rng.random(500) + 0.5 * labels, 1)  # rounding makes ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    by_pairs = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size)
    assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert auc(scores, labels) == pytest.approx(by_pairs)
    assert auc(np.ones(3), np.zeros(3)) is None


def test_eer_golden():
    assert eer(GOLD_SCORES, GOLD_LABELS) == pytest.approx(0.5)
    # Ties make a slanted segment: scores 0.9 P, 0.5 P|N, 0.2 N -> ROC (0,0) (0,.5) (.5,1) (1,1).
    # On (0,.5)-(.5,1): TPR = .5 + FPR, and FPR = 1 - TPR gives FPR = .25.
    assert eer(np.array([0.2, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1])) == pytest.approx(0.25)
    assert eer(np.array([0.1, 0.9]), np.array([0, 1])) == 0.0  # perfect separation
    assert eer(np.array([0.9, 0.1]), np.array([0, 1])) == 1.0  # perfectly wrong
    assert eer(np.ones(2), np.ones(2)) is None


def test_ap_golden_and_sklearn():
    assert average_precision(GOLD_SCORES, GOLD_LABELS) == pytest.approx(0.75)
    rng = np.random.default_rng(1)
    labels = (rng.random(300) < 0.2).astype(np.uint8)
    scores = rng.random(300) + labels
    assert average_precision(scores, labels) == pytest.approx(average_precision_score(labels, scores))
    assert average_precision(scores, np.zeros(300)) is None


def test_report_golden_and_json_ready():
    edge = np.array([NAN, NAN])
    scores = np.r_[edge, GOLD_SCORES, edge]
    labels = np.r_[[1, 1], GOLD_LABELS, [1, 1]].astype(np.uint8)
    rep = frame_metrics({"01": (scores, labels)}, RAW)
    assert rep["auc_micro"] == pytest.approx(4 / 6) and rep["auc_macro"] == pytest.approx(4 / 6)
    assert rep["eer"] == pytest.approx(0.5) and rep["ap"] == pytest.approx(0.75)
    assert (rep["frames_scored"], rep["frames_evaluated"], rep["frames_abnormal"]) == (5, 5, 2)
    assert rep["labels_available"] is True and rep["protocol"] == RAW.to_dict()
    json.dumps(rep, allow_nan=False)


def test_macro_skips_single_class_video():
    videos = {
        "a": (np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1], np.uint8)),  # AUC 1
        "b": (np.array([0.5, 0.95, 0.5]), np.zeros(3, np.uint8)),  # normal only: no AUC
        "c": (np.array([0.3, 0.3]), np.array([0, 1], np.uint8)),  # tie: AUC 0.5
    }
    rep = frame_metrics(videos, RAW)
    assert rep["videos"]["b"]["auc"] is None and rep["videos"]["b"]["abnormal"] == 0
    assert rep["videos"]["a"]["auc"] == 1.0 and rep["videos"]["c"]["auc"] == 0.5
    assert rep["auc_macro"] == pytest.approx(0.75)  # (1 + 0.5) / 2, b left out
    pool = pooled(videos, RAW)
    assert rep["auc_micro"] == pytest.approx(roc_auc_score(pool.labels, pool.scores))
    assert pool.scores.size == 9  # b's frames still count in the pooled (micro) set


def test_no_labels_gives_null_metrics():
    rep = frame_metrics({"x": (np.array([NAN, 0.2, 0.4, NAN]), None)}, get_protocol("paper"))
    assert rep["labels_available"] is False
    for key in ("auc_micro", "auc_macro", "eer", "ap", "frames_abnormal"):
        assert rep[key] is None
    assert rep["videos"]["x"] == {"frames": 4, "frames_scored": 2, "abnormal": None, "auc": None}
    assert rep["frames_scored"] == 2 and rep["frames_evaluated"] == 0
    json.dumps(rep, allow_nan=False)


def test_unlabelled_video_left_out_of_metrics():
    videos = {"a": (GOLD_SCORES, GOLD_LABELS), "u": (np.array([9.0, 9.0]), None)}
    rep = frame_metrics(videos, RAW)
    assert rep["auc_micro"] == pytest.approx(4 / 6) and rep["frames_evaluated"] == 5
    assert rep["frames_scored"] == 7 and rep["labels_available"] is True


def test_bad_video_input_is_a_user_error():
    with pytest.raises(UserError, match="video v7.*labels for 3 frames"):
        frame_metrics({"v7": (np.zeros(3), np.zeros(4, np.uint8))}, RAW)
    with pytest.raises(UserError, match="0 \\(normal\\) or 1"):
        frame_metrics({"v": (np.zeros(2), np.array([0, 2]))}, RAW)
    with pytest.raises(UserError, match="1-D"):
        frame_metrics({"v": (np.zeros((2, 2)), None)}, RAW)


# ------------------------------------------------------------------------- scenes and tables
def test_aggregate_scenes_median_by_hand():
    reps = {s: {"auc_micro": a} for s, a in [("01", 0.7), ("02", 0.9), ("03", 0.75), ("04", 0.8), ("05", None)]}
    agg = aggregate_scenes(reps, pooled_micro=0.72)
    # sorted 0.7 0.75 0.8 0.9 -> median (0.75+0.8)/2 = 0.775; mean 3.15/4 = 0.7875; 05 left out
    assert agg["auc_scene_median"] == pytest.approx(0.775)
    assert agg["auc_scene_mean"] == pytest.approx(0.7875)
    assert agg["n_scenes"] == 4 and agg["scenes"]["05"] is None and agg["auc_micro_pooled"] == 0.72
    assert list(agg["scenes"]) == ["01", "02", "03", "04", "05"]
    empty = aggregate_scenes({}, None)
    assert empty["auc_scene_median"] is None and empty["n_scenes"] == 0


def test_paper_table_and_ablation_markdown():
    assert PAPER_TABLE["main"]["C3DSU with DDL"] == {"ped2": 98.46, "avenue": 90.35, "shanghaitech": 74.25}
    assert PAPER_TABLE["ablation"][("unet", "avenue")]["ddl"] == 88.96
    md = ablation_table({("c3dsu", "ddl"): 0.98123, ("unet", "recon"): None}, "ped2")
    lines = md.strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("| model | without (paper) | without (ours)")
    assert lines[2] == "| UNet, Ped2 | 86.90 | - | 95.28 | - | 97.76 | - |"
    assert lines[3] == "| C3DSU, Ped2 | 95.55 | - | 97.12 | - | 98.46 | 98.12 |"
    assert "C3DSU, Avenue | 82.54" in ablation_table({}, "avenue")
    with pytest.raises(UserError, match="ped2"):
        ablation_table({}, "shanghaitech")
    with pytest.raises(ValueError, match="fraction"):
        ablation_table({("c3dsu", "ddl"): 98.1}, "ped2")

