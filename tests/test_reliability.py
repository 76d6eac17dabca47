"""Reliability: exact resume after SIGKILL, Ctrl-C, safe loading, disk full, NaN guard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddlvad import UserError
from ddlvad.checkpoint import load_checkpoint
from ddlvad.cli import main

TINY = ["--preset", "tiny", "--set", "train.checkpoint_every=4", "--quiet"]


def train_cmd(scene, out, cache, *extra):
    return [sys.executable, "-m", "ddlvad", "train", "--data", str(scene), "--out", str(out),
            "--cache-dir", str(cache), *extra]


def last_step(run: Path) -> int:
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


def wait_for_step(proc, run, step, timeout=120):
    t0 = time.time()
    while last_step(run) < step:
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


@pytest.fixture(scope="module")
def tracked(scene, tmp_path_factory):
    cache = tmp_path_factory.mktemp("rel") / "cache"
    assert main(["track", str(scene), "--cache-dir", str(cache), "--quiet"]) == 0
    return cache


def test_sigkill_then_resume_ends_bit_for_bit_like_an_uninterrupted_run(scene, tracked, tmp_path):
    steps = ["--steps", "30"]
    full = tmp_path / "full"
    subprocess.run(train_cmd(scene, full, tracked, *TINY, *steps), check=True, capture_output=True)
    part = tmp_path / "part"
    proc = subprocess.Popen(train_cmd(scene, part, tracked, *TINY, *steps), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    wait_for_step(proc, part, 10)  # mid-epoch, past the checkpoint at step 8
    proc.kill()
    proc.wait()
    assert load_checkpoint(part)["step"] < 30
    res = subprocess.run(train_cmd(scene, part, tracked, "--resume", "--quiet"), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["step"] == b["step"] == 30
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["anomaly_logit"], b["anomaly_logit"])
    steps_logged = [json.loads(l)["step"] for l in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(1, 31))  # no duplicate or missing lines after the resume


def test_ctrl_c_writes_a_clean_checkpoint_and_exits_130(scene, tracked, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(scene, run, tracked, *TINY, "--steps", "400"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, run, 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err and "--resume" in err.strip().splitlines()[-1]
    ckpt = load_checkpoint(run)
    assert 3 <= ckpt["step"] < 400 and ckpt["step"] == last_step(run)


class Payload:
    """Unpickling runs ``touch <marker>``: proof that pickle code was executed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "payload-ran"
    run = tmp_path / "evil"
    run.mkdir()
    torch.save({"model": {}, "config": {}, "x": Payload(marker)}, run / "checkpoint.pt")
    with pytest.raises(UserError, match="refusing"):
        load_checkpoint(run)
    assert main(["evaluate", str(run), "--data", str(tmp_path)]) == 2
    assert "refusing" in capsys.readouterr().err
    assert not marker.exists()


def test_disk_full_while_saving_keeps_the_previous_checkpoint(scene, tracked, tmp_path, monkeypatch, capsys):
    import ddlvad.files as ck

    run = tmp_path / "run"
    calls = {"n": 0}
    real_fsync = os.fsync

    def failing_fsync(fd):
        calls["n"] += 1
        if (run / "checkpoint.pt").exists():  # the first checkpoint is written, the next write hits a full disk
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(ck.os, "fsync", failing_fsync)
    code = main(["train", "--data", str(scene), "--out", str(run), "--cache-dir", str(tracked), *TINY, "--steps", "12"])
    err = capsys.readouterr().err
    errors = [l for l in err.splitlines() if l.startswith("ddlvad: error:")]
    assert code == 2 and len(errors) == 1 and "No space left" in errors[0] and "Traceback" not in err
    monkeypatch.setattr(ck.os, "fsync", real_fsync)
    assert load_checkpoint(run)["step"] == 4
    assert not list(run.glob("*.tmp"))


def test_non_finite_loss_stops_with_step_and_parts(scene, tracked, tmp_path, monkeypatch, capsys):
    import ddlvad.trainer as tr

    real = tr.ddl_loss

    def poisoned(*a, **k):
        parts = real(*a, **k)
        if poisoned.calls == 5:
            parts.total = parts.total * float("nan")
        poisoned.calls += 1
        return parts

    poisoned.calls = 0
    monkeypatch.setattr(tr, "ddl_loss", poisoned)
    run = tmp_path / "run"
    code = main(["train", "--data", str(scene), "--out", str(run), "--cache-dir", str(tracked), *TINY, "--steps", "12"])
    err = capsys.readouterr().err
    assert code == 2 and "non-finite loss at step 5" in err and "recon" in err
    ckpt = load_checkpoint(run)
    assert ckpt["step"] == 5 and all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_resume_with_another_model_size_is_refused(scene, tracked, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(scene), "--out", str(run), "--cache-dir", str(tracked), *TINY, "--steps", "4"]) == 0
    before = (run / "checkpoint.pt").read_bytes()
    code = main(["train", "--data", str(scene), "--out", str(run), "--cache-dir", str(tracked), "--resume",
                 "--set", "model.latent=32", "--steps", "8", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "model.latent" in err
    assert (run / "checkpoint.pt").read_bytes() == before


def test_unwritable_out_directory(scene, tracked, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["train", "--data", str(scene), "--out", str(blocker / "run"), "--cache-dir", str(tracked), *TINY])
    assert code == 2 and "cannot write" in capsys.readouterr().err
