"""The command line end to end on a tiny synthetic scene, and its one-line errors."""

import csv
import json
import shutil

import numpy as np
import pytest

from ddlvad.cli import main
from fixtures import PLAIN_RUN_FILES


@pytest.fixture(scope="module")
def trained(tmp_path_factory, scene):
    """track -> train (tiny) on the synthetic scene; returns (run, cache)."""
    base = tmp_path_factory.mktemp("cli")
    cache, run = base / "cache", base / "run"
    assert main(["track", str(scene), "--cache-dir", str(cache), "--quiet"]) == 0
    assert main(["train", "--data", str(scene), "--preset", "tiny", "--out", str(run),
                 "--cache-dir", str(cache), "--quiet"]) == 0
    return run, cache


def test_train_writes_exactly_its_files(trained):
    run, _ = trained
    assert sorted(p.name for p in run.iterdir()) == PLAIN_RUN_FILES
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 6 and 0 < summary["anomaly_weight"] < 1
    assert summary["threshold"]["value"] > 0


def test_evaluate_writes_every_promised_file(trained, scene, cli):
    run, cache = trained
    code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet")
    assert code == 0, err
    ev = run / "eval"
    assert {p.name for p in ev.iterdir()} == {"report.json", "scores.csv", "plots", "report.html"}
    assert {p.name for p in (ev / "plots").iterdir()} == {"roc.png", "localisation.png", "video_01.png", "video_02.png",
                                                       "video_03.png"}
    report = json.loads((ev / "report.json").read_text())
    for key in ("auc_micro", "auc_macro", "eer", "ap", "frames_scored", "videos", "protocol"):
        assert key in report
    assert report["protocol"]["window"] == 17 and report["protocol"]["smoothing"] == "median"
    assert report["protocol"]["patch"] == 8  # the tiny preset's patch, recorded
    assert report["frames_scored"] == 3 * (36 - 2)
    rows = list(csv.DictReader(open(ev / "scores.csv")))
    assert len(rows) == 3 * 36 and set(rows[0]) == {"video", "frame", "score", "smoothed", "label"}
    assert rows[0]["score"] == "" and rows[1]["score"] != ""  # edge frame without a score
    assert "AUC micro" in out


def test_raw_protocol_and_gaussian_switch(trained, scene, cli, tmp_path):
    run, cache = trained
    code, _, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet",
                           "--protocol", "raw", "--normalise", "minmax", "--out", tmp_path / "e", "--no-plots")
    assert code == 0, err
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["protocol"]["smoothing"] == "none" and report["protocol"]["normalise"] == "minmax"
    assert report["protocol"]["flip"] is False


def test_flip_is_a_protocol_choice_written_into_the_report(trained, scene, cli, tmp_path):
    run, cache = trained
    reports = {}
    for name, extra in (("plain", ()), ("flip", ("--flip",))):
        code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet", "--protocol", "raw",
                             "--out", tmp_path / name, "--no-plots", *extra)
        assert code == 0, err
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["flip"]["protocol"]["flip"] is True and "beyond the paper" in out
    plain, flipped = (np.array([r["score"] for r in csv.DictReader(open(tmp_path / n / "scores.csv")) if r["score"]],
                               dtype=float) for n in ("plain", "flip"))
    assert plain.shape == flipped.shape and not np.allclose(plain, flipped)


def test_scale_scores_frames_decoded_at_the_larger_size_and_says_so(trained, scene, cli, tmp_path):
    """`--scale 2` scores the tiny model's 32x48 frames at 64x96: the scores are those of the
    Scorer on the test videos decoded at 64x96, and the report records the choice."""
    from ddlvad.checkpoint import load_model
    from ddlvad.data.frames import FrameSpec, FrameStore
    from ddlvad.data.layouts import index_dataset
    from ddlvad.score import Scorer

    run, cache = trained
    code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet", "--protocol", "raw",
                         "--scale", "2", "--out", tmp_path / "e", "--no-plots")
    assert code == 0, err
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["protocol"]["scale"] == 2.0 and "scale=2 (beyond the paper)" in out
    assert report["model"]["size"] == [32, 48] and report["model"]["scored_size"] == [64, 96]
    rows = [r for r in csv.DictReader(open(tmp_path / "e" / "scores.csv")) if r["score"]]
    model, cfg, _ = load_model(run)
    store = FrameStore(index_dataset(scene).testing, FrameSpec(64, 96, cfg.data.channels), cache)
    expected = np.concatenate([Scorer(model, cfg.score).score_video(np.asarray(a))[1:-1] for a in store.arrays])
    np.testing.assert_allclose(np.array([float(r["score"]) for r in rows]), expected, rtol=1e-4)
    plain = np.concatenate([Scorer(model, cfg.score).score_video(np.asarray(a))[1:-1]
                            for a in FrameStore(index_dataset(scene).testing, FrameSpec(32, 48, 1), cache).arrays])
    assert not np.allclose(plain, expected, rtol=1e-2)


@pytest.mark.parametrize("scale", ["0", "5", "nan"])
def test_a_scale_out_of_range_is_one_line_and_exit_2(scale, trained, scene, cli, tmp_path):
    run, cache = trained
    code, _, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--scale", scale,
                       "--out", tmp_path / "e")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--scale" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("validation", [[], ["--set", "train.val_fraction=0.2"]], ids=["plain", "validated"])
def test_a_run_trained_with_a_scale_calibrates_detects_and_exports_at_that_size(validation, scene, cli, tmp_path):
    """`score.scale=2` at training: the stored threshold comes from the training frames at
    64x96 (also when frames are held out for validation), `ddlvad evaluate` and the detector
    score at 64x96, and an export takes 64x96 clips."""
    from ddlvad import AnomalyDetector
    from ddlvad.checkpoint import load_model
    from ddlvad.data.frames import FrameSpec, FrameStore
    from ddlvad.data.layouts import index_dataset
    from ddlvad.exporter import export_metadata
    from ddlvad.score import Scorer, calibrate_thresholds

    run, cache = tmp_path / "run", tmp_path / "cache"
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--out", run, "--cache-dir", cache,
                       "--set", "score.scale=2", *validation, "--quiet")
    assert code == 0, err
    model, cfg, ckpt = load_model(run)
    training = index_dataset(scene, splits=("training",)).training
    at = {size: calibrate_thresholds(Scorer(model, cfg.score),
                                     FrameStore(training, FrameSpec(*size, 1), cache).arrays)["value"]
          for size in ((64, 96), (32, 48))}
    assert ckpt["threshold"]["value"] == pytest.approx(at[64, 96], rel=1e-4)
    assert at[32, 48] != pytest.approx(at[64, 96], rel=1e-2)
    detector = AnomalyDetector.load(run)
    assert (detector.spec.height, detector.spec.width) == (64, 96)
    meta = export_metadata(cfg, ckpt)
    assert (meta["height"], meta["width"], meta["trained_size"], meta["scale"]) == (64, 96, [32, 48], 2.0)
    code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet", "--no-plots",
                         "--out", tmp_path / "e")
    assert code == 0 and "scale=2 (beyond the paper)" in out, err
    assert json.loads((tmp_path / "e" / "report.json").read_text())["model"]["scored_size"] == [64, 96]


def test_data_info_json(scene, cli):
    code, out, _ = cli("data", "info", scene, "--json")
    info = json.loads(out)
    assert code == 0 and info["dataset"] == "folder"
    assert info["training"] == {"videos": 2, "frames": 72}
    assert info["testing"]["videos"] == 3 and info["testing"]["frames"] == 108
    assert info["testing"]["abnormal_frames"] == sum(int(np.load(p).sum()) for p in (scene / "testing" / "labels").glob("*.npy"))


def test_config_show_round_trips(cli, tmp_path):
    code, out, _ = cli("config", "--preset", "paper", "--mode", "sdl")
    assert code == 0
    (tmp_path / "c.yaml").write_text(out)
    from ddlvad import Config

    cfg = Config.from_yaml(tmp_path / "c.yaml")
    assert cfg.ddl.mode == "sdl" and cfg.model.latent == 512


@pytest.mark.parametrize("args,needle", [
    (["train", "--data", "{scene}", "--preset", "huge"], "--preset"),
    (["train", "--data", "{scene}", "--set", "train.lrr=1"], "train.lr"),
    (["train", "--data", "{scene}", "--frames", "4"], "odd"),
    (["train", "--data", "{scene}", "--frames", "0"], "odd"),
    (["train", "--data", "{scene}", "--set", "data.height=40"], "multiple of 16"),
    (["train", "--data", "{scene}", "--set", "score.scale=0.1"], "score.scale"),
    (["train", "--data", "{scene}", "--epochs", "-1"], "epochs"),
    (["train", "--data", "{scene}", "--batch-size", "0"], "batch_size"),
    (["train", "--data", "/nonexistent/x", "--preset", "tiny", "--out", "{tmp}/r"], "/nonexistent/x"),
    (["train", "--data", "{scene}", "--dataset", "ucf", "--preset", "tiny", "--out", "{tmp}/r"], "ucf"),
    (["evaluate", "{tmp}", "--data", "{scene}"], "checkpoint"),
    (["data", "info", "/nonexistent/y"], "/nonexistent/y"),
    (["frobnicate"], "invalid choice"),
    (["train", "--data", "{scene}", "--preset", "tiny", "--config", "{tmp}/c.yaml"], "--preset tiny and --config"),
    (["config", "--preset", "tiny", "--config", "{tmp}/c.yaml"], "give one"),
    (["track", "{scene}", "--object-detector", "yolo"], "--object-detector"),
    (["track", "{scene}", "--classes", "person"], "objects.classes"),
    (["evaluate", "{tmp}", "--data", "{scene}", "--protocol", "median"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, scene, tmp_path, cli):
    args = [a.replace("{scene}", str(scene)).replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddlvad: error:") and needle in lines[0], err
    assert "Traceback" not in err


def test_existing_run_is_not_overwritten(trained, scene, cli):
    run, cache = trained
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--out", run, "--cache-dir", cache)
    assert code == 2 and "--resume" in err and "--force" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def copy_scene(scene, dest):
    import shutil

    shutil.copytree(scene, dest)
    return dest


@pytest.fixture
def scene_copy(scene, tmp_path):
    return copy_scene(scene, tmp_path / "scene")


@pytest.mark.parametrize("damage,needle", [
    ("corrupt_image", "005.jpg"),
    ("label_length", "labels"),
    ("empty_video", "02"),
    ("no_training", "training"),
])
def test_bad_dataset_through_the_cli(scene_copy, tmp_path, cli, damage, needle):
    cache = tmp_path / "cache"
    if damage == "corrupt_image":
        (scene_copy / "training" / "frames" / "01" / "005.jpg").write_bytes(b"not a jpeg")
        args = ["train", "--data", scene_copy, "--preset", "tiny", "--out", tmp_path / "r", "--cache-dir", cache,
                "--mode", "recon"]
    elif damage == "label_length":
        np.save(scene_copy / "testing" / "labels" / "02.npy", np.zeros(5, np.uint8))
        args = ["data", "info", scene_copy]
    elif damage == "empty_video":
        for f in (scene_copy / "testing" / "frames" / "02").iterdir():
            f.unlink()
        args = ["data", "info", scene_copy]
    else:
        import shutil

        shutil.rmtree(scene_copy / "training")
        args = ["train", "--data", scene_copy, "--preset", "tiny", "--out", tmp_path / "r", "--cache-dir", cache]
    code, _, err = cli(*args)
    errors = [l for l in err.splitlines() if l.startswith("ddlvad: error:")]
    assert code == 2 and len(errors) == 1 and needle in errors[0], err
    assert "Traceback" not in err


def test_corrupt_checkpoint_is_a_clear_error(trained, scene, tmp_path, cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes((trained[0] / "checkpoint.pt").read_bytes()[:1000])  # truncated
    code, _, err = cli("evaluate", run, "--data", scene)
    assert code == 2 and "not a readable checkpoint" in err


def test_tracks_made_for_other_frame_counts_are_refused(trained, scene, tmp_path, cli):
    from ddlvad.data.tracks import Tracks

    bad = Tracks()
    bad.add("01", 99, np.zeros((0, 7)))
    bad.add("02", 36, np.zeros((0, 7)))
    bad.save(tmp_path / "t.npz")
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--out", tmp_path / "r",
                           "--cache-dir", trained[1], "--tracks", tmp_path / "t.npz", "--quiet")
    assert code == 2 and "99" in err and "01" in err


def test_test_split_without_labels_is_scored_without_auc(trained, scene_copy, cli):
    import shutil

    shutil.rmtree(scene_copy / "testing" / "labels")
    run, cache = trained
    out = scene_copy.parent / "eval"
    code, _, err = cli("evaluate", run, "--data", scene_copy, "--cache-dir", cache, "--out", out, "--quiet")
    assert code == 0 and "no labels" in err
    report = json.loads((out / "report.json").read_text())
    assert report["auc_micro"] is None and report["labels_available"] is False
    assert report["frames_scored"] == 3 * 34


def test_train_runs_tracking_first_when_no_tracks_exist(scene_copy, tmp_path, cli):
    (scene_copy / "training" / "tracks.npz").unlink()  # no ground-truth boxes, empty cache
    code, _, err = cli("train", "--data", scene_copy, "--preset", "tiny", "--steps", "2",
                           "--out", tmp_path / "r", "--cache-dir", tmp_path / "cache", "--quiet")
    assert code == 0, err
    assert "running detection and tracking first" in err
    assert list((tmp_path / "cache" / "tracks").glob("*-training.npz"))


def test_track_preview_and_reference_json_import(scene, tmp_path, cli):
    code, out, err = cli("track", scene, "--cache-dir", tmp_path / "c", "--preview", tmp_path / "p", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["training_01.png", "training_02.png"]
    ref = {f"/home/author/data/scene/training/frames/{v}/{f:03d}.jpg": {"1": [0.1, 0.2, 0.3, 0.5]}
           for v in ("01", "02") for f in range(36)}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    code, out, err = cli("track", scene, "--cache-dir", tmp_path / "c", "--import-json", tmp_path / "ref.json")
    assert code == 0, err
    assert "imported 72 boxes" in out


def test_the_reference_loss_at_a_small_latent_width_is_warned_about(trained, scene, tmp_path, cli):
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--steps", "1", "--set", "ddl.loss_form=pixel",
                       "--set", "ddl.eps=1e-6", "--out", tmp_path / "r", "--cache-dir", trained[1], "--quiet")
    assert code == 0, err
    assert "warning: ddl.loss_form=pixel with ddl.eps=1e-06" in err and "model.latent=16" in err
    code, _, err = cli("train", "--data", scene, "--preset", "tiny", "--steps", "1", "--out", tmp_path / "n",
                       "--cache-dir", trained[1], "--quiet")
    assert code == 0 and "warning" not in err


def test_evaluate_reports_pixel_level_metrics_where_masks_exist(trained, scene, cli, tmp_path):
    run, cache = trained
    code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet", "--out", tmp_path / "e")
    assert code == 0, err
    loc = json.loads((tmp_path / "e" / "report.json").read_text())["localisation"]
    assert loc["frames"] == 3 * 34 and loc["abnormal_frames"] > 0 and loc["regions"] > 0 and loc["tracks"] > 0
    for key in ("pixel_auc", "rbdc", "tbdc"):
        assert 0 <= loc[key] <= 1
    assert {"map", "pixel_auc", "rbdc_tbdc", "regions", "edge_frames", "masks", "levels"} <= set(loc["protocol"])
    assert loc["rbdc_frames"] == loc["frames"]
    # no annotated tracks: the report says the tracks are ours, not the published criteria's
    assert loc["protocol"]["track_source"] == "pixel masks" and loc["protocol"]["annotations"] is None
    not_comparable = "tracks come from pixel masks (connected components linked by overlap): not comparable to " \
                     "published RBDC/TBDC"
    assert loc["protocol"]["tracks"] == not_comparable
    assert (tmp_path / "e" / "plots" / "localisation.png").is_file()
    page = (tmp_path / "e" / "report.html").read_text()
    assert "RBDC" in page and f'<p class="warn">RBDC/TBDC: {not_comparable}.</p>' in page
    assert "localisation: pixel AUC" in out and "pixel-mask (not comparable to published RBDC/TBDC) tracks" in out


def _annotate_scene(scene, folder):
    """Track annotation files for the synthetic scene's test videos, from its masks: one track per
    anomalous video (explicit ids 7 and 3), the box of each frame's mask in the published format
    (0-based frames, inclusive corners). Video 01 (normal) gets no file. Returns the boxes per video."""
    import cv2

    folder.mkdir()
    written = {}
    for vid, track in (("02", 7), ("03", 3)):
        lines = []
        for f, path in enumerate(sorted((scene / "testing" / "masks" / vid).glob("*.png"))):
            ys, xs = np.nonzero(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
            if len(xs):
                lines.append(f"{track},{f},{xs.min()},{ys.min()},{xs.max()},{ys.max()}")
        (folder / f"{vid}.txt").write_text("\n".join(lines) + "\n")
        written[vid] = lines
    return written


def test_evaluate_with_annotated_tracks(trained, scene, cli, tmp_path):
    run, cache = trained
    written = _annotate_scene(scene, tmp_path / "tracks")
    code, out, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet", "--out", tmp_path / "e",
                         "--gt-tracks", tmp_path / "tracks")
    assert code == 0, err
    loc = json.loads((tmp_path / "e" / "report.json").read_text())["localisation"]
    p = loc["protocol"]
    assert p["track_source"] == "annotations" and p["annotations"] == str(tmp_path / "tracks")
    assert str(tmp_path / "tracks") in p["tracks"] and "not comparable" not in p["tracks"]
    # every scored frame counts (36 - 2 edge frames per video, video 01 without a file too); the boxes
    # of the edge frames 0 and 35 are dropped with them
    scored = [line for lines in written.values() for line in lines if 1 <= int(line.split(",")[1]) <= 34]
    assert (loc["rbdc_frames"], loc["frames"], loc["tracks"], loc["regions"]) == (3 * 34, 3 * 34, 2, len(scored))
    for key in ("pixel_auc", "rbdc", "tbdc"):
        assert 0 <= loc[key] <= 1
    assert "2 annotated tracks" in out
    page = (tmp_path / "e" / "report.html").read_text()
    assert '<th scope="row">tracks from</th><td class="num">annotated tracks</td>' in page
    assert str(tmp_path / "tracks") in page and "not comparable" not in page
    # the bad folder: one line naming the file and the line, exit 2, before any scoring
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "tracks", bad)
    with open(bad / "03.txt", "a") as f:
        f.write("3,20,5,5,4,9\n")
    code, _, err = cli("evaluate", run, "--data", scene, "--cache-dir", cache, "--quiet", "--out", tmp_path / "b",
                       "--gt-tracks", bad)
    n = len(written["03"]) + 1
    assert code == 2 and err.count("\n") == 1
    assert f"track annotation file {bad / '03.txt'} line {n}: x_max 4 < x_min 5" in err
    assert not (tmp_path / "b").exists()
    code, _, err = cli("evaluate", run, "--data", scene, "--quiet", "--gt-tracks", tmp_path / "absent")
    assert code == 2 and err.count("\n") == 1 and f"--gt-tracks {tmp_path / 'absent'}: does not exist" in err

