"""Shared fixtures. Data fixtures (prefix ``data_``) write tiny datasets in each real on-disk
layout (see data_tiny.py) or point at the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_tiny import MAKERS, TinyDataset


@pytest.fixture(scope="session")
def data_tiny(tmp_path_factory) -> dict[str, TinyDataset]:
    """Every tiny dataset, written once per session. Tests must not modify them (copy first)."""
    base = tmp_path_factory.mktemp("datasets")
    out = {}
    for name, make in MAKERS.items():
        root = base / name
        root.mkdir()
        out[name] = make(root)
    return out


@pytest.fixture(scope="session")
def data_shared() -> Path:
    """The read-only real data folder (``$DDLVAD_SHARED_DATA`` or ``../shared/data`` beside the
    checkout); tests using it are skipped when it is absent."""
    env = os.environ.get("DDLVAD_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set DDLVAD_SHARED_DATA)")
    return path


@pytest.fixture
def data_cache(tmp_path, monkeypatch) -> Path:
    """A private frame cache for one test (also exported as DDLVAD_CACHE)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DDLVAD_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Path:
    """A small synthetic scene in the ``folder`` layout (2 training, 3 testing videos of
    36 frames: normal, cyclist, vehicle), written once per session; do not modify."""
    from ddlvad.data.synthetic import SceneSpec, synthesize

    root = tmp_path_factory.mktemp("scene") / "scene"
    synthesize(root, seed=3, spec=SceneSpec(train_videos=2, test_videos=3, frames=36))
    return root


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, scene) -> tuple[Path, Path]:
    """``ddlvad train`` (tiny preset, 60 steps) on :func:`scene`, once per session: ``(run, cache)``.
    The ground-truth tracks that ``ddlvad synth`` writes serve as the pseudo-anomaly boxes. Do not
    modify the run (copy it first)."""
    from ddlvad.cli import main

    base = tmp_path_factory.mktemp("tiny-run")
    cache, run = base / "cache", base / "run"
    assert main(["train", "--data", str(scene), "--preset", "tiny", "--steps", "60", "--lr", "0.01",
                 "--out", str(run), "--cache-dir", str(cache), "--quiet"]) == 0
    return run, cache


@pytest.fixture
def cli(capfd):
    """Run ``ddlvad ARGS...`` in-process: ``cli(*args) -> (exit code, stdout, stderr)``."""
    from ddlvad.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out = capfd.readouterr()
        return code, out.out, out.err

    return run


def pytest_collection_modifyitems(config, items):
    """The engine tests run last: once OpenVINO's runtime is loaded into the test process, a later
    test that trains, raises SIGINT and resumes (test_progressive) crashed the process (a
    segmentation fault, only in one process with both; `ddlvad watch` with OpenVINO stops cleanly on
    SIGINT and SIGTERM). The order keeps every test meaningful; the watch tests, which may pick
    OpenVINO too, come last alphabetically already."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_engines.py"))
