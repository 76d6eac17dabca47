"""The training loop on in-memory frames: files, determinism, exact resume, modes."""

import json
import signal

import pytest
import torch

from ddlvad import Config, UserError
from ddlvad.checkpoint import load_checkpoint
from ddlvad.data.clips import TrainingData, recalibration_batches
from ddlvad.models import recalibrate_batchnorm
from ddlvad.runs import prepare_run_dir
from ddlvad.trainer import Trainer, TrainingInterrupted
from fixtures import PLAIN_RUN_FILES, noise_training_data, tiny_cfg


def states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_tiny_run_writes_its_files(tmp_path):
    summary = Trainer(tiny_cfg(), noise_training_data(), tmp_path, progress=False).run()
    assert sorted(p.name for p in tmp_path.iterdir()) == PLAIN_RUN_FILES
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 7))
    assert all({"loss", "recon", "dist", "weight", "lr"} <= set(l) for l in lines)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == 6 and "anomaly_logit" in ckpt and ckpt["threshold"]["value"] > 0
    assert ckpt["anomaly_logit"].item() != 0.0  # l moved: it is trained in ddl mode
    assert Config.from_yaml(tmp_path / "config.yaml") == tiny_cfg()
    assert summary["steps"] == 6


def test_same_seed_same_run_and_other_seed_differs(tmp_path):
    a = Trainer(tiny_cfg(), noise_training_data(), tmp_path / "a", progress=False)
    b = Trainer(tiny_cfg(), noise_training_data(), tmp_path / "b", progress=False)
    c = Trainer(tiny_cfg(**{"train.seed": 1}), noise_training_data(), tmp_path / "c", progress=False)
    for t in (a, b, c):
        (tmp_path / t.run_dir.name).mkdir()
        t.run()
    assert states_equal(a.model.state_dict(), b.model.state_dict())
    assert a.weight.logit.item() == b.weight.logit.item()
    assert not states_equal(a.model.state_dict(), c.model.state_dict())


def test_batchnorm_recalibration_changes_only_the_running_statistics(tmp_path):
    data = noise_training_data()
    plain = Trainer(tiny_cfg(), data, tmp_path / "plain", progress=False)
    recal = Trainer(tiny_cfg(**{"train.bn_recalibration": 8, "train.snapshot_every": 3}), data, tmp_path / "recal",
                    progress=False)
    for t in (plain, recal):
        t.run_dir.mkdir()
        t.run()
    a, b = load_checkpoint(plain.run_dir)["model"], load_checkpoint(recal.run_dir)["model"]
    stats = {k for k in a if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert stats and all(torch.equal(a[k], b[k]) for k in a if k not in stats)  # training itself is untouched
    assert not any(torch.equal(a[k], b[k]) for k in stats if k.endswith("running_mean"))
    assert all(b[k].item() == 2 for k in stats if k.endswith("num_batches_tracked"))  # 8 windows, batches of 4
    # what training stored = the library function applied afterwards to the plain run's network
    cfg = tiny_cfg()
    recalibrate_batchnorm(plain.model, recalibration_batches(data.frames, plain.index, 8, cfg.train.batch_size,
                                                             cfg.train.seed))
    after = plain.model.state_dict()
    for k in stats:
        torch.testing.assert_close(after[k], b[k], rtol=1e-5, atol=1e-6)
    # snapshots hold the statistics training would end with there; the last one equals the checkpoint
    assert states_equal(load_checkpoint(recal.run_dir / "snapshots" / "step_000006.pt")["model"], b)
    mid = load_checkpoint(recal.run_dir / "snapshots" / "step_000003.pt")["model"]
    assert all(mid[k].item() == 2 for k in stats if k.endswith("num_batches_tracked"))


def test_negative_bn_recalibration_is_a_clear_error():
    with pytest.raises(UserError, match="train.bn_recalibration"):
        tiny_cfg(**{"train.bn_recalibration": -1}).validate()


@pytest.mark.parametrize("sets", [{}, {"ddl.paste": 0.5}], ids=["noise", "moved-objects"])
def test_resumed_run_ends_bit_for_bit_like_an_uninterrupted_one(tmp_path, sets):
    full = Trainer(tiny_cfg(**sets), noise_training_data(), tmp_path / "full", progress=False)
    (tmp_path / "full").mkdir()
    full.run()
    # Interrupted run: Ctrl-C during step 3, checkpoint, then a fresh process-like Trainer resumes.
    part_dir = tmp_path / "part"
    part_dir.mkdir()
    part = Trainer(tiny_cfg(**sets), noise_training_data(), part_dir, progress=False)
    real_step = part.train_step

    def step_then_interrupt(step):
        parts = real_step(step)
        if step == 2:
            signal.raise_signal(signal.SIGINT)  # caught by the loop: checkpoint, then TrainingInterrupted
        return parts

    part.train_step = step_then_interrupt
    with pytest.raises(TrainingInterrupted, match="step 3"):
        part.run()
    assert load_checkpoint(part_dir)["step"] == 3
    torch.manual_seed(1234)  # a new process has another global RNG state
    resumed = Trainer(tiny_cfg(**sets), noise_training_data(), part_dir, progress=False)
    resumed.run(resume=True)
    assert states_equal(full.model.state_dict(), resumed.model.state_dict())
    assert full.weight.logit.item() == resumed.weight.logit.item()


@pytest.mark.parametrize("mode", ["recon", "sdl", "ddl"])
def test_modes(tmp_path, mode):
    t = Trainer(tiny_cfg(**{"ddl.mode": mode}), noise_training_data(), tmp_path, progress=False)
    t.run()
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    if mode == "recon":
        assert all("dist" not in l for l in lines)
    else:
        assert all("dist" in l for l in lines)
    if mode == "ddl":
        assert t.weight.logit.item() != 0.0
    else:
        assert t.weight.logit.item() == 0.0 and lines[-1]["weight"] == 0.5


def test_distinction_starts_at_its_step_after_reconstruction_only_steps(tmp_path):
    t = Trainer(tiny_cfg(**{"ddl.start_step": 3}), noise_training_data(), tmp_path, progress=False)
    t.run()
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if "loss" in l]
    assert [("dist" in l) for l in lines] == [False] * 3 + [True] * 3
    assert [l["weight"] for l in lines[:3]] == [0.5] * 3 and lines[-1]["weight"] != 0.5
    (tmp_path / "recon").mkdir()
    plain = Trainer(tiny_cfg(**{"ddl.mode": "recon"}), noise_training_data(), tmp_path / "recon", progress=False)
    plain.run()
    first = [json.loads(l) for l in (tmp_path / "recon" / "metrics.jsonl").read_text().splitlines()][:3]
    assert [l["recon"] for l in lines[:3]] == [l["recon"] for l in first]  # the same steps as recon mode


def test_batch_without_masked_pixels_is_skipped(tmp_path):
    data = noise_training_data()
    data = TrainingData(data.frames, [None, None], data.video_ids)
    t = Trainer(tiny_cfg(), data, tmp_path, progress=False)
    summary = t.run()
    assert summary["skipped_batches"] == 6
    recon = Trainer(tiny_cfg(**{"ddl.mode": "ddl", "data.masks": "random"}), data, tmp_path / "r", progress=False)
    (tmp_path / "r").mkdir()
    assert recon.run()["skipped_batches"] == 0


def test_run_dir_with_another_run_is_refused_unless_forced(tmp_path):
    Trainer(tiny_cfg(), noise_training_data(), tmp_path, progress=False).run()
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(UserError, match="--force"):
        prepare_run_dir(tmp_path, resume=False, force=False)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    prepare_run_dir(tmp_path, resume=False, force=True)
    assert not (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(UserError, match="--resume"):
        prepare_run_dir(tmp_path / "new", resume=True, force=False)


def lrs_of(run_dir) -> list[float]:
    return [json.loads(l)["lr"] for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_learning_rate_drops_once_at_the_configured_fraction(tmp_path):
    # 10 steps, lr_drop_at 0.3: one drop by lr_gamma 0.5 before step index 3 (rows are 1-based
    # and log the lr the step used). StepLR(step_size=3) dropped again at 6 and 9.
    Trainer(tiny_cfg(**{"train.steps": 10, "train.lr_drop_at": 0.3}), noise_training_data(), tmp_path, progress=False).run()
    assert lrs_of(tmp_path) == pytest.approx([1e-3] * 3 + [5e-4] * 7)


def test_resuming_with_more_steps_never_drops_the_learning_rate_twice(tmp_path):
    # 10 steps drop at step index 8; resumed to 20 steps the lr stays at its dropped value
    # (StepLR restored its step size of 8 and halved again at 16).
    Trainer(tiny_cfg(**{"train.steps": 10}), noise_training_data(), tmp_path, progress=False).run()
    Trainer(tiny_cfg(**{"train.steps": 20}), noise_training_data(), tmp_path, progress=False).run(resume=True)
    assert lrs_of(tmp_path) == pytest.approx([1e-3] * 8 + [5e-4] * 12)
