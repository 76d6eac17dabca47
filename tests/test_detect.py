"""Detection on new videos: the streaming detector, `ddlvad detect`, `ddlvad export`.

One tiny model is trained on the synthetic scene (60 steps at lr 0.01: enough for the
vehicle of test video 03 and the cyclist of 02 to stand out; 6 steps are not).
"""

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
import torch

from ddlvad import AnomalyDetector, UserError
from ddlvad.checkpoint import load_checkpoint
from ddlvad.config import EventRules, ScoreConfig
from ddlvad.data.frames import FrameStore
from ddlvad.data.layouts import index_dataset
from ddlvad.data.tracks import Tracks
from ddlvad.loss import pixel_error
from ddlvad.overlay import STRIP
from ddlvad.score import frame_scores, score_video, to_tensor, worst_patches
from ddlvad.stream import EventTracker, FrameResult


@pytest.fixture(scope="module")
def trained(tiny_run):
    """The session's tiny run (conftest.py): ``(run, cache)``."""
    return tiny_run


@pytest.fixture(scope="module")
def detector(trained):
    return AnomalyDetector.load(trained[0])


@pytest.fixture(scope="module")
def videos(trained, scene, detector):
    """Test videos decoded in the model's spec: {id: (frames (36, 32, 48, 1) uint8, labels)}."""
    store = FrameStore(index_dataset(scene).testing, detector.spec, trained[1])
    return {r.video_id: (np.asarray(a), r.labels) for r, a in zip(store.videos, store.arrays)}


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def source_images(scene, video):
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((scene / "testing" / "frames" / video).iterdir())]


# ---------------------------------------------------------------------- scores: equivalent paths
def test_detector_score_equals_score_video_on_converted_and_raw_frames(detector, videos, scene):
    frames = videos["03"][0]
    sc = detector.cfg.score
    reference = score_video(detector.model, frames, sc)
    np.testing.assert_array_equal(detector.score(frames), reference)
    # raw 240x160 frames as OpenCV reads them: converted exactly like the training frames
    np.testing.assert_array_equal(detector.score(source_images(scene, "03")), reference)
    assert np.isnan(reference[[0, -1]]).all() and np.isfinite(reference[1:-1]).all()


@pytest.mark.parametrize("batch", [1, 4])
def test_stream_over_an_iterator_matches_score_with_a_bounded_buffer(detector, videos, batch):
    frames = videos["02"][0]
    pulled = 0

    def arriving():
        nonlocal pulled
        for frame in frames:
            pulled += 1
            yield frame

    T = detector.frames
    results = []
    for r in detector.stream(arriving(), fps=10, batch_size=batch):
        # a frame's result comes as soon as its window and batch are complete: never more
        # than batch + T - 1 frames are read ahead of it, so no more are held
        assert pulled - r.frame <= batch + T - 1
        results.append(r)
    assert [r.frame for r in results] == list(range(len(frames)))
    np.testing.assert_allclose([r.time for r in results], np.arange(len(frames)) / 10)
    np.testing.assert_allclose([r.score for r in results], detector.score(frames), rtol=1e-5, atol=1e-7)
    for r in (results[0], results[-1]):  # edge frames: no window
        assert np.isnan(r.score) and r.error_map is None and r.box is None and not r.anomalous
    mid = results[len(frames) // 2]
    assert mid.error_map.shape == (32, 48) and mid.error_map.dtype == np.float32
    assert mid.score == pytest.approx(float(frame_scores(torch.from_numpy(mid.error_map)[None], ScoreConfig(patch=8))), rel=1e-6)


def test_folder_and_lossless_video_file_give_identical_scores(detector, scene, tmp_path):
    images = source_images(scene, "03")
    path = tmp_path / "03.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10, (240, 160), isColor=False)
    for image in images:
        writer.write(image)
    writer.release()
    from_file = list(detector.stream(path))
    from_folder = list(detector.stream(scene / "testing" / "frames" / "03"))
    np.testing.assert_array_equal([r.score for r in from_file], [r.score for r in from_folder])
    assert from_file[5].time == pytest.approx(0.5)      # the file's own 10 fps
    assert from_folder[5].time == pytest.approx(0.2)    # a folder: 25 fps assumed


# ---------------------------------------------------------------------- detect end to end
def test_detect_finds_the_anomalies_and_stays_quiet_on_held_out_normal_frames(trained, detector, videos, scene,
                                                                              tmp_path, cli):
    # Calibrate the threshold on the normal test video 01 alone (its largest score: 01 raises
    # no event by construction, so it is not checked). The checks use frames the calibration
    # never saw: the anomalies of 03 (vehicle) and 02 (cyclist) must be caught, and the normal
    # frames before each anomaly enters (1..12 of 03, 1..6 of 02) must stay below it.
    threshold = float(np.nanmax(detector.score(videos["01"][0])))
    run, _ = trained
    out = tmp_path / "d03"
    code, stdout, err = cli("detect", scene / "testing" / "frames" / "03", "--run", run,
                                "--threshold", threshold, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["events.json", "overlay.mp4", "regions.csv", "scores.csv"]
    report = json.loads((out / "events.json").read_text())
    assert report["complete"] and report["frames"] == 36 and report["frames_scored"] == 34
    assert report["threshold"] == threshold and report["threshold_origin"] == "given" and report["fps"] == 25
    labels = videos["03"][1]
    abnormal = np.flatnonzero(labels)
    assert report["events"], "no event on the vehicle video"
    for event in report["events"]:  # every event overlaps the labelled span
        assert event["end_frame"] >= abnormal[0] and event["start_frame"] <= abnormal[-1]
        assert event["start_frame"] <= event["peak_frame"] <= event["end_frame"]
        assert event["start_time"] == pytest.approx(event["start_frame"] / 25)
        assert f"frames {event['start_frame']}-{event['end_frame']}" in stdout  # printed when it closed
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert list(rows[0]) == ["frame", "time_s", "score", "anomalous", "regions"]
    regions = list(csv.DictReader(open(out / "regions.csv")))
    assert sum(int(r["regions"]) for r in rows) == len(regions)
    for r in regions:  # source pixels of the 240x160 frames
        assert 0 <= float(r["x1"]) < float(r["x2"]) <= 240 and 0 <= float(r["y1"]) < float(r["y2"]) <= 160
    assert [int(r["frame"]) for r in rows] == list(range(36))
    assert rows[0]["score"] == rows[-1]["score"] == "" and rows[0]["anomalous"] == "0"
    flags = np.array([int(r["anomalous"]) for r in rows])
    assert flags[labels == 0].sum() == 0 and flags[labels == 1].mean() > 0.8
    overlay = read_video(out / "overlay.mp4")
    assert len(overlay) == 36 and overlay[0].shape == (160 + STRIP, 240, 3)

    # the cyclist of 02, through the Python API
    tracker, events = EventTracker(EventRules()), []
    for result in AnomalyDetector.load(run, threshold=threshold).stream(scene / "testing" / "frames" / "02"):
        assert not (result.anomalous and videos["02"][1][result.frame] == 0), result.frame
        events.append(tracker.update(result))
    events = [e for e in events + [tracker.finish()] if e is not None]
    assert events and all(e.end_frame >= 7 for e in events)


def test_detect_uses_the_runs_threshold_by_default(trained, scene, tmp_path, cli):
    run, _ = trained
    code, out, err = cli("detect", scene / "testing" / "frames" / "01", "--run", run,
                             "--out", tmp_path / "o", "--no-overlay", "--max-frames", "12")
    assert code == 0, err
    report = json.loads((tmp_path / "o" / "events.json").read_text())
    assert report["threshold"] == load_checkpoint(run)["threshold"]["value"] and report["threshold_origin"] == "run"
    assert report["frames"] == 12 and not (tmp_path / "o" / "overlay.mp4").exists()
    assert "detect: 12 frames (10 scored)" in out


class FakeCapture:
    """A camera that gives the scene's frames at 10 fps, then fails (``end="drop"``) or the
    user presses Ctrl-C (``end="interrupt"``) after ``count`` frames."""

    def __init__(self, images, count, end):
        self.images, self.count, self.end, self.read_count = images, count, end, 0

    def isOpened(self):
        return True

    def get(self, prop):
        return 10.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if self.read_count == self.count:
            if self.end == "interrupt":
                raise KeyboardInterrupt
            return False, None
        self.read_count += 1
        return True, self.images[self.read_count - 1]

    def release(self):
        pass


@pytest.mark.parametrize("end,code,message", [("drop", 1, "stopped sending frames after 20 frames"),
                                              ("interrupt", 130, "interrupted")])
def test_a_stream_that_stops_leaves_valid_outputs(end, code, message, trained, scene, tmp_path, cli, monkeypatch):
    images = source_images(scene, "03")
    monkeypatch.setattr("ddlvad.data.video.open_capture", lambda target, what="": FakeCapture(images, 20, end))
    out = tmp_path / "live"
    got, _, err = cli("detect", "0", "--run", trained[0], "--out", out)
    monkeypatch.undo()
    assert got == code
    assert len(err.strip().splitlines()) == 1 and message in err and "Traceback" not in err
    report = json.loads((out / "events.json").read_text())
    assert not report["complete"] and message in report["stopped"] and report["live"] and report["fps"] == 10
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == report["frames"] and (report["frames"] == 20 if end == "drop" else 0 < report["frames"] <= 20)
    assert len(read_video(out / "overlay.mp4")) == report["frames"]


# ---------------------------------------------------------------------- events and patches
def result(frame, score, threshold=1.0):
    return FrameResult(frame, frame / 10, score, score > threshold, None, None, np.zeros(1))


def test_event_merging_by_hand():
    #   frame:  0   1   2   3   4   5   6   7   8   9  10  11  12  13  14
    scores = [0, 2, 3, 0, 0, 2, 0, 0, 0, 0, 5, 0, 0, 0, 2]
    # gap 2: 1-2 and 5 merge (2 frames between); 10 alone (4 between) is 1 frame < min 2;
    # 14 is still open at the end and also too short.
    tracker = EventTracker(EventRules(gap=2, min_frames=2))
    closed = [(r.frame, tracker.update(r)) for r in map(result, range(15), scores)]
    found = [(f, e) for f, e in closed if e is not None]
    assert len(found) == 1 and found[0][0] == 8  # closes once 3 normal frames follow frame 5
    e = found[0][1]
    assert (e.start_frame, e.end_frame, e.frames, e.peak_frame, e.peak_score) == (1, 5, 5, 2, 3)
    assert (e.start_time, e.end_time) == (0.1, 0.5)
    assert tracker.finish() is None
    with pytest.raises(UserError, match="--gap"):
        EventRules(gap=-1)


def test_worst_patch_box_on_both_grids():
    error = torch.zeros(2, 32, 48)
    error[0, 16:24, 8:16] = 1.0    # an aligned 8x8 cell
    error[1, 12:20, 20:28] = 1.0   # a cell of the grid shifted by 4
    scores, boxes = worst_patches(error, ScoreConfig(patch=8, shifted_grid=True))
    assert boxes.tolist() == [[8, 16, 8, 8], [20, 12, 8, 8]]
    assert scores.tolist() == [1.0, 1.0] and torch.equal(scores, frame_scores(error, ScoreConfig(patch=8)))
    aligned = ScoreConfig(patch=8, shifted_grid=False)
    assert worst_patches(error, aligned)[0][1] == 0.25  # an aligned cell sees a quarter of it


# ---------------------------------------------------------------------- export
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_model_gives_the_same_scores(fmt, trained, detector, videos, tmp_path, cli):
    frames = videos["03"][0]
    path = tmp_path / f"model.{fmt}"
    code, out, err = cli("export", trained[0], "--format", fmt, "--out", path)
    assert code == 0 and str(path) in out, err
    x = to_tensor(frames)                                                               # (N, C, H, W)
    clips = torch.stack([x[c - 1:c + 2] for c in range(1, len(frames) - 1)])            # (N-2, T, C, H, W)
    clips = clips.permute(0, 2, 1, 3, 4).contiguous()                                   # (N-2, C, T, H, W)
    if fmt == "onnx":
        ort = pytest.importorskip("onnxruntime")
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        recon, error, scores = session.run(None, {"clip": clips.numpy()})
    else:
        extra = {"ddlvad.json": ""}
        module = torch.jit.load(str(path), _extra_files=extra)
        meta = {"ddlvad": extra["ddlvad.json"]}
        with torch.no_grad():
            recon, error, scores = (t.numpy() for t in module(clips))
    assert recon.shape == (34, 1, 32, 48) and error.shape == (34, 32, 48)
    np.testing.assert_allclose(scores, detector.score(frames)[1:-1], atol=1e-4)
    info = json.loads(meta["ddlvad"])
    assert (info["frames"], info["height"], info["width"], info["patch"]) == (3, 32, 48, 8)
    assert info["threshold"] == detector.threshold


# ---------------------------------------------------------------------- bad input
def test_frames_with_unconvertible_channels_are_refused(detector):
    with pytest.raises(UserError, match="shape"):
        detector.score(np.zeros((5, 32, 48, 2), np.uint8))


@pytest.mark.parametrize("source,extra,needle", [
    ("{tmp}/missing.mp4", [], "not found"),
    ("{tmp}/broken.mp4", [], "cannot open video file"),
    ("{tmp}/empty", [], "no frame images"),
    ("{tmp}/float", [], "pixel type float32"),
    ("{frames}", ["--max-frames", "0"], "--max-frames"),
    ("{frames}", ["--batch", "0"], "--batch"),
    ("{frames}", ["--gap", "-2"], "--gap"),
    ("{frames}", ["--fps", "0"], "--fps"),
    ("{frames}", ["--threshold", "nan"], "--threshold"),
    ("{frames}", ["--run", "{tmp}/nothreshold"], "--threshold"),
])
def test_bad_detect_input_is_one_line_and_exit_2(source, extra, needle, trained, scene, tmp_path, cli):
    (tmp_path / "broken.mp4").write_text("not a video")
    (tmp_path / "empty").mkdir()
    (tmp_path / "float").mkdir()
    shutil.copytree(scene / "testing" / "frames" / "01", tmp_path / "float", dirs_exist_ok=True)
    cv2.imwrite(str(tmp_path / "float" / "020.tiff"), np.zeros((160, 240), np.float32))  # read after 020.jpg
    (tmp_path / "nothreshold").mkdir()
    ckpt = load_checkpoint(trained[0])
    ckpt["threshold"] = {"value": None, "percentile": 99.0, "frames": 0}
    torch.save(ckpt, tmp_path / "nothreshold" / "checkpoint.pt")

    def fill(a):
        return a.replace("{tmp}", str(tmp_path)).replace("{frames}", str(scene / "testing" / "frames" / "01"))

    args = ["detect", fill(source), "--run", str(trained[0]), "--out", str(tmp_path / "out")] + [fill(a) for a in extra]
    code, _, err = cli(*args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddlvad: error:") and needle in lines[0], err
    if needle == "pixel type float32":  # failed mid-way: what was written stays valid and says why
        report = json.loads((tmp_path / "out" / "events.json").read_text())
        assert not report["complete"] and "float32" in report["stopped"]
        assert len(read_video(tmp_path / "out" / "overlay.mp4")) == report["frames"] > 0


def test_export_bad_input(trained, tmp_path, cli):
    code, _, err = cli("export", trained[0], "--format", "tflite")
    assert code == 2 and "invalid choice" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", tmp_path, "--format", "onnx")
    assert code == 2 and "checkpoint" in err


# ---------------------------------------------------------------------- regions
class BackgroundModel(torch.nn.Module):
    """Reconstructs every frame as the scene's median training frame: its error is large
    wherever an object is, so an anomalous object's region must come out where it is."""

    frames = 3

    def __init__(self, background: torch.Tensor):
        super().__init__()
        self.register_buffer("background", background)           # (1, C, H, W)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def encode_frames(self, x):
        return [x]

    def decode_windows(self, feats):
        return self.background.expand(feats[0].shape[0], -1, -1, -1)


def test_a_planted_anomalys_region_is_where_the_anomaly_is(scene):
    from ddlvad import Config
    from ddlvad.data.frames import FrameSpec, FrameStore
    from ddlvad.regions import iou
    from ddlvad.score import anomaly_map

    cfg = Config.preset("tiny").apply({"data.height": 160, "data.width": 240})  # the scene's own size
    index = index_dataset(scene)
    spec = FrameSpec.from_config(cfg.data)
    train = FrameStore(index.training, spec).arrays
    background = to_tensor(np.median(np.concatenate([np.asarray(a) for a in train]), axis=0)[None])
    model = BackgroundModel(background)
    # region threshold as training calibrates it: the 99th percentile of normal frames' map maxima
    peaks = [float(anomaly_map(pixel_error(to_tensor(np.asarray(a)), background), cfg.score).amax((1, 2)).max())
             for a in train]
    detector = AnomalyDetector(model, cfg, threshold=0.0, region_threshold=float(np.percentile(peaks, 99)))
    truth = Tracks.load(scene / "testing" / "tracks.npz").videos["03"]  # the vehicle video
    event = json.loads((scene / "scene.json").read_text())["testing"]["03"]["anomalies"][0]
    hits, visible = 0, 0
    for result in detector.stream(scene / "testing" / "frames" / "03"):
        boxes = truth.tracks_at(result.frame)
        if event["track"] not in boxes or result.error_map is None:
            continue
        x1, y1, x2, y2 = boxes[event["track"]] * [240, 160, 240, 160]
        if x2 - x1 < 20:  # barely in view
            continue
        visible += 1
        hits += any(iou(r.box, (x1, y1, x2, y2)) >= 0.3 for r in result.regions)
    assert visible >= 5 and hits >= 0.8 * visible, (hits, visible)


def test_anomaly_map_is_the_largest_patch_mean_covering_each_pixel():
    from ddlvad.config import ScoreConfig
    from ddlvad.score import anomaly_map

    error = torch.rand(2, 12, 10, generator=torch.Generator().manual_seed(0))
    p = 4
    got = anomaly_map(error, ScoreConfig(patch=p))
    brute = torch.full_like(error, -1.0)
    for y in range(12 - p + 1):  # every window position, stride 1
        for x in range(10 - p + 1):
            mean = error[:, y:y + p, x:x + p].mean((1, 2))[:, None, None]
            brute[:, y:y + p, x:x + p] = torch.maximum(brute[:, y:y + p, x:x + p], mean.expand(-1, p, p))
    torch.testing.assert_close(got, brute)
    assert (got.amax((1, 2)) >= frame_scores(error, ScoreConfig(patch=p))).all()
