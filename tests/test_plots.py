"""Figures (structure, PNG output) and the self-contained HTML report."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from ddlvad.config import get_protocol
from ddlvad.metrics import frame_metrics, pooled
from ddlvad.plots import (
    abnormal_spans,
    loss_figure,
    png_bytes,
    roc_figure,
    save_figure,
    score_figure,
    weight_figure,
)
from ddlvad.report_html import render_report

NAN = np.nan


@pytest.fixture(scope="module")
def videos():
    rng = np.random.default_rng(0)
    out = {}
    for vid, n in [("01", 40), ("<b>02&", 30)]:
        labels = np.zeros(n, np.uint8)
        labels[10:18] = 1
        scores = rng.random(n) + labels
        scores[[0, -1]] = NAN  # edge frames of T=3
        out[vid] = (scores, labels)
    return out


def test_abnormal_spans():
    assert abnormal_spans(np.array([1, 1, 0, 0, 1, 0, 1])) == [(0, 2), (4, 5), (6, 7)]
    assert abnormal_spans(np.zeros(4)) == []


def test_score_figure_lines_and_spans(videos):
    scores, labels = videos["01"]
    smoothed = pooled(videos, get_protocol("paper", window=3)).smoothed["01"]
    fig = score_figure("01", scores, smoothed, labels, threshold=0.7)
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # raw, smoothed, threshold
    assert len(ax.patches) == 1  # one abnormal run, frames 10..17
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), scores)
    bare = score_figure("x", scores, None, None)
    assert len(bare.axes[0].lines) == 1 and len(bare.axes[0].patches) == 0


def test_roc_weight_loss_figures():
    labels = np.array([0, 0, 1, 1])
    roc = roc_figure(np.array([0.1, 0.4, 0.35, 0.8]), labels, 0.75)
    assert len(roc.axes) == 1 and len(roc.axes[0].lines) == 2
    assert "75.00" in roc.axes[0].get_title()
    one_class = roc_figure(np.ones(3), np.zeros(3), None)
    assert len(one_class.axes[0].lines) == 1 and one_class.axes[0].get_title() == "ROC"

    w = weight_figure([0, 10, 20], [0.5, 0.6, 0.66])
    assert len(w.axes) == 1 and len(w.axes[0].lines) == 2 and w.axes[0].get_ylim() == (0, 1)

    loss = loss_figure([0, 1, 2], {"total": [1.0, 0.5, 0.3], "recon": [0.1, 0.05, 0.02]})
    assert len(loss.axes[0].lines) == 2 and loss.axes[0].get_yscale() == "log"
    signed = loss_figure([0, 1], {"distinction": [-0.1, 0.2]})
    assert signed.axes[0].get_yscale() == "linear"
    with pytest.raises(ValueError, match="one value per step"):
        loss_figure([0, 1, 2], {"total": [1.0]})


def test_save_figure_writes_png(tmp_path):
    path = save_figure(weight_figure([0, 1], [0.5, 0.7]), tmp_path / "sub" / "s.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert png_bytes(weight_figure([0, 1], [0.5, 0.7])).startswith(b"\x89PNG")


def _report_page(videos, tmp_path) -> tuple[str, dict]:
    protocol = get_protocol("paper", window=3)
    report = frame_metrics(videos, protocol)
    pool = pooled(videos, protocol)
    roc_path = save_figure(roc_figure(pool.scores, pool.labels, report["auc_micro"]), tmp_path / "roc.png")
    images = {
        "roc": str(roc_path),  # a path
        "01": png_bytes(score_figure("01", videos["01"][0], pool.smoothed["01"], videos["01"][1])),  # bytes
        "weight": "data:image/png;base64,"
        + base64.b64encode(png_bytes(weight_figure([0, 1], [0.5, 0.6]))).decode(),  # data URI
    }
    title = 'DDL <Ped2> & "tiny"'
    return render_report(report, images, title), report


def test_html_embeds_images_and_escapes_text(videos, tmp_path):
    page, report = _report_page(videos, tmp_path)
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 3 and all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)
    assert "<title>DDL &lt;Ped2&gt; &amp; &quot;tiny&quot;</title>" in page
    assert "<Ped2>" not in page and "<b>02&" not in page and "&lt;b&gt;02&amp;" in page
    assert f"{100 * report['auc_micro']:.2f} %" in page
    assert 'id="video-01"' in page and 'id="protocol"' in page and "window" in page
    # offline: nothing is fetched
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page and "@import" not in page


def test_html_without_labels_and_with_scenes():
    report = frame_metrics({"v": (np.array([NAN, 1.0, 2.0, NAN]), None)}, get_protocol("raw"))
    report["scenes"] = {"scenes": {"01": 0.7, "02": None}, "auc_scene_median": 0.7,
                        "auc_scene_mean": 0.7, "n_scenes": 1, "auc_micro_pooled": 0.65}
    page = render_report(report, {}, "no labels")
    assert "No ground-truth labels" in page and "n/a" in page and "<img" not in page
    assert "median of scene AUCs" in page and "70.00 %" in page and "65.00 %" in page
    with pytest.raises(ValueError, match="not a PNG"):
        render_report(report, {"x": b"GIF89a"}, "t")


def test_modules_do_not_import_torch():
    code = "import sys, ddlvad.metrics, ddlvad.plots, ddlvad.report_html; print('torch' in sys.modules)"
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="headless Chromium not installed")
def test_html_opens_in_headless_chromium(videos, tmp_path):
    page, _ = _report_page(videos, tmp_path)
    html_path = tmp_path / "report.html"
    html_path.write_text(page, encoding="utf-8")
    cmd = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", html_path.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert "<title>DDL &lt;Ped2&gt; &amp; \"tiny\"</title>" in dom
    assert "<h1>DDL &lt;Ped2&gt; &amp; \"tiny\"</h1>" in dom
    assert dom.count("<img ") == 3 and 'id="summary"' in dom
