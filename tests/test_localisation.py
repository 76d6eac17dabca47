"""Spatial localisation metrics (ddlvad.localisation): golden cases worked out by hand, and the
fast paths checked against direct implementations of the definitions on random small inputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import auc as trapezoid_auc

from ddlvad.localisation import (
    pixel_auc,
    pixel_auc_from_values,
    pixel_auc_values,
    rbdc_tbdc,
    resize_mask,
)
from ddlvad.regions import Region, iou, link_tracks, mask_regions, regions_from_map


def test_module_imports_neither_torch_nor_opencv():
    code = "import sys, ddlvad.localisation, ddlvad.regions; print('torch' in sys.modules, 'cv2' in sys.modules)"
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


# ----------------------------------------------------------------------------------- regions
def test_iou_hand_values():
    a = (0, 0, 10, 10)
    assert iou(a, a) == 1.0
    # overlap 5 x 10 = 50, union 100 + 100 - 50 = 150
    assert iou(a, (5, 0, 15, 10)) == pytest.approx(50 / 150)
    # touching edges (x2 exclusive): no shared pixel
    assert iou(a, (10, 0, 20, 10)) == 0.0
    assert iou(a, (50, 50, 60, 60)) == 0.0
    # a Region is accepted for either side
    assert iou(Region(0, 0, 10, 10, 0.3), (0, 0, 10, 5)) == pytest.approx(0.5)


def test_regions_from_map_two_blobs_8_connected():
    m = np.zeros((6, 8))
    m[1, 1], m[2, 2] = 0.6, 0.9  # blob A: diagonal neighbours -> one component under 8-connectivity
    m[3:5, 5:7] = 0.7  # blob B: 2 x 2 ...
    m[4, 6] = 0.8  # ... with its peak in a corner
    m[0, 7] = 0.4  # below the threshold
    m[5, 0] = 0.5  # equal to the threshold: not > threshold
    regions = regions_from_map(m, threshold=0.5)
    # label order: A's first pixel (1, 1) comes before B's (3, 5) in raster order
    assert regions == [Region(1, 1, 3, 3, 0.9), Region(5, 3, 7, 5, 0.8)]
    # min_area 3 drops A (2 pixels) and keeps B (4 pixels)
    assert regions_from_map(m, threshold=0.5, min_area=3) == [Region(5, 3, 7, 5, 0.8)]
    assert regions_from_map(m, threshold=0.95) == []


def test_regions_from_map_score_is_max_over_component_not_box():
    m = np.zeros((5, 5))
    m[0, :] = 0.6  # an L: top row ...
    m[:, 0] = 0.6  # ... and left column; its box is the whole map
    m[3, 3] = 0.99  # an isolated pixel inside the L's box, not 8-adjacent to it
    regions = regions_from_map(m, threshold=0.5)
    assert regions == [Region(0, 0, 5, 5, 0.6), Region(3, 3, 4, 4, 0.99)]


def test_mask_regions_and_resize_mask():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:3] = True
    mask[4, 4] = mask[5, 5] = True  # diagonal: one component
    assert mask_regions(mask) == [(0, 0, 3, 2), (4, 4, 6, 6)]
    assert mask_regions(np.zeros((3, 3), bool)) == []

    small = np.array([[1, 0], [0, 1]], bool)
    big = resize_mask(small, (4, 6))  # (H, W): each source pixel becomes a 2 x 3 block
    assert big.shape == (4, 6) and big.dtype == bool
    np.testing.assert_array_equal(big, np.kron(small, np.ones((2, 3), bool)))
    np.testing.assert_array_equal(resize_mask(big, (2, 2)), small)


# ---------------------------------------------------------------------- pixel-level AUC (UCSD)
def test_pixel_auc_values_tie_and_boundary_rules():
    # 5 mask pixels, 40 % -> k = ceil(2.0) = 2: the frame is a TP for theta < 2nd largest = 0.3.
    # At theta = 0.3 only the 0.9 pixel is > theta (1/5 = 20 %); just below 0.3 three are (60 %).
    m = np.zeros((2, 5))
    m[0] = [0.9, 0.3, 0.3, 0.1, 0.0]
    m[1] = [5.0, 5.0, 5.0, 5.0, 5.0]  # outside the mask: irrelevant to an abnormal frame
    g = np.zeros((2, 5), bool)
    g[0] = True
    assert pixel_auc_values(m, g) == (0.3, 1)
    # 10 mask pixels, 40 % -> exactly 4: 4 pixels at 1.0 cover 40 % for every theta < 1.0
    m10 = np.zeros((1, 10))
    m10[0, :4] = 1.0
    assert pixel_auc_values(m10, np.ones((1, 10), bool)) == (1.0, 1)
    assert pixel_auc_values(m10, np.ones((1, 10), bool), overlap=0.5) == (0.0, 1)  # 5th largest
    # overlap 0: a TP is any detected pixel, anywhere: v = max of the whole map
    assert pixel_auc_values(m, g, overlap=0.0) == (5.0, 1)
    # normal frame: v = max of the map
    assert pixel_auc_values(m, np.zeros((2, 5), bool)) == (5.0, 0)


def test_pixel_auc_40_percent_rule_changes_the_ranking():
    # Abnormal frame 1: mask = top-left 2 x 2 (4 pixels, k = ceil(1.6) = 2) holding 0.1 each;
    # the map's peak 0.9 is outside the mask. Normal frame: peak 0.5.
    a1 = np.zeros((4, 4))
    a1[:2, :2] = 0.1
    a1[3, 3] = 0.9
    g1 = np.zeros((4, 4), bool)
    g1[:2, :2] = True
    normal = np.zeros((4, 4))
    normal[1, 2] = 0.5
    g0 = np.zeros((4, 4), bool)
    # frame-level maxima rank perfectly (0.9 > 0.5): frame AUC 1 ...
    assert a1.max() > normal.max()
    # ... but the abnormal frame is a TP only for theta < 0.1, while the normal frame is an FP for
    # theta < 0.5: its value 0.1 ranks below 0.5 -> AUC 0.
    assert pixel_auc([a1, normal], [g1, g0]) == 0.0
    # A second abnormal frame whose mask holds 0.8 everywhere: value 0.8 > 0.5 -> AUC 1/2.
    a2 = np.zeros((4, 4))
    a2[2:, :2] = 0.8
    g2 = np.zeros((4, 4), bool)
    g2[2:, :2] = True
    assert pixel_auc([a1, normal, a2], [g1, g0, g2]) == 0.5
    # streaming through pixel_auc_values gives the same
    pairs = [pixel_auc_values(m, g) for m, g in [(a1, g1), (normal, g0), (a2, g2)]]
    assert pixel_auc_from_values([v for v, _ in pairs], [y for _, y in pairs]) == 0.5


def _pixel_auc_brute_force(maps, masks, overlap):
    """The definition: every threshold, every frame, count pixels; trapezoids between points."""
    levels = np.unique(np.concatenate([m.ravel() for m in maps]))
    thetas = np.concatenate(([np.inf], levels[::-1], [-np.inf]))  # all distinct states, in order
    n_pos = sum(g.any() for g in masks)
    n_neg = len(masks) - n_pos
    tpr, fpr = [], []
    for theta in thetas:
        tp = fp = 0
        for m, g in zip(maps, masks):
            detected = m > theta
            if g.any():
                tp += detected.any() and detected[g].sum() >= overlap * g.sum()
            else:
                fp += detected.any()
        tpr.append(tp / n_pos)
        fpr.append(fp / n_neg)
    return trapezoid_auc(fpr, tpr)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("overlap", [0.4, 0.0, 0.25, 1.0])
def test_pixel_auc_equals_brute_force_sweep(seed, overlap):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(14):
        m = rng.integers(0, 5, size=(5, 6)).astype(float)  # few levels: many ties
        g = np.zeros((5, 6), bool)
        if i % 3:  # two thirds abnormal, with a random rectangle
            y, x = rng.integers(0, 4), rng.integers(0, 5)
            g[y : y + rng.integers(1, 3), x : x + rng.integers(1, 3)] = True
        maps.append(m)
        masks.append(g)
    # the brute force uses the float test `count >= overlap * n`; the module's exact k/n test agrees
    # on these sizes (n <= 4), so the two must match exactly
    assert pixel_auc(iter(maps), iter(masks), overlap) == pytest.approx(
        _pixel_auc_brute_force(maps, masks, overlap), abs=1e-12
    )


def test_pixel_auc_edge_cases():
    m = np.ones((3, 3))
    assert pixel_auc([m, m], [np.zeros((3, 3), bool)] * 2) is None  # no abnormal frame
    assert pixel_auc([m], [np.ones((3, 3), bool)]) is None  # no normal frame
    with pytest.raises(ValueError, match="resize_mask"):
        pixel_auc([m], [np.ones((6, 6), bool)])
    with pytest.raises(ValueError):
        pixel_auc([m, m], [np.ones((3, 3), bool)])  # lengths differ
    with pytest.raises(ValueError, match="NaN"):
        pixel_auc_values(np.full((2, 2), np.nan), np.zeros((2, 2), bool))


# ------------------------------------------------------------------------------------ tracks
def test_link_tracks_moving_box_is_one_track():
    frames = [[(2 * f, 0, 2 * f + 10, 10)] for f in range(5)]  # 10 x 10 box moving 2 px per frame
    tracks = link_tracks(frames)
    assert tracks == [[(f, (2 * f, 0, 2 * f + 10, 10)) for f in range(5)]]


def test_link_tracks_two_objects_gap_and_video_start():
    def left(f):  # 10 x 10, moving right 1 px per frame
        return (f, 0, f + 10, 10)

    def right(f):  # far away, moving left
        return (100 - f, 50, 110 - f, 60)

    # listed in a different order in frame 1: linking goes by overlap, not by position in the list
    frames = [[left(0), right(0)], [right(1), left(1)], [left(2), right(2)]]
    tracks = link_tracks(frames)
    assert tracks == [[(f, left(f)) for f in range(3)], [(f, right(f)) for f in range(3)]]
    # a frame without the object splits its track; so does a video boundary
    gap = [[left(0)], [], [left(2)]]
    assert len(link_tracks(gap)) == 2
    assert len(link_tracks([[left(0)], [left(1)], [left(2)]], video_starts=[2])) == 2
    # min_iou: left(0) and left(5) overlap with IoU 5*10 / 150 = 1/3
    assert len(link_tracks([[left(0)], [left(5)]], min_iou=0.3)) == 1
    assert len(link_tracks([[left(0)], [left(5)]], min_iou=0.5)) == 2


def test_link_tracks_one_to_one_by_best_overlap():
    # two objects in frame 0; in frame 1 one region overlapping both, a more than b: it continues
    # a's track and b's track ends
    a, b = (0, 0, 10, 10), (10, 0, 20, 10)
    c = (3, 0, 13, 10)  # overlaps a by 70 (IoU 70/130) and b by 30 (IoU 30/170)
    tracks = link_tracks([[a, b], [c]])
    assert tracks == [[(0, a), (1, c)], [(0, b)]]
    # a split: one region in frame 0, two in frame 1 both overlapping it; the better one (c)
    # continues the track, the other starts a new one (a track has at most one region per frame)
    d = (8, 0, 18, 10)  # overlaps a by 20 (IoU 20/180)
    assert link_tracks([[a], [d, c]]) == [[(0, a), (1, c)], [(1, d)]]


# ------------------------------------------------------------------------------- RBDC / TBDC
def test_rbdc_golden_two_regions_three_detections():
    # 4 frames. GT: A = (0,0,10,10) in frame 0, B = (20,20,30,30) in frame 1, frames 2-3 normal.
    # d1 frame 0 = A exactly, score 0.9                         -> A detected from t = 0.9
    # d2 frame 2 (no GT), score 0.8                             -> false positive
    # d3 frame 1 = (20,20,30,40), IoU with B = 100/200 = 0.5, score 0.7 -> B detected from t = 0.7
    # thresholds 0.9: (FPR 0, RBDR 1/2); 0.8: (1/4, 1/2); 0.7: (1/4, 1)
    # step area on [0, 1]: 1/2 * 1/4 + 1 * 3/4 = 0.875. A and B do not overlap: 2 one-region
    # tracks, each detected with its region, so TBDC is the same.
    gt = [[(0, 0, 10, 10)], [(20, 20, 30, 30)], [], []]
    det = [[Region(0, 0, 10, 10, 0.9)], [Region(20, 20, 30, 40, 0.7)], [Region(0, 0, 5, 5, 0.8)], []]
    out = rbdc_tbdc(det, gt)
    assert out["rbdc"] == pytest.approx(0.875)
    assert out["tbdc"] == pytest.approx(0.875)
    assert out["curve"]["fpr"] == [0.0, 0.0, 0.25, 0.25]
    assert out["curve"]["rbdr"] == [0.0, 0.5, 0.5, 1.0]
    assert out["curve"]["threshold"] == [None, 0.9, 0.8, 0.7]
    assert (out["regions"], out["tracks"], out["frames"]) == (2, 2, 4)
    # plain (x1, y1, x2, y2, score) tuples are accepted as detections
    tuples = [[(r.x1, r.y1, r.x2, r.y2, r.score) for r in frame] for frame in det]
    assert rbdc_tbdc(tuples, gt)["rbdc"] == out["rbdc"]


def test_rbdc_beta_is_inclusive():
    gt = [[(0, 0, 10, 10)]]
    # IoU 10 / 100 = 0.1 = beta: detected, not a false positive -> perfect
    assert rbdc_tbdc([[Region(0, 0, 10, 1, 1.0)]], gt)["rbdc"] == pytest.approx(1.0)
    # IoU 9 / 100 = 0.09 < beta: a false positive (1 per frame) and A never detected -> 0
    out = rbdc_tbdc([[Region(0, 0, 9, 1, 1.0)]], gt)
    assert out["rbdc"] == 0.0
    assert out["curve"]["fpr"] == [0.0, 1.0]


def test_tbdc_one_track_of_ten_regions():
    # one object moving 1 px per frame over 10 frames: one track of 10 regions
    gt = [[(f, 0, f + 10, 10)] for f in range(10)]
    det = [[] for _ in range(10)]
    det[3] = [Region(3, 0, 13, 10, 1.0)]  # exactly region 3
    out = rbdc_tbdc(det, gt)
    assert out["tracks"] == 1
    # 1 of 10 regions at FPR 0 from the start: RBDC = 1/10
    assert out["rbdc"] == pytest.approx(0.1)
    # 1/10 >= alpha = 0.1: the track is detected at FPR 0 -> TBDC 1
    assert out["tbdc"] == pytest.approx(1.0)
    assert rbdc_tbdc(det, gt, alpha=0.2)["tbdc"] == 0.0  # needs 2 of 10
    none = rbdc_tbdc([[] for _ in range(10)], gt)
    assert (none["rbdc"], none["tbdc"]) == (0.0, 0.0)


def test_fraction_rules_compare_the_ratio_not_a_rounded_product():
    # 0.55 * 100 is 55.00000000000001 in floats, so ceil() would ask for 56 of 100; the rule is
    # "detected / total >= alpha" and 55 / 100 >= 0.55
    gt = [[(f, 0, f + 10, 10)] for f in range(100)]  # one track of 100 regions
    det = [[Region(f, 0, f + 10, 10, 1.0)] if f < 55 else [] for f in range(100)]
    assert rbdc_tbdc(det, gt, alpha=0.55)["tbdc"] == pytest.approx(1.0)
    det54 = [frame if f < 54 else [] for f, frame in enumerate(det)]
    assert rbdc_tbdc(det54, gt, alpha=0.55)["tbdc"] == 0.0
    # same for the pixel overlap: 55 of 100 mask pixels at 1.0 cover 55 % for theta < 1.0
    m = np.zeros((10, 10))
    m.ravel()[:55] = 1.0
    assert pixel_auc_values(m, np.ones((10, 10), bool), overlap=0.55) == (1.0, 1)


def test_false_positives_push_fpr_and_curve_is_cut_at_max_fpr():
    # 2 frames; GT A in frame 0. Three false positives in frame 1 (0.9, 0.8, 0.7), A hit at 0.85.
    # points: 0.9 (1/2, 0); 0.85 (1/2, 1); 0.8 (1, 1); 0.7 (3/2, 1)
    # [0, 1]: rate 0 on [0, 1/2), 1 on [1/2, 1] -> 0.5 (the part beyond FPR 1 is cut)
    gt = [[(0, 0, 10, 10)], []]
    fps = [Region(50, 50, 60, 60, s) for s in (0.9, 0.8, 0.7)]
    det = [[Region(0, 0, 10, 10, 0.85)], fps]
    assert rbdc_tbdc(det, gt)["rbdc"] == pytest.approx(0.5)
    # over [0, 2]: 0 * 1/2 + 1 * 3/2 = 1.5, / 2 = 0.75 (the last rate extended to FPR 2)
    assert rbdc_tbdc(det, gt, max_fpr=2.0)["rbdc"] == pytest.approx(0.75)
    # over [0, 1/2]: rate 0 throughout
    assert rbdc_tbdc(det, gt, max_fpr=0.5)["rbdc"] == 0.0
    # A hit only after all false positives (score 0.6): FPR already 3/2 -> 0
    det_late = [[Region(0, 0, 10, 10, 0.6)], fps]
    assert rbdc_tbdc(det_late, gt)["rbdc"] == 0.0


def test_perfect_no_detection_no_ground_truth():
    gt = [[(0, 0, 10, 10), (30, 30, 40, 40)], [], [(1, 0, 11, 10)]]
    perfect = [[Region(*b, 0.5) for b in frame] for frame in gt]
    out = rbdc_tbdc(perfect, gt)
    assert (out["rbdc"], out["tbdc"]) == (pytest.approx(1.0), pytest.approx(1.0))
    # frame 1 is empty, so frame 2's region starts a new track even though it overlaps frame 0's
    assert out["tracks"] == 3
    empty = rbdc_tbdc([[], [], []], gt)
    assert (empty["rbdc"], empty["tbdc"]) == (0.0, 0.0)
    no_gt = rbdc_tbdc([[Region(0, 0, 1, 1, 1.0)], []], [[], []])
    assert (no_gt["rbdc"], no_gt["tbdc"], no_gt["regions"], no_gt["tracks"]) == (None, None, 0, 0)
    assert no_gt["curve"]["fpr"] == [0.0, 0.5]


def test_duplicates_are_not_false_positives_and_ties_count_as_one_threshold():
    gt = [[(0, 0, 10, 10)], []]
    # two detections on A: the second is neither TP nor FP -> perfect
    dup = [[Region(0, 0, 10, 10, 0.9), Region(1, 1, 10, 10, 0.8)], []]
    assert rbdc_tbdc(dup, gt)["rbdc"] == pytest.approx(1.0)
    # a hit and a false positive with the same score: one threshold, (0,0) -> (1/2, 1);
    # step area = 0 on [0, 1/2) + 1 on [1/2, 1] = 0.5 (whatever the order of the two)
    tie = [[Region(0, 0, 10, 10, 0.5)], [Region(50, 50, 60, 60, 0.5)]]
    assert rbdc_tbdc(tie, gt)["rbdc"] == pytest.approx(0.5)
    tie_swapped = [[Region(50, 50, 60, 60, 0.5), Region(0, 0, 10, 10, 0.5)], []]
    gt_swapped = [[(0, 0, 10, 10)], []]
    assert rbdc_tbdc(tie_swapped, gt_swapped)["rbdc"] == pytest.approx(0.5)


def test_explicit_tracks_and_validation():
    gt = [[(0, 0, 10, 10)], [(50, 0, 60, 10)]]
    det = [[Region(0, 0, 10, 10, 1.0)], []]
    # default linking: the two regions do not overlap -> 2 tracks, 1 detected
    assert rbdc_tbdc(det, gt)["tbdc"] == pytest.approx(0.5)
    # declared one track of 2 regions: 1/2 >= 0.1 -> detected
    one = [[(0, (0, 0, 10, 10)), (1, (50, 0, 60, 10))]]
    out = rbdc_tbdc(det, gt, tracks=one)
    assert (out["tbdc"], out["tracks"]) == (pytest.approx(1.0), 1)
    with pytest.raises(ValueError, match="not in ground_truth"):
        rbdc_tbdc(det, gt, tracks=[[(0, (1, 1, 2, 2))]])
    with pytest.raises(ValueError):
        rbdc_tbdc(det, gt[:1])  # frame counts differ
    with pytest.raises(ValueError):
        rbdc_tbdc([[Region(0, 0, 1, 1, float("nan"))], []], gt)


# ---------------------------------------------- equivalence with direct implementations


def _random_case(rng, n_frames, distinct):
    """Up to 3 objects, each present over one random run of frames and moving a few pixels per
    frame (multi-region tracks), plus detections: jittered ground-truth boxes (IoU anywhere in
    [0, 1]) and random boxes."""
    gt = [[] for _ in range(n_frames)]
    for _ in range(rng.integers(1, 4)):
        first = int(rng.integers(0, n_frames))
        last = int(rng.integers(first, n_frames))
        x, y, w, h = rng.integers(0, 60), rng.integers(0, 60), rng.integers(4, 14), rng.integers(4, 14)
        vx, vy = rng.integers(-2, 3, size=2)
        for f in range(first, last + 1):
            x0, y0 = int(x + vx * (f - first)), int(y + vy * (f - first))
            gt[f].append((x0, y0, x0 + int(w), y0 + int(h)))
    det = []
    for f in range(n_frames):
        frame_det = []
        for _ in range(rng.integers(0, 4)):
            if gt[f] and rng.random() < 0.6:
                bx = gt[f][rng.integers(len(gt[f]))]
                dx, dy = rng.integers(-6, 7, size=2)
                box = (bx[0] + dx, bx[1] + dy, bx[2] + dx, bx[3] + dy)
            else:
                x, y = rng.integers(0, 60, size=2)
                box = (x, y, x + 8, y + 8)
            score = float(rng.random()) if distinct else float(rng.integers(0, 4))
            frame_det.append(Region(*map(int, box), score))
        det.append(frame_det)
    return det, gt


def _rates_at(det, gt, tracks, t, beta, alpha):
    """The definition at one threshold, from scratch: (false positives, detected regions, tracks)."""
    fp, found = 0, set()
    for f, frame in enumerate(det):
        for d in frame:
            if d.score < t:
                continue
            hits = [j for j, g in enumerate(gt[f]) if iou(d, g) >= beta]
            fp += not hits
            found.update((f, j) for j in hits)
    n_tracks = 0
    for track in tracks:
        hit = sum((f, gt[f].index(b)) in found for f, b in track)
        n_tracks += hit / len(track) >= alpha
    return fp, len(found), n_tracks


@pytest.mark.parametrize("seed", range(6))
def test_rbdc_tbdc_equal_definition_at_every_threshold(seed):
    rng = np.random.default_rng(100 + seed)
    det, gt = _random_case(rng, n_frames=25, distinct=bool(seed % 2))  # even seeds: tied scores
    alpha, beta = (0.1, 0.1) if seed < 3 else (0.3, 0.25)
    out = rbdc_tbdc(det, gt, beta=beta, alpha=alpha)
    tracks = link_tracks(gt)
    n_regions = sum(len(g) for g in gt)
    curve = out["curve"]
    for i, t in enumerate(curve["threshold"][1:], start=1):
        fp, regions, n_tracks = _rates_at(det, gt, tracks, t, beta, alpha)
        assert curve["fpr"][i] == pytest.approx(fp / len(gt))
        assert curve["rbdr"][i] == pytest.approx(regions / n_regions)
        assert curve["tbdr"][i] == pytest.approx(n_tracks / len(tracks))


def _staircase_trapezoid(det, gt, tracks, beta=0.1, alpha=0.1):
    """The per-detection construction of the public AED script, in our own words: one point per
    detection in decreasing score order, trapezoids, cut at the last point with FPR <= 1 and
    extended to FPR 1 with that point's rates."""
    flat = sorted(((d.score, f, d) for f, frame in enumerate(det) for d in frame), key=lambda x: -x[0])
    region_track = {(f, gt[f].index(b)): i for i, tr in enumerate(tracks) for f, b in tr}
    per_track = np.zeros(len(tracks))
    sizes = np.array([len(tr) for tr in tracks])
    found: set = set()
    fp = 0
    fpr, rbdr, tbdr = [0.0], [0.0], [0.0]
    for _, f, d in flat:
        hits = [j for j, g in enumerate(gt[f]) if iou(d, g) >= beta]
        fp += not hits
        for j in hits:
            if (f, j) not in found:
                found.add((f, j))
                per_track[region_track[(f, j)]] += 1
        fpr.append(fp / len(gt))
        rbdr.append(len(found) / sum(len(g) for g in gt))
        tbdr.append(float(np.mean(per_track / sizes >= alpha)))
    fpr, rbdr, tbdr = map(np.asarray, (fpr, rbdr, tbdr))
    last = np.nonzero(fpr <= 1)[0][-1] + 1
    fpr, rbdr, tbdr = fpr[:last], rbdr[:last], tbdr[:last]
    if fpr[-1] != 1:
        fpr, rbdr, tbdr = np.append(fpr, 1.0), np.append(rbdr, rbdr[-1]), np.append(tbdr, tbdr[-1])
    return trapezoid_auc(fpr, rbdr), trapezoid_auc(fpr, tbdr)


@pytest.mark.parametrize("seed", range(5))
def test_rbdc_tbdc_match_per_detection_staircase_when_scores_are_distinct(seed):
    rng = np.random.default_rng(200 + seed)
    # few frames so that FPR passes 1 in some seeds (the cut), many in others (the extension)
    det, gt = _random_case(rng, n_frames=int(rng.integers(3, 30)), distinct=True)
    out = rbdc_tbdc(det, gt)
    rbdc, tbdc = _staircase_trapezoid(det, gt, link_tracks(gt))
    assert out["rbdc"] == pytest.approx(rbdc, abs=1e-12)
    assert out["tbdc"] == pytest.approx(tbdc, abs=1e-12)


def test_rbdc_tbdc_on_fifteen_thousand_frames():
    rng = np.random.default_rng(7)
    n = 15_000
    gt = [[(int(f % 200), 10, int(f % 200) + 20, 40)] if (f // 300) % 2 else [] for f in range(n)]
    det = [
        [Region(int(x), int(y), int(x) + 20, int(y) + 30, float(s)) for x, y, s in rng.random((3, 3)) * [220, 40, 1]]
        for _ in range(n)
    ]
    out = rbdc_tbdc(det, gt)  # a benchmark-sized input (its speed is not asserted: machines are noisy)
    assert out["frames"] == n and out["regions"] == n // 2
    assert 0.0 <= out["rbdc"] <= 1.0 and 0.0 <= out["tbdc"] <= 1.0


# ------------------------------------------------------------------------ maps of a test set
def test_map_evaluation_by_hand():
    from ddlvad.localisation import MapEvaluation

    # Video a, two frames 10x10. Frame 0 is normal, its map has a faint blob (0.2) at rows 0-1,
    # cols 0-1. Frame 1 has an object at rows 4-7, cols 4-7 (16 px); its map is 0.9 there.
    # Levels 0.1 and 0.5:
    #   0.5: frame 1 region = the object box (IoU 1, detected), frame 0 nothing -> (FPR 0, rate 1)
    #   0.1: frame 0's blob is a false positive (1 over 2 frames) -> (FPR 0.5, rate 1)
    # Curve: rate 1 from FPR 0 on -> RBDC = TBDC = 1. Pixel AUC: the abnormal frame's value
    # (0.9, 40 % of its mask above any t < 0.9) beats the normal frame's maximum 0.2 -> 1.
    normal = np.zeros((10, 10))
    normal[0:2, 0:2] = 0.2
    abnormal = np.zeros((10, 10))
    abnormal[4:8, 4:8] = 0.9
    mask = np.zeros((10, 10), bool)
    mask[4:8, 4:8] = True
    ev = MapEvaluation([0.5, 0.1])
    ev.add("a", normal, np.zeros((10, 10), bool))
    ev.add("a", abnormal, mask)
    r = ev.result()
    assert (r["pixel_auc"], r["rbdc"], r["tbdc"], r["regions"], r["tracks"], r["frames"]) == (1.0, 1.0, 1.0, 1, 1, 2)
    assert r["curve"]["fpr"] == [0.5, 0.0] and r["curve"]["rbdr"] == [1.0, 1.0]  # levels in ascending order
    # A map that misses the object (its blob elsewhere) detects nothing and only makes false
    # positives: RBDC 0; pixel AUC 1/2 (abnormal value 0 ties with the normal maximum 0).
    ev = MapEvaluation([0.5])
    ev.add("a", np.zeros((10, 10)), np.zeros((10, 10), bool))
    wrong = np.zeros((10, 10))
    wrong[0:2, 0:2] = 0.9
    ev.add("a", wrong, mask)
    r = ev.result()
    assert (r["rbdc"], r["tbdc"], r["pixel_auc"]) == (0.0, 0.0, 0.5)
    assert r["curve"]["fpr"] == [0.5]


def test_map_evaluation_merges_videos_in_the_order_asked():
    from ddlvad.localisation import MapEvaluation

    m = np.zeros((4, 4))
    m[1:3, 1:3] = 1.0
    mask = m > 0
    one, two = MapEvaluation([0.5]), MapEvaluation([0.5])
    one.add("b", m, mask)
    two.add("a", m, mask)
    one.merge(two.state())
    r = one.result(["a", "b"])
    assert r["videos"] == ["a", "b"] and r["tracks"] == 2  # no track across the video boundary


def test_annotated_box_scales_inclusive_corners_to_exclusive_map_pixels():
    from ddlvad.localisation import annotated_box

    # columns 2..7 of a 20-pixel-wide frame = [2, 8) -> [1, 4) on a 10-pixel-wide map
    assert annotated_box((2, 2, 7, 7), (20, 20), (10, 10)) == (1.0, 1.0, 4.0, 4.0)
    # the whole 856x480 ShanghaiTech frame is the whole map
    assert annotated_box((0, 0, 855, 479), (480, 856), (256, 256)) == (0.0, 0.0, 256.0, 256.0)


def test_annotated_tracks_golden_and_unlike_mask_tracks():
    """RBDC/TBDC on 2 annotated tracks, worked by hand; the pixel-mask path on the same frames
    gives another TBDC, so this fails if the annotations are ignored.

    One video, 3 frames, maps 10x10, video frames 20x20 (annotations at twice the map's size).
    Track 0 (object A): frames 0 and 2 (not 1: occluded), inclusive (2, 2, 7, 7) -> map box
    (1, 1, 4, 4). Track 1 (object B): frames 0, 1, 2, (12, 12, 17, 17) -> (6, 6, 9, 9).
    Maps at the one level 0.5: frame 1 has a blob at rows 0-1, cols 8-9 (a false positive), frame 2
    lights A exactly. Regions 5 (A0, A2, B0, B1, B2), detected A2: RBDR 1/5 at FPR 1/3 (1 false
    positive over 3 frames). Annotated tracks: A (1 of 2 regions >= 10 %) detected, B not: TBDR 1/2.
    Curve from (0, 0): RBDC = 1/5 * (1 - 1/3) = 2/15, TBDC = 1/2 * 2/3 = 1/3.
    Mask tracks: the gap splits A into two tracks (A0 and A2): 3 tracks, 1 detected: TBDC 2/9.
    """
    from ddlvad.localisation import MapEvaluation, annotated_box

    a, b = annotated_box((2, 2, 7, 7), (20, 20), (10, 10)), annotated_box((12, 12, 17, 17), (20, 20), (10, 10))
    assert (a, b) == ((1, 1, 4, 4), (6, 6, 9, 9))
    maps = [np.zeros((10, 10)) for _ in range(3)]
    maps[1][0:2, 8:10] = 0.7
    maps[2][1:4, 1:4] = 0.9
    truth = [[(0, a), (1, b)], [(1, b)], [(0, a), (1, b)]]
    masks = []
    for boxes in truth:
        m = np.zeros((10, 10), bool)
        for _, (x1, y1, x2, y2) in boxes:
            m[int(y1):int(y2), int(x1):int(x2)] = True
        masks.append(m)

    annotated, from_masks = MapEvaluation([0.5], annotated=True), MapEvaluation([0.5])
    for f in range(3):
        annotated.add("v", maps[f], masks[f], truth[f])
        from_masks.add("v", maps[f], masks[f])
    r, m = annotated.result(), from_masks.result()
    assert (r["regions"], r["tracks"], r["rbdc_frames"], r["curve"]["fpr"]) == (5, 2, 3, [1 / 3])
    assert r["rbdc"] == pytest.approx(2 / 15) and r["tbdc"] == pytest.approx(1 / 3)
    assert (m["regions"], m["tracks"]) == (5, 3)
    assert m["rbdc"] == pytest.approx(2 / 15) and m["tbdc"] == pytest.approx(2 / 9)
    # frames without a mask still count for RBDC/TBDC with annotations, not for the pixel AUC
    annotated = MapEvaluation([0.5], annotated=True)
    for f in range(3):
        annotated.add("v", maps[f], None, truth[f])
    r2 = annotated.result()
    assert (r2["rbdc"], r2["tbdc"], r2["frames"], r2["rbdc_frames"], r2["pixel_auc"]) == (r["rbdc"], r["tbdc"], 0, 3,
                                                                                           None)
    with pytest.raises(ValueError, match="give the frame's boxes"):
        annotated.add("v", maps[0], masks[0])
    with pytest.raises(ValueError, match="give one"):
        from_masks.add("v", maps[0])


def test_describe_protocol_says_where_the_tracks_come_from():
    from ddlvad.config import LocalisationProtocol
    from ddlvad.localisation import TRACKS_FROM_MASKS, describe_protocol

    p = LocalisationProtocol()
    levels = p.levels({"region": 0.1})
    masks = describe_protocol(p, levels)
    assert masks["track_source"] == "pixel masks" and masks["annotations"] is None
    assert masks["tracks"] == TRACKS_FROM_MASKS == ("tracks come from pixel masks (connected components linked by "
                                                    "overlap): not comparable to published RBDC/TBDC")
    assert (masks["beta"], masks["alpha"], masks["max_fpr"], masks["overlap"]) == (0.1, 0.1, 1.0, 0.4)
    assert len(masks["levels"]) == 25 and masks["levels"][12] == 0.1
    assert "25 levels" in masks["regions"] and "nearest neighbour" in masks["masks"] and "dropped" in masks["edge_frames"]
    assert "IoU >= 0.1" in masks["rbdc_tbdc"] and ">= 10%" in masks["rbdc_tbdc"] and ">= 40%" in masks["pixel_auc"]
    annotated = describe_protocol(p, levels, "/data/tracks")
    assert annotated["track_source"] == "annotations" and annotated["annotations"] == "/data/tracks"
    assert "/data/tracks" in annotated["tracks"] and "not comparable" not in annotated["tracks"]
