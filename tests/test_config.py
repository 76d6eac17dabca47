"""Config: presets, overrides, YAML round trip, and one-line errors naming the flag."""

import pytest

from ddlvad import Config, UserError
from ddlvad.config import PRESETS


def test_paper_preset_is_the_reference_setting():
    c = Config.preset("paper")
    assert (c.model.latent, c.data.height, c.data.width, c.data.channels, c.data.frames) == (512, 256, 256, 3, 3)
    assert (c.train.lr, c.train.lr_drop_at, c.train.lr_gamma, c.train.batch_size, c.train.epochs) == (1e-2, 0.8, 0.5, 10, 10)
    assert (c.ddl.lam, c.ddl.eps, c.ddl.init_logit, c.ddl.loss_form, c.ddl.mode) == (0.01, 1e-6, 0.0, "pixel", "ddl")
    assert c.model.block == "reference" and c.score.patch == 16 and c.score.shifted_grid


def test_presets_validate_and_are_fresh_copies():
    for name in ("tiny", "cpu", "paper"):
        Config.preset(name).validate()
    a = Config.preset("cpu")
    a.train.lr = 5.0
    assert Config.preset("cpu").train.lr != 5.0


def test_yaml_round_trip(tmp_path):
    c = Config.preset("cpu").override(["train.steps=50", "data.scene=01", "score.shifted_grid=false"])
    c.to_yaml(tmp_path / "c.yaml")
    assert Config.from_yaml(tmp_path / "c.yaml") == c


@pytest.mark.parametrize("item,match", [
    ("train.lrr=1", "did you mean train.lr"),
    ("nosection.x=1", "unknown config key"),
    ("train.epochs=abc", "expected int"),
    ("train.lr", "section.field=value"),
])
def test_bad_overrides(item, match):
    with pytest.raises(UserError, match=match):
        Config.preset("tiny").override([item])


@pytest.mark.parametrize("sets,match", [
    ({"data.frames": 4}, "odd"), ({"data.frames": 0}, "odd"), ({"data.height": 40}, "multiple of 16"),
    ({"train.epochs": -1}, "epochs"), ({"train.batch_size": 0}, "batch_size"), ({"ddl.mode": "x"}, "ddl.mode"),
    ({"model.arch": "unet"}, "data.frames=1"),
])
def test_invalid_values_name_the_flag(sets, match):
    with pytest.raises(UserError, match=match):
        Config.preset("tiny").apply(sets).validate()


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset"):
        Config.preset("huge")


def test_a_bare_config_round_trips_through_yaml(tmp_path):
    # Config().preset was the classmethod shadowing the field: to_yaml could not write it
    cfg = Config()
    assert cfg.preset_name == "paper"
    cfg.to_yaml(tmp_path / "c.yaml")
    assert Config.from_yaml(tmp_path / "c.yaml") == cfg
    old = {"preset": "cpu", "train": {"lr": 0.5}}  # files of 0.1.0 development builds
    assert Config.from_dict(old).preset_name == "cpu"


def test_epochs_flag_replaces_the_presets_step_budget():
    from ddlvad.cli import build_config, build_parser

    cfg = build_config(build_parser().parse_args(["train", "--data", "x", "--epochs", "3"]))
    assert (cfg.train.epochs, cfg.train.steps) == (3, None)
    cfg = build_config(build_parser().parse_args(["train", "--data", "x", "--set", "train.epochs=2"]))
    assert (cfg.train.epochs, cfg.train.steps) == (2, None)
    cfg = build_config(build_parser().parse_args(["train", "--data", "x", "--epochs", "2", "--set", "train.steps=40"]))
    assert (cfg.train.epochs, cfg.train.steps) == (2, 40)
    cfg = build_config(build_parser().parse_args(["train", "--data", "x"]))                # the preset's own cap
    assert cfg.train.steps == PRESETS["cpu"]["train.steps"] and cfg.train.until == "converged"
    assert cfg.train.val_fraction == 0.1


@pytest.mark.parametrize("size,scale,scored", [
    ((128, 192), 1.0, (128, 192)),     # the training size
    ((128, 192), 1.25, (160, 240)),    # 160 = 10 x 16, 240 = 15 x 16
    ((256, 256), 1.25, (320, 320)),
    ((128, 192), 1.1, (144, 208)),     # 140.8 -> 9 x 16; 211.2 -> 13 x 16
    ((32, 48), 0.3, (16, 16)),         # never below 16
    ((160, 240), 1.25, (192, 304)),    # 200 = 12.5 x 16: a tie goes to the even multiple; 300 -> 19 x 16
])
def test_scaled_size_rounds_each_side_to_a_multiple_of_16(size, scale, scored):
    from ddlvad.config import scaled_size

    assert scaled_size(*size, scale) == scored
