"""Several processes, one run (CPU, gloo): DDP training, distributed scoring, per-scene jobs.

The two-process runs happen once per module (``ddp`` fixture: torch.multiprocessing.spawn of
two ranks that run every scenario in one process group and save what they hold); the tests
then compare those files with each other and with single-process runs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from data_tiny import noise, write_frames, write_video
from ddlvad import Config, UserError, distributed
from ddlvad.checkpoint import load_checkpoint
from ddlvad.cli import main
from ddlvad.trainer import Trainer
from fixtures import PLAIN_RUN_FILES, noise_training_data

SRC = Path(__file__).resolve().parents[1] / "src"

def tiny_cfg(**sets) -> Config:
    cfg = Config.preset("tiny")
    # The equivalences below hold to float noise (1e-6 on gradients of ~1e-2) in the default
    # layout; channels-last convolutions round differently for different batch splits
    # (~1e-3 relative on the first layer's gradient), which would hide a real error.
    cfg.model.channels_last = False
    cfg.apply(sets)
    return cfg


SCENARIOS = {  # name -> config of a two-process run on tiny_data, tiny_data's arguments
    "plain": ({}, {}),                                                 # 6 steps, per-rank BatchNorm
    "sync": ({"train.sync_batchnorm": True, "train.steps": 3}, {}),    # global-batch BatchNorm
    "recon": ({"ddl.mode": "recon", "train.steps": 2}, {}),            # l gets no gradient
    "tail": ({"train.steps": 4}, {"videos": 1, "frames": 15}),         # 13 windows: step 4 has 1
}


@pytest.fixture(autouse=True)
def one_thread():
    """Single-process references run on one thread, as each rank does."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def held_state(trainer: Trainer) -> dict:
    return {"model": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
            "logit": trainer.weight.logit.detach().clone()}


def step_gradients(trainer: Trainer) -> dict:
    """The gradients the last step applied (DDP: averaged over ranks)."""
    return {name: p.grad.detach().clone() for name, p in trainer.net.named_parameters() if p.grad is not None}


SGD_CASES = {  # name -> (steps, tiny_data arguments)
    "sgd": (3, {}),
    "sgd-tail": (4, {"videos": 1, "frames": 17}),  # 15 windows: step 4 is a batch of 3, cut 2 + 1
}


def sgd_steps(steps: int = 3, **data) -> dict:
    """The first step's gradients and the state after ``steps`` steps of plain SGD (in place
    of Adam, which turns float noise in zero-mean gradients -- the biases before BatchNorm --
    into full-size steps) of the ``sync`` configuration."""
    trainer = Trainer(tiny_cfg(**SCENARIOS["sync"][0]), noise_training_data(**data), "unused", progress=False)
    trainer.optimizer = torch.optim.SGD(trainer.net.parameters(), lr=0.05)
    trainer.train_step(0)
    grads = step_gradients(trainer)
    for step in range(1, steps):
        trainer.train_step(step)
    return {**held_state(trainer), "grads": grads}


def _rank_main(rank: int, world: int, port: int, base: str, scene: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from ddlvad.commands.evaluate import evaluate

    base_dir = Path(base)
    with distributed.session():
        for name, (sets, data) in SCENARIOS.items():
            run = base_dir / name
            if rank == 0:
                run.mkdir()
            distributed.barrier()
            trainer = Trainer(tiny_cfg(**sets), noise_training_data(**data), run, progress=False)
            summary = trainer.run()
            torch.save({**held_state(trainer), "summary": summary}, base_dir / f"{name}-rank{rank}.pt")
        for name, (steps, data) in SGD_CASES.items():
            torch.save(sgd_steps(steps, **data), base_dir / f"{name}-rank{rank}.pt")
        try:
            Trainer(tiny_cfg(**{"train.batch_size": 3}), noise_training_data(), base_dir / "odd", progress=False)
            message = None
        except UserError as exc:
            message = (str(exc), getattr(exc, "quiet", False))
        kept: dict = {}
        report = evaluate(base_dir / "plain", scene, out=base_dir / "eval-2", cache_dir=str(base_dir / "cache"),
                                   plots=False, progress=False, log=lambda m: None, keep_scores=kept)
        torch.save({"scores": {k: v[0] for k, v in kept.items()}, "auc": report["auc_micro"],
                    "processes": report["processes"], "odd": message}, base_dir / f"extra-rank{rank}.pt")


@pytest.fixture(scope="module")
def ddp(tmp_path_factory, scene) -> Path:
    """Every scenario trained by two ranks; returns the folder with their files."""
    base = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(2, free_port(), str(base), str(scene)), nprocs=2, join=True)
    return base


def load(base: Path, name: str, rank: int) -> dict:
    return torch.load(base / f"{name}-rank{rank}.pt", weights_only=True)


def assert_same(a: dict, b: dict) -> None:
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert torch.equal(a["logit"], b["logit"])


# ---------------------------------------------------------------------- training
def test_two_ranks_end_with_identical_weights_and_l(ddp):
    a, b = load(ddp, "plain", 0), load(ddp, "plain", 1)
    assert_same(a, b)  # parameters, l and (broadcast at the end) BatchNorm statistics
    assert a["logit"].item() != 0.0  # l was trained
    timing = {"minutes"}  # each rank times itself
    assert {k: v for k, v in a["summary"].items() if k not in timing} == \
        {k: v for k, v in b["summary"].items() if k not in timing}
    assert a["summary"]["processes"] == 2
    run = ddp / "plain"
    assert sorted(p.name for p in run.iterdir()) == PLAIN_RUN_FILES
    ckpt = load_checkpoint(run)
    assert not any(k.startswith("module.") for k in ckpt["model"])  # the unwrapped model's keys
    assert all(torch.equal(ckpt["model"][k], a["model"][k]) for k in a["model"])
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == list(range(1, 7))  # one writer: rank 0


def test_recon_mode_runs_with_a_frozen_weight(ddp):
    a, b = load(ddp, "recon", 0), load(ddp, "recon", 1)
    assert_same(a, b)
    assert a["logit"].item() == 0.0


def test_a_batch_smaller_than_the_ranks_keeps_them_in_step(ddp):
    a, b = load(ddp, "tail", 0), load(ddp, "tail", 1)  # rank 1 ran a zero-weight stand-in at step 4
    assert_same(a, b)
    assert a["summary"]["steps"] == 4 and a["summary"]["skipped_batches"] == 0


@pytest.mark.parametrize("case", list(SGD_CASES))
def test_sync_batchnorm_gradients_and_weights_equal_one_process_with_the_same_global_batch(ddp, case):
    steps, data = SGD_CASES[case]
    ref = sgd_steps(steps, **data)
    for rank in (0, 1):
        got = load(ddp, case, rank)
        assert got["grads"].keys() == ref["grads"].keys() and "generator.weight.logit" in ref["grads"]
        # Two processes sum each BatchNorm's statistics and each gradient in another order than
        # one: float32 sums of n ~ 10^3 terms then differ by ~sqrt(n) 2^-24 ~ 2e-6 of the size
        # of the terms (measured: 1.5e-7 on gradients of 4e-2, on AVX-512 and emulated AVX2).
        # The tolerances are 25 times that, relative to the gradients' overall size (a bias
        # before BatchNorm has a zero gradient made of terms of that size) and to each weight's
        # own size (at least 1), so they hold on any CPU, while a real error (a wrong
        # normalisation or gradient) is of the order of the values themselves.
        grad_scale = max(float(v.abs().max()) for v in ref["grads"].values())
        for key, value in ref["grads"].items():
            torch.testing.assert_close(got["grads"][key], value, rtol=0, atol=5e-5 * grad_scale, msg=key)
        for key, value in ref["model"].items():
            torch.testing.assert_close(got["model"][key], value, rtol=0, atol=5e-5 * scale(value), msg=key)
        torch.testing.assert_close(got["logit"], ref["logit"], rtol=0, atol=5e-5)


def scale(t: torch.Tensor) -> float:
    """The size of a weight's values, at least 1."""
    return max(float(t.abs().max()) if t.is_floating_point() else 1.0, 1.0)


def test_sync_batchnorm_adam_run_logs_the_single_process_losses(ddp, tmp_path):
    Trainer(tiny_cfg(**SCENARIOS["sync"][0]), noise_training_data(), tmp_path, progress=False).run()
    one = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    two = [json.loads(l) for l in (ddp / "sync" / "metrics.jsonl").read_text().splitlines()]
    assert len(one) == len(two) == 3
    for key in ("loss", "recon", "dist", "weight"):  # step 1: the same weights, the global batch's loss
        assert one[0][key] == pytest.approx(two[0][key], abs=1e-6), key
    for x, y in zip(one, two):  # later steps drift a little: Adam scales float noise in near-zero
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)  # gradients up to full-size steps


def test_batch_size_must_divide_among_ranks(ddp):
    messages = [torch.load(ddp / f"extra-rank{r}.pt", weights_only=False)["odd"] for r in (0, 1)]
    assert all("--batch-size" in m and "2 processes" in m for m, _ in messages)
    assert [quiet for _, quiet in messages] == [False, True]  # printed once, by rank 0


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_sets_the_forward_dtype_and_keeps_weights_fp32(precision, dtype, tmp_path):
    trainer = Trainer(tiny_cfg(**{"train.precision": precision, "train.steps": 2}), noise_training_data(), tmp_path,
                      progress=False)
    seen = set()
    conv = next(m for m in trainer.model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    summary = trainer.run()
    assert dtype in seen  # the convolutions really ran in the chosen precision (bf16: under autocast)
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 2 and all(np.isfinite(l["loss"]) for l in lines)
    assert all(p.dtype == torch.float32 for p in trainer.net.parameters())  # weights stay fp32


def test_checkpoint_of_two_ranks_resumes_in_one_process(ddp, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ddp / "plain", run)
    trainer = Trainer(tiny_cfg(**{"train.steps": 8}), noise_training_data(), run, progress=False)
    assert trainer.run(resume=True)["steps"] == 8


# ---------------------------------------------------------------------- scoring
def test_distributed_scoring_gives_exactly_the_single_process_scores(ddp, scene, tmp_path):
    from ddlvad.commands.evaluate import evaluate

    kept: dict = {}  # one thread, as the ranks (see one_thread): other thread counts sum in another order
    report = evaluate(ddp / "plain", scene, out=tmp_path / "e", cache_dir=str(tmp_path / "cache"),
                               plots=False, progress=False, log=lambda m: None, keep_scores=kept)
    for rank in (0, 1):
        got = torch.load(ddp / f"extra-rank{rank}.pt", weights_only=False)
        assert list(got["scores"]) == list(kept)  # same videos, same order, none twice
        for vid, (scores, _) in kept.items():
            np.testing.assert_array_equal(got["scores"][vid], scores)
        assert got["auc"] == report["auc_micro"] and got["processes"] == 2
    written = json.loads((ddp / "eval-2" / "report.json").read_text())
    assert written["frames_scored"] == report["frames_scored"] == 3 * (36 - 2)


# ---------------------------------------------------------------------- helpers, one process
def test_split_by_size_is_disjoint_and_balanced():
    sizes = [10, 3, 7, 7, 1, 12]
    bins = distributed.split_by_size(sizes, 3)
    assert sorted(i for b in bins for i in b) == list(range(6))
    # 12 -> bin 0, 10 -> bin 1, 7 -> bin 2, 7 -> bin 2, 3 -> bin 1, 1 -> bin 0
    assert bins == [[4, 5], [0, 1], [2, 3]] and [sum(sizes[i] for i in b) for b in bins] == [13, 13, 14]
    assert distributed.split_by_size([5], 3) == [[0], [], []]


def test_batch_slices_cover_the_batch_in_order():
    assert [list(distributed.batch_slice(5, 2, r)) for r in (0, 1)] == [[0, 1, 2], [3, 4]]
    assert [len(distributed.batch_slice(1, 3, r)) for r in range(3)] == [1, 0, 0]


def test_single_process_needs_no_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.session() as active:
        assert not active and distributed.world_size() == 1 and distributed.is_main()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(UserError, match="torchrun"):
        with distributed.session():
            pass


def test_global_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(3)
    glob = distributed._convert(nn.Sequential(nn.BatchNorm2d(3)), None)[0]
    assert isinstance(glob, distributed.GlobalBatchNorm2d)
    glob.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(glob(x), plain(x)) and torch.equal(glob.running_var, plain.running_var)


# ---------------------------------------------------------------------- per-scene jobs
def make_shanghaitech(root: Path) -> None:
    """Four scenes: 01 and 02 train (8 frames) and test (two labelled videos each); 03 has a
    2-frame training video, shorter than a window, so its training fails; 04 has training
    videos only (as ShanghaiTech's scene 13)."""
    for scene, frames in (("01", 8), ("02", 8), ("03", 2), ("04", 8)):
        write_video(root / "training" / "videos" / f"{scene}_001.avi", noise(frames, int(scene)))
    masks = root / "testing" / "test_frame_mask"
    masks.mkdir(parents=True)
    tests = {"01_0001": [0, 0, 1, 1, 1, 0], "01_0002": [0, 1, 1, 0, 0, 0], "02_0001": [0, 0, 0, 1, 1, 0],
             "02_0002": [0, 1, 0, 0, 1, 0], "03_0001": [0, 1, 1, 0]}
    for i, (vid, lab) in enumerate(tests.items()):
        write_frames(root / "testing" / "frames" / vid, noise(len(lab), 40 + i))
        np.save(masks / f"{vid}.npy", np.array(lab, np.int64))


def test_all_scenes_trains_one_run_per_scene_and_evaluates_them_together(tmp_path, capsys, monkeypatch):
    root, out, cache = tmp_path / "sh", tmp_path / "runs", tmp_path / "cache"
    make_shanghaitech(root)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code = main(["train", "--data", str(root), "--dataset", "shanghaitech", "--all-scenes", "--jobs", "2",
                 "--preset", "tiny", "--steps", "2", "--masks", "random", "--cache-dir", str(cache), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "1 of 4 scenes failed (03)" in err  # reported; the others went on
    assert "scenes 04: no test videos; trained but not evaluated" in err
    jobs = json.loads((out / "jobs.json").read_text())
    assert {s: r["returncode"] for s, r in jobs["scenes"].items()} == {"01": 0, "02": 0, "03": 2, "04": 0}
    assert jobs["not_evaluated"] == ["04"]
    assert "no training windows" in (out / "logs" / "scene-03.log").read_text()
    for scene in ("01", "02"):
        assert load_checkpoint(out / f"scene-{scene}")["config"]["data"]["scene"] == scene

    code = main(["evaluate", str(out), "--data", str(root), "--no-plots", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "eval" / "report.json").read_text())
    per_scene = {s: json.loads((out / f"scene-{s}" / "eval" / "report.json").read_text()) for s in ("01", "02")}
    assert set(per_scene["01"]["videos"]) == {"01_0001", "01_0002"}  # each model on its own scene
    assert report["scenes"] == {s: r["auc_micro"] for s, r in per_scene.items()}
    assert report["auc_scene_median"] == pytest.approx(np.median(list(report["scenes"].values())))
    assert report["auc_scene_mean"] == pytest.approx(np.mean(list(report["scenes"].values())))
    assert report["auc_micro_pooled"] is not None and report["missing"] == ["scene-03"]
    assert report["not_evaluated"] == ["04"] and "04" not in report["scenes"]
    assert report["frames_scored"] == 4 * (6 - 2)
    assert "scene AUC median" in captured.out


def test_scenes_without_test_videos_are_trained_or_skipped_as_asked(tmp_path):
    from ddlvad.commands.scenes import _plan, test_scenes
    from ddlvad.data.layouts import index_dataset

    root = tmp_path / "sh"
    make_shanghaitech(root)
    index = index_dataset(root, "shanghaitech", splits=("training",))
    assert test_scenes(root) == {"01", "02", "03"}
    said: list[str] = []
    assert _plan(index, test_scenes(root), "train", said.append) == (["01", "02", "03", "04"], ["04"])
    assert _plan(index, test_scenes(root), "skip", said.append) == (["01", "02", "03"], [])
    assert "skipped (--scenes-without-test skip)" in said[-1]


def test_all_scenes_refuses_other_datasets(scene, tmp_path, capsys):
    code = main(["train", "--data", str(scene), "--all-scenes", "--preset", "tiny", "--out", str(tmp_path / "r")])
    assert code == 2 and "ShanghaiTech" in capsys.readouterr().err


# ---------------------------------------------------------------------- the real entry point
def test_torchrun_train_and_evaluate_on_two_processes(scene, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    port = free_port()
    run, cache = tmp_path / "run", tmp_path / "cache"
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
              "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", "ddlvad"]
    done = subprocess.run(launch + ["train", "--data", str(scene), "--preset", "tiny", "--masks", "random",
                                    "--cache-dir", str(cache), "--out", str(run), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["processes"] == 2  # printed once, by rank 0
    done = subprocess.run(launch + ["evaluate", str(run), "--data", str(scene), "--cache-dir", str(cache),
                                    "--no-plots", "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "eval" / "report.json").read_text())["processes"] == 2
    assert done.stdout.count("AUC micro") == 1
