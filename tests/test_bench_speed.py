"""The speed benchmarks' shared helpers: a preset's frame sizes, one at a time, each trainable
on the benchmarks' random frames (the ``cpu`` preset's progressive resizing once broke them)."""

from bench.common import preset_sizes, random_training_data
from ddlvad import Config
from ddlvad.trainer import Trainer


def test_a_growing_preset_gives_its_start_size_then_its_full_size_each_at_one_fixed_size():
    cpu = Config.preset("cpu")
    assert cpu.train.start_scale < 1
    sizes = preset_sizes("cpu")
    assert [(c.data.height, c.data.width) for c in sizes] == [(128, 192), (160, 240)]
    assert all(c.train.start_scale == 1 for c in sizes)
    for c in sizes:  # nothing else changes
        assert set(c.diff(cpu)) <= {"data.height", "data.width", "train.start_scale"}, c.diff(cpu)


def test_a_preset_of_one_size_is_itself():
    (paper,) = preset_sizes("paper")
    assert paper.diff(Config.preset("paper")) == {}


def test_every_size_of_the_cpu_preset_trains_a_step_on_the_benchmarks_random_frames(tmp_path):
    for cfg in preset_sizes("cpu"):
        cfg.apply({"train.batch_size": 2, "model.latent": 16, "model.channels_last": False,
                   "model.fold_projection": True, "train.val_fraction": 0, "train.until": "steps"})
        trainer = Trainer(cfg, random_training_data(cfg, 8), tmp_path, progress=False)
        parts = trainer.train_step(0)
        assert parts is not None and parts["loss"] > 0
        assert trainer.data.frames[0].shape[1:3] == (cfg.data.height, cfg.data.width)
