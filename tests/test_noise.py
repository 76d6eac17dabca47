"""``ddl.noise``: the noise ``A`` of Eq. 1, the paper's per-pixel uniform noise or the same
distribution drawn per block (docs/method.md §2.4, docs/method.md#block-noise)."""

import numpy as np
import pytest
import torch

from ddlvad import Config, UserError
from ddlvad.data.clips import TrainingData, WindowIndex, gather_clips
from ddlvad.data.tracks import VideoTracks
from ddlvad.pseudo_anomaly import PseudoAnomalyGenerator, uniform_noise, window_rngs
from ddlvad.trainer import Trainer
from ddlvad.validation import Validator

H, W, N = 32, 48, 12


def rngs(n=2, seed=3):
    return [np.random.default_rng([seed, b]) for b in range(n)]


def test_per_pixel_noise_is_each_windows_own_uniform_draw():
    shape = torch.Size((2, 1, 3, 5, 7))
    noise = uniform_noise(shape, rngs())
    for b, r in enumerate(rngs()):                     # the same generators, drawn again
        assert np.array_equal(noise[b].numpy(), r.random((1, 3, 5, 7), dtype=np.float32))
    assert noise.dtype == torch.float32


def test_block_noise_is_constant_on_each_block_and_cut_at_the_frame_edge():
    shape = torch.Size((2, 2, 3, 10, 13))               # 10 x 13: the last blocks are 2 and 1 px wide
    noise = uniform_noise(shape, rngs(), cell=4)
    assert noise.shape == shape
    for b, r in enumerate(rngs()):
        coarse = r.random((2, 3, 3, 4), dtype=np.float32)   # ceil(10/4) x ceil(13/4) draws per frame
        for y in range(10):
            for x in range(13):
                assert np.array_equal(noise[b, :, :, y, x].numpy(), coarse[:, :, y // 4, x // 4])
    # frames and channels draw their own blocks: a grain in space, not a still image
    assert not torch.equal(noise[0, 0, 0], noise[0, 0, 1]) and not torch.equal(noise[0, 0], noise[0, 1])


def test_block_noise_keeps_the_uniform_distribution():
    noise = uniform_noise(torch.Size((4, 1, 3, 64, 64)), rngs(4), cell=8)
    values = noise[..., ::8, ::8].flatten().numpy()      # one value per block: 768 draws
    assert values.min() >= 0 and values.max() < 1
    assert abs(values.mean() - 0.5) < 4 * (1 / 12) ** 0.5 / len(values) ** 0.5
    assert abs(values.var() - 1 / 12) < 0.01


def scene():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (N, H, W, 1), dtype=np.uint8)
    rows = np.array([[f, 1, 0.0, 0.0, 1.0, 1.0, 1.0] for f in range(N)])   # one object: the whole frame
    return [frames, frames.copy()], [VideoTracks(N, rows)] * 2


def cfg_with(**sets):
    cfg = Config.preset("tiny")
    cfg.apply({"data.height": H, "data.width": W, "data.frames": 3, **sets})
    cfg.validate()
    return cfg


def blocks_are_constant(noise, cell):
    blocks = noise.unflatten(-2, (H // cell, cell)).unflatten(-1, (W // cell, cell))
    return bool((blocks == blocks[..., :1, :, :1]).all())


def test_training_and_validation_draw_the_configured_noise():
    frames, tracks = scene()
    index = WindowIndex([N, N], 3)
    windows = np.arange(4)
    clip = gather_clips(frames, index, windows)
    for sets, blocky in (({}, False), ({"ddl.noise": "blocks", "ddl.noise_cell": 8}, True)):
        cfg = cfg_with(**sets)
        anomaly = PseudoAnomalyGenerator(cfg, tracks, index).draw(windows, window_rngs(0, 0, windows), clip)
        assert anomaly.mask.all()                                          # the box is the whole frame
        assert blocks_are_constant(anomaly.noise, 8) is blocky
        validator = Validator(cfg_with(**sets, **{"train.val_windows": 4}), TrainingData(frames, tracks, ["00", "01"]))
        assert blocks_are_constant(validator.noise, 8) is blocky


def test_training_with_block_noise_learns_the_weight(tmp_path):
    frames, tracks = scene()
    cfg = cfg_with(**{"ddl.noise": "blocks", "ddl.noise_cell": 4, "train.steps": 6})
    summary = Trainer(cfg, TrainingData(frames, tracks, ["00", "01"]), tmp_path, progress=False).run()
    assert summary["steps"] == 6
    assert summary["anomaly_weight"] != pytest.approx(0.5, abs=1e-6)     # l got gradients from the noised boxes
    assert Config.from_yaml(tmp_path / "config.yaml").ddl.noise == "blocks"  # recorded in the run


@pytest.mark.parametrize("sets, key", [({"ddl.noise": "gaussian"}, "ddl.noise"), ({"ddl.noise_cell": 0}, "ddl.noise_cell")])
def test_bad_noise_settings_are_one_line_errors(sets, key):
    with pytest.raises(UserError, match=key) as err:
        cfg_with(**sets)
    assert "\n" not in str(err.value)
