"""Frame decoding and the frame cache."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import replace

import cv2
import numpy as np
import pytest

from data_tiny import MAKERS, binary, noise, write_frames, write_video
from ddlvad.config import DataConfig
from ddlvad.data import frames as fr
from ddlvad.data.frames import FrameSpec, FrameStore, cached_frames, decode_video, default_cache_dir
from ddlvad.data.layouts import VideoRecord, index_dataset
from ddlvad.errors import UserError

SPEC = FrameSpec(16, 16, 3)


@pytest.mark.parametrize("name", list(MAKERS))
@pytest.mark.parametrize("channels", [1, 3])
def test_cached_equals_decoded_in_every_layout(data_tiny, data_cache, name, channels):
    tiny = data_tiny[name]
    spec = FrameSpec(16, 32, channels)
    index = index_dataset(tiny.root)
    for record in index.training + index.testing:
        fresh = decode_video(record, spec)
        expected_n = (tiny.training if record.split == "training" else tiny.testing)[record.video_id]
        assert fresh.shape == (expected_n, 16, 32, channels) and fresh.dtype == np.uint8
        cached = cached_frames(record, spec)
        assert isinstance(cached, np.memmap)
        np.testing.assert_array_equal(cached, fresh)
    assert data_cache.is_dir()


def test_colour_order_and_grey_repeat(tmp_path):
    bgr = np.zeros((2, 8, 8, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV's BGR order
    write_frames(tmp_path / "colour", bgr, ".png")
    write_frames(tmp_path / "grey", noise(2, 0, grey=True, h=8, w=8), ".tif")
    colour = VideoRecord("c", "training", tmp_path / "colour", tuple(sorted((tmp_path / "colour").iterdir())))
    rgb = decode_video(colour, FrameSpec(8, 8, 3))
    assert (rgb[..., 2] == 200).all() and (rgb[..., :2] == 0).all()  # RGB order out
    grey = VideoRecord("g", "training", tmp_path / "grey", tuple(sorted((tmp_path / "grey").iterdir())))
    out = decode_video(grey, FrameSpec(8, 8, 3))
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    np.testing.assert_array_equal(decode_video(grey, FrameSpec(8, 8, 1))[..., 0], out[..., 0])


def test_spec_and_cache_dir_defaults(monkeypatch, tmp_path):
    assert FrameSpec.from_config(DataConfig(height=32, width=48, channels=1)) == FrameSpec(32, 48, 1)
    with pytest.raises(UserError, match="data.channels=2"):
        FrameSpec(8, 8, 2)
    monkeypatch.delenv("DDLVAD_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "ddlvad"
    monkeypatch.setenv("DDLVAD_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_cache_is_reused_then_rebuilt_when_the_source_changes(data_tiny, data_cache, tmp_path, monkeypatch):
    root = tmp_path / "ds"
    shutil.copytree(data_tiny["folder_frames"].root, root)
    record = index_dataset(root).testing[0]
    first = np.array(cached_frames(record, SPEC))

    calls = []
    real_decode = fr.decode_video
    monkeypatch.setattr(fr, "decode_video", lambda *a: calls.append(a) or real_decode(*a))
    np.testing.assert_array_equal(cached_frames(record, SPEC), first)
    assert calls == []  # served from the cache

    frame = record.frame_files[1]
    cv2.imwrite(str(frame), noise(1, 1234)[0])  # new content, size and mtime
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    record = index_dataset(root).testing[0]
    rebuilt = cached_frames(record, SPEC)
    assert len(calls) == 1
    np.testing.assert_array_equal(rebuilt, real_decode(record, SPEC))
    assert not np.array_equal(rebuilt, first)
    assert len(list(data_cache.rglob("*.npy"))) == 1  # the stale file is gone


def test_video_file_cache_rebuilds_on_change(data_cache, tmp_path):
    path = tmp_path / "v" / "clip.avi"
    write_video(path, noise(3, 0))
    record = VideoRecord("clip", "training", path, None)
    assert cached_frames(record, SPEC).shape[0] == 3
    write_video(path, noise(5, 1))
    assert cached_frames(record, SPEC).shape[0] == 5


def test_cache_never_writes_into_a_read_only_dataset(data_tiny, tmp_path):
    root = tmp_path / "ro"
    shutil.copytree(data_tiny["shanghaitech"].root, root)  # frame folders and video files
    before = sorted(p for p in root.rglob("*"))
    modes = {p: p.stat().st_mode for p in [root, *before]}
    for p in [root, *before]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        index = index_dataset(root)
        store = FrameStore(index.training + index.testing, SPEC, cache_dir=tmp_path / "cache")
        assert store.lengths.tolist() == [3, 4, 4, 5]
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert sorted(p for p in root.rglob("*")) == before
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4


def test_cache_inside_the_dataset_is_refused(data_tiny):
    record = index_dataset(data_tiny["folder_frames"].root).training[0]
    with pytest.raises(UserError, match="inside the dataset folder"):
        cached_frames(record, SPEC, cache_dir=record.source / "cache")


def test_frame_store(data_tiny, data_cache):
    index = index_dataset(data_tiny["avenue_release"].root)
    store = FrameStore(index.testing, FrameSpec(8, 8, 1))
    assert len(store) == 2 and store.lengths.dtype == np.int64
    assert store.lengths.tolist() == [4, 5]
    assert [a.shape for a in store.arrays] == [(4, 8, 8, 1), (5, 8, 8, 1)]
    assert [len(l) for l in store.labels()] == [4, 5]


def test_resize_rules(tmp_path):
    write_frames(tmp_path / "f", noise(1, 0, h=24, w=32), ".png")
    record = VideoRecord("f", "training", tmp_path / "f", tuple((tmp_path / "f").iterdir()))
    image = cv2.cvtColor(cv2.imread(str(record.frame_files[0])), cv2.COLOR_BGR2RGB)
    small = cv2.resize(image, (16, 12), interpolation=cv2.INTER_AREA)
    large = cv2.resize(image, (64, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(decode_video(record, FrameSpec(12, 16, 3))[0], small)
    np.testing.assert_array_equal(decode_video(record, FrameSpec(48, 64, 3))[0], large)


# ================================================================ bad inputs
def test_empty_video_file(tmp_path):
    path = tmp_path / "empty.avi"
    path.write_bytes(b"")
    with pytest.raises(UserError, match="empty.avi"):
        decode_video(VideoRecord("empty", "training", path, None), SPEC)


def test_corrupt_image_names_file_and_index(tmp_path):
    write_frames(tmp_path / "v", noise(3, 0))
    (tmp_path / "v" / "001.jpg").write_bytes(b"\xff\xd8 broken")
    record = VideoRecord("v", "testing", tmp_path / "v", tuple(sorted((tmp_path / "v").iterdir())))
    with pytest.raises(UserError, match=r"frame 1 .*001\.jpg"):
        decode_video(record, SPEC)


def test_mixed_frame_sizes(tmp_path):
    write_frames(tmp_path / "v", noise(2, 0))
    cv2.imwrite(str(tmp_path / "v" / "002.jpg"), noise(1, 1, h=20, w=20)[0])
    record = VideoRecord("v", "testing", tmp_path / "v", tuple(sorted((tmp_path / "v").iterdir())))
    with pytest.raises(UserError, match=r"testing video v .*frame 2 .*20x20.*32x24"):
        decode_video(record, SPEC)


def test_truncated_video_warns_and_keeps_what_is_there(tmp_path):
    path = tmp_path / "cut.avi"
    write_video(path, noise(10, 0))
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.7)])
    with pytest.warns(UserWarning, match="cut.avi announces 10 frames"):
        frames = decode_video(VideoRecord("cut", "training", path, None), SPEC)
    assert 0 < len(frames) < 10


def test_label_length_differs_from_decoded_frames(data_tiny, data_cache):
    record = index_dataset(data_tiny["avenue_release"].root).testing[0]
    record = replace(record, labels=binary(0, 1, 1))
    with pytest.raises(UserError, match=r"testing video 01 .*3 frames .*4 decoded frames"):
        cached_frames(record, SPEC)
    # an existing cache entry is checked too
    good = index_dataset(data_tiny["avenue_release"].root).testing[0]
    cached_frames(good, SPEC)
    with pytest.raises(UserError, match=r"testing video 01 .*3 frames"):
        cached_frames(record, SPEC)


def test_unwritable_cache_dir(data_tiny, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    record = index_dataset(data_tiny["folder_frames"].root).training[0]
    with pytest.raises(UserError, match="cache-dir"):
        cached_frames(record, SPEC, cache_dir=blocker)


# ================================================================ real data
def test_real_data_cached_equals_decoded(data_shared, data_cache):
    """One real clip per source kind: ped2 JPEG frames and an Avenue XviD .avi."""
    records = []
    if (data_shared / "ped2").is_dir():
        records.append(index_dataset(data_shared / "ped2", splits=("testing",)).testing[8])  # 120 frames
    if (data_shared / "avenue-sample").is_dir():
        records.append(index_dataset(data_shared / "avenue-sample", splits=("testing",)).testing[0])  # 08
    if not records:
        pytest.skip("no real videos in the shared data")
    spec = FrameSpec(32, 48, 1)
    for record in records:
        fresh = decode_video(record, spec)  # also checks the label length against the decoded count
        assert len(fresh) == len(record.labels)
        np.testing.assert_array_equal(cached_frames(record, spec), fresh)
