"""``ddl.paste``: the object moved to a place where no training object has been (docs/method.md#paste)."""

import json

import numpy as np
import pytest
import torch

from ddlvad import Config, UserError
from ddlvad.data.clips import TrainingData, WindowIndex, gather_clips
from ddlvad.data.tracks import VideoTracks
from ddlvad.pseudo_anomaly import PseudoAnomalyGenerator, object_masks, shift, uniform_noise, window_rngs
from ddlvad.trainer import Trainer

H, W, N = 32, 48, 9


def scene(object_side=4):
    """Grey 128 everywhere; a white ``object_side`` square walks right 1 px per frame along rows
    2..5; its track's box is 1 px larger on every side. Only rows 1..6 are ever occupied."""
    frames = np.full((N, H, W, 1), 128, np.uint8)
    rows = []
    for f in range(N):
        x = 3 + f
        frames[f, 2:2 + object_side, x:x + object_side] = 255
        box = [(x - 1) / W, 1 / H, (x + object_side + 1) / W, (2 + object_side + 1) / H]
        rows.append([f, 1, *box, 1.0])
    return [frames], [VideoTracks(N, np.array(rows))]


def cfg_with(**sets):
    cfg = Config.preset("tiny")
    cfg.apply({"data.height": H, "data.width": W, "data.frames": 3, **sets})
    return cfg


def draw(cfg, frames, tracks, windows=(0, 3), step=0):
    index = WindowIndex([len(f) for f in frames], cfg.data.frames)
    gen = PseudoAnomalyGenerator(cfg, tracks, index, frames)
    windows = np.array(windows)
    clip = gather_clips(frames, index, windows)
    anomaly = gen.draw(windows, window_rngs(0, step, range(len(windows))), clip)
    return gen, clip, anomaly


def test_the_moved_object_is_its_own_pixels_at_full_weight_where_no_object_has_been():
    frames, tracks = scene()
    gen, clip, anomaly = draw(cfg_with(**{"ddl.paste": 1.0}), frames, tracks)
    assert anomaly.pasted.tolist() == [True, True]
    with torch.no_grad():
        xa = gen(clip, anomaly)
    for b in range(2):
        mask = anomaly.mask[b, 0]
        assert mask.sum(dim=(1, 2)).tolist() == [16.0] * 3              # the 4x4 object in each frame
        assert not mask[:, 1:7].any()                                   # never where the track went
        for t in range(3):
            ys, xs = torch.nonzero(mask[t], as_tuple=True)
            assert ys.max() - ys.min() == 3 and xs.max() - xs.min() == 3  # one square, not spread out
        moved = [torch.nonzero(mask[t], as_tuple=True)[1].min() for t in range(3)]
        assert moved[1] - moved[0] == moved[2] - moved[1] == 1          # it keeps walking right
        inside = mask[None].bool()
        assert torch.all(xa[b][inside] == 1.0)                          # white, at weight 1
        assert torch.equal(xa[b][~inside.expand_as(xa[b])], clip[b][~inside.expand_as(clip[b])])


def test_a_window_keeps_its_noise_when_the_object_is_too_small_or_nothing_is_free():
    frames, tracks = scene(object_side=3)                               # 9 pixels < MIN_FOREGROUND
    _, _, anomaly = draw(cfg_with(**{"ddl.paste": 1.0}), frames, tracks)
    assert anomaly.pasted.tolist() == [False, False]
    frames, _ = scene()
    everywhere = VideoTracks(N, np.array([[f, 1, 0, 0, 1, 1, 1.0] for f in range(N)]))
    _, _, anomaly = draw(cfg_with(**{"ddl.paste": 1.0}), frames, [everywhere])
    assert anomaly.pasted.tolist() == [False, False]
    assert anomaly.mask.sum() == 2 * 3 * H * W                          # the plain box mask, noised


def test_without_paste_the_draw_is_the_papers_masks_and_noise():
    frames, tracks = scene()
    cfg = cfg_with()
    _, clip, anomaly = draw(cfg, frames, tracks, step=5)
    index = WindowIndex([N], 3)
    rngs = window_rngs(0, 5, range(2))
    mask = object_masks(tracks, index, np.array([0, 3]), H, W, rngs)
    assert anomaly.pasted is None
    assert torch.equal(anomaly.mask, mask) and torch.equal(anomaly.noise, uniform_noise(clip.shape, rngs))


def test_paste_fraction_mixes_moved_objects_and_noise():
    frames, tracks = scene()
    _, _, anomaly = draw(cfg_with(**{"ddl.paste": 0.5}), frames, tracks, windows=range(7))
    assert 0 < int(anomaly.pasted.sum()) < 7


def test_shift_drops_what_leaves_the_frame():
    x = torch.arange(12.0).view(3, 4)
    assert shift(x, 1, -1).tolist() == [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0]]
    assert torch.equal(shift(x, 0, 0), x)


@pytest.mark.parametrize("sets", [{"ddl.paste": 1.5}, {"ddl.paste": 0.5, "data.masks": "random"}])
def test_bad_paste_settings_are_one_line_errors(sets):
    with pytest.raises(UserError, match="ddl.paste"):
        cfg_with(**sets).validate()


def test_training_with_moved_objects_runs_and_still_learns_the_weight(tmp_path):
    frames, tracks = scene()
    data = TrainingData(frames * 2, tracks * 2, ["00", "01"])
    cfg = cfg_with(**{"ddl.paste": 0.5, "train.steps": 6, "train.batch_size": 4})
    summary = Trainer(cfg, data, tmp_path, progress=False).run()
    assert summary["steps"] == 6
    assert summary["anomaly_weight"] != pytest.approx(0.5, abs=1e-6)  # l got gradients from the noised windows


def test_moved_objects_can_start_before_the_noise(tmp_path):
    """``ddl.paste_start < ddl.start_step``: from paste_start the moved objects are the only
    pseudo anomalies (every window whose object can move, at weight 1: the weight stays put);
    the noise joins at start_step."""
    frames, tracks = scene()
    data = TrainingData(frames * 2, tracks * 2, ["00", "01"])
    cfg = cfg_with(**{"ddl.paste": 0.5, "ddl.paste_start": 2, "ddl.start_step": 4, "train.steps": 6,
                      "train.batch_size": 4})
    trainer = Trainer(cfg, data, tmp_path, progress=False)
    drawn = []
    real_draw = trainer.generator.draw

    def spy(windows, rngs, clip, noise=True):
        anomaly = real_draw(windows, rngs, clip, noise)
        drawn.append((noise, None if anomaly is None else anomaly.pasted.tolist()))
        return anomaly

    trainer.generator.draw = spy
    trainer.run()
    assert [d[0] for d in drawn] == [False, False, True, True]           # steps 2-3 moved only, 4-5 both
    assert all(drawn[0][1]) and all(drawn[1][1])
    weights = [r["weight"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
               if "weight" in r]
    assert weights[0] == weights[3] == 0.5 and weights[5] != 0.5         # l moves only with the noise
    noise_only = [d[1] for d in drawn[2:]]
    assert any(not all(p) for p in noise_only)                           # the mix from start_step


def test_paste_start_after_the_noise_is_refused():
    with pytest.raises(UserError, match="ddl.paste_start"):
        cfg_with(**{"ddl.paste": 0.5, "ddl.paste_start": 5, "ddl.start_step": 2}).validate()
