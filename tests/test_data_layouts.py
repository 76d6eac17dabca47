"""Dataset layouts and label parsing: tiny datasets in every real layout, and the real
label files of ../shared/data checked frame by frame (skipped when absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from data_tiny import MAKERS, binary, noise, write_frames
from ddlvad.data import labels as lab
from ddlvad.data.info import summary
from ddlvad.data.layouts import DATASETS, detect_dataset, index_dataset
from ddlvad.errors import UserError


# ================================================================ tiny datasets, every layout
@pytest.mark.parametrize("name", list(MAKERS))
def test_every_layout_is_detected_and_indexed(data_tiny, name):
    tiny = data_tiny[name]
    assert detect_dataset(tiny.root) == tiny.dataset
    index = index_dataset(tiny.root)
    assert (index.dataset, index.layout, index.root) == (tiny.dataset, tiny.layout, tiny.root)
    assert index.scenes() == tiny.scenes

    for split, expected in (("training", tiny.training), ("testing", tiny.testing)):
        records = index.split(split)
        assert [r.video_id for r in records] == list(expected)
        assert all(r.split == split for r in records)
        for r in records:
            if r.frame_files is not None:  # frame folder: exactly the images, in order
                assert r.source.is_dir() and len(r.frame_files) == expected[r.video_id]
                assert list(r.frame_files) == sorted(r.frame_files)
            else:
                assert r.source.is_file()
    for r in index.training:
        assert r.labels is None
    for r in index.testing:
        np.testing.assert_array_equal(r.labels, tiny.labels[r.video_id])
        assert r.labels.dtype == np.uint8


@pytest.mark.parametrize("name", list(MAKERS))
def test_summary_counts(data_tiny, name):
    tiny = data_tiny[name]
    info = summary(index_dataset(tiny.root))
    assert info["training"] == {"videos": 2, "frames": sum(tiny.training.values())}
    assert info["testing"]["frames"] == sum(tiny.testing.values())
    assert info["testing"]["abnormal_frames"] == sum(int(v.sum()) for v in tiny.labels.values())
    assert info["frame_size"] == [24, 32]
    assert info["scenes"] == tiny.scenes
    assert (info["dataset"], info["layout"]) == (tiny.dataset, tiny.layout)


def test_forcing_the_dataset(data_tiny):
    index = index_dataset(data_tiny["ped_frames"].root, dataset="folder")
    assert (index.dataset, index.layout) == ("folder", "folder")
    assert all(r.labels is None for r in index.testing)  # the folder layout has no ped2.mat
    assert index_dataset(data_tiny["ucsd"].root, dataset="ped1").dataset == "ped1"


def test_ucsd_skips_masks_and_clutter_and_accepts_the_inner_folder(data_tiny):
    root = data_tiny["ucsd"].root
    index = index_dataset(root / "UCSDped2")
    assert index.layout == "ucsd-release"
    assert [r.video_id for r in index.testing] == ["01", "02"]  # no Test001_gt
    names = [p.name for p in index.training[0].frame_files]
    assert names == ["000.tif", "001.tif", "002.tif"]  # no ._001.tif, no Thumbs.db


def test_splits_argument_indexes_only_those(data_tiny):
    index = index_dataset(data_tiny["folder_frames"].root, splits=("testing",))
    assert index.training == [] and len(index.testing) == 2


def test_folder_layout_ignores_annotation_folders_and_sorts_naturally(tmp_path):
    write_frames(tmp_path / "training" / "cam", noise(12, 0), ".png", "{}")  # 0.png .. 11.png
    write_frames(tmp_path / "testing" / "cam", noise(2, 1), ".png", "{}")
    write_frames(tmp_path / "testing" / "masks", noise(2, 2), ".png", "{}")
    write_frames(tmp_path / "testing" / "boxes", noise(2, 2), ".png", "{}")
    index = index_dataset(tmp_path)
    assert index.dataset == "folder"
    assert [p.name for p in index.training[0].frame_files][:4] == ["0.png", "1.png", "2.png", "3.png"]
    assert [r.video_id for r in index.testing] == ["cam"]


def test_shanghaitech_scene_selection(data_tiny):
    root = data_tiny["shanghaitech"].root
    index = index_dataset(root, scene="02")
    assert [r.video_id for r in index.training] == ["02_001"]
    assert [r.video_id for r in index.testing] == ["02_0001"]
    assert index.scenes() == ["02"]
    with pytest.raises(UserError, match="scene '07'.*01, 02"):
        index_dataset(root, scene="07")


@pytest.mark.parametrize("size, expected", [((158, 238), "ped1"), ((240, 360), "ped2"), ((24, 32), "folder")])
def test_ped1_ped2_told_apart_by_frame_size(tmp_path, size, expected):
    root = tmp_path / "data"  # a neutral name: the root's name is looked at before the size
    for split in ("training", "testing"):
        write_frames(root / split / "frames" / "01", noise(1, 0, h=size[0], w=size[1]))
    assert detect_dataset(root) == expected


def test_folder_with_labels_wins_over_ped2_frame_size(tmp_path):
    root = tmp_path / "data"
    for split in ("training", "testing"):
        write_frames(root / split / "frames" / "01", noise(2, 0, h=240, w=360))
    (root / "testing" / "labels").mkdir()
    np.save(root / "testing" / "labels" / "01.npy", binary(0, 1))
    index = index_dataset(root)
    assert index.dataset == "folder"
    np.testing.assert_array_equal(index.testing[0].labels, binary(0, 1))


def test_ped_told_apart_by_root_name(tmp_path):
    root = tmp_path / "UCSD_ped1_frames"
    for split in ("training", "testing"):
        write_frames(root / split / "frames" / "01", noise(1, 0))
    assert detect_dataset(root) == "ped1"


def test_ped1_told_apart_by_label_file_name(tmp_path):
    root = tmp_path / "data"
    for split in ("training", "testing"):
        write_frames(root / split / "frames" / "01", noise(3, 0))
    (root / "UCSDped1.m").write_text("TestVideoFile{end+1}.gt_frame = [3:3];\n")
    index = index_dataset(root)
    assert (index.dataset, index.layout) == ("ped1", "frames")
    np.testing.assert_array_equal(index.testing[0].labels, binary(0, 0, 1))


def test_ped_frames_with_npz_labels_only(data_tiny, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_tiny["ped_frames"].root, root)
    (root / "labels" / "ped2.mat").unlink()
    np.savez(root / "labels" / "ped2_frame_labels.npz", **data_tiny["ped_frames"].labels)
    index = index_dataset(root)
    assert (index.dataset, index.layout) == ("ped2", "frames")
    for r in index.testing:
        np.testing.assert_array_equal(r.labels, data_tiny["ped_frames"].labels[r.video_id])
    (root / "labels" / "ped2_frame_labels.npz").write_bytes(b"PK broken")
    with pytest.raises(UserError, match="ped2_frame_labels.npz"):
        index_dataset(root)


# ================================================================ label parsers
def test_parse_ucsd_m_ranges(tmp_path):
    path = tmp_path / "UCSDped1.m"
    path.write_text("TestVideoFile = {};\n% a comment [1:2]\n"
                    "TestVideoFile{end+1}.gt_frame = [60:152];\n"
                    "TestVideoFile{end+1}.gt_frame = [5:90, 140 : 200];\n"
                    "TestVideoFile{end+1}.gt_frame = [7 9];\n")
    assert lab.parse_ucsd_m(path) == [[(60, 152)], [(5, 90), (140, 200)], [(7, 7), (9, 9)]]
    # 1-based inclusive -> 0-based: frames 1 and 3 of 4 -> indices 0 and 2
    np.testing.assert_array_equal(lab.ranges_to_labels([(1, 1), (3, 3)], 4, "v"), binary(1, 0, 1, 0))


# ================================================================ bad inputs
def _copy(tiny, tmp_path) -> Path:
    root = tmp_path / tiny.root.name
    shutil.copytree(tiny.root, root)
    return root


def test_missing_root(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        index_dataset(tmp_path / "nowhere")


def test_unrecognised_root(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(UserError, match=str(tmp_path)):
        detect_dataset(tmp_path)


def test_unknown_dataset(data_tiny):
    with pytest.raises(UserError, match="'ped3'.*" + ", ".join(DATASETS)):
        index_dataset(data_tiny["ped_frames"].root, dataset="ped3")


@pytest.mark.parametrize("name, missing", [("ped_frames", "testing/frames"), ("avenue_release", "testing_videos"),
                                           ("ucsd", "UCSDped2/Test"), ("folder_videos", "testing")])
def test_missing_split_names_the_folder(data_tiny, tmp_path, name, missing):
    root = _copy(data_tiny[name], tmp_path)
    shutil.rmtree(root / missing)
    with pytest.raises(UserError, match=f"testing split missing.*{missing}"):
        index_dataset(root, dataset=data_tiny[name].dataset)


def test_no_videos(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "testing").mkdir()
    with pytest.raises(UserError, match="no training videos"):
        index_dataset(tmp_path, dataset="folder")


def test_unparsable_label_files(data_tiny, tmp_path):
    root = _copy(data_tiny["ucsd"], tmp_path)
    (root / "UCSDped2" / "Test" / "UCSDped2.m").write_text("TestVideoFile{end+1}.gt_frame = [a:b];\n")
    with pytest.raises(UserError, match=r"UCSDped2\.m line 1"):
        index_dataset(root)

    root = _copy(data_tiny["folder_videos"], tmp_path)
    (root / "testing" / "labels" / "q.txt").write_text("1 0 x\n")
    with pytest.raises(UserError, match=r"q\.txt"):
        index_dataset(root)
    np.save(root / "testing" / "labels" / "q.npy", np.array([0, 2, 1]))
    with pytest.raises(UserError, match=r"q\.npy.*0 or 1"):
        lab.load_label_file(root / "testing" / "labels" / "q.npy")

    bad_mat = tmp_path / "ped2.mat"
    bad_mat.write_bytes(b"not a mat file at all")
    with pytest.raises(UserError, match=r"ped2\.mat"):
        lab.load_ped_mat(bad_mat)


def test_label_count_differs_from_frame_count(data_tiny, tmp_path):
    root = _copy(data_tiny["folder_frames"], tmp_path)
    np.save(root / "testing" / "labels" / "b.npy", binary(0, 1))
    with pytest.raises(UserError, match=r"testing video b .* 2 frames .* 5 frames"):
        index_dataset(root)

    root = _copy(data_tiny["ucsd"], tmp_path / "u")
    (root / "UCSDped2" / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile{end+1}.gt_frame = [2:9];\nTestVideoFile{end+1}.gt_frame = [1:2];\n")
    with pytest.raises(UserError, match=r"testing video 01 .* 2:9 .* 4 frames"):
        index_dataset(root)


# ================================================================ real label files
def test_real_ped2_labels_agree(data_shared):
    root = data_shared / "ped2"
    if not root.is_dir():
        pytest.skip("ped2 not in the shared data")
    index = index_dataset(root)
    assert (index.dataset, index.layout) == ("ped2", "frames")
    assert len(index.training) == 16 and len(index.testing) == 12
    lengths = [len(r.frame_files) for r in index.testing]
    assert sum(lengths) == 2010
    from_m = lab.parse_ucsd_m(root / "labels" / "UCSDped2.m")
    from_mat = lab.load_ped_mat(root / "labels" / "ped2.mat")
    from_npz = lab.load_npz_labels(root / "labels" / "ped2_frame_labels.npz")
    assert from_m == from_mat and len(from_m) == 12
    for r, n in zip(index.testing, lengths):
        expected = lab.ranges_to_labels(from_m[int(r.video_id) - 1], n, r.name)
        np.testing.assert_array_equal(from_npz[r.video_id], expected)
        np.testing.assert_array_equal(r.labels, expected)
    assert sum(int(r.labels.sum()) for r in index.testing) == 1648


def test_real_avenue_masks_agree_with_avenue_mat(data_shared):
    root = data_shared / "avenue-sample"
    if not root.is_dir():
        pytest.skip("avenue-sample not in the shared data")
    from_mat = lab.load_avenue_mat(root / "avenue.mat")
    from_masks = lab.load_avenue_masks(root / "ground_truth_demo" / "testing_label_mask")
    assert sorted(from_mat) == sorted(from_masks) == [f"{i:02d}" for i in range(1, 22)]
    for key in from_mat:
        np.testing.assert_array_equal(from_masks[key], from_mat[key], err_msg=key)


def test_real_avenue_sample_index(data_shared):
    root = data_shared / "avenue-sample"
    if not root.is_dir():
        pytest.skip("avenue-sample not in the shared data")
    index = index_dataset(root)
    assert (index.dataset, index.layout) == ("avenue", "avenue-release")
    assert [r.video_id for r in index.training] == ["12", "16"]
    assert [r.video_id for r in index.testing] == ["08", "17", "18", "19", "20", "21"]
    info = summary(index)
    assert info["training"]["frames"] == 389 and info["testing"]["frames"] == 1353
    assert info["frame_size"] == [360, 640]


def test_real_shanghaitech_labels(data_shared):
    folder = data_shared / "shanghaitech-labels" / "testing" / "test_frame_mask"
    if not folder.is_dir():
        pytest.skip("shanghaitech-labels not in the shared data")
    labels = lab.load_label_folder(folder)
    assert len(labels) == 107
    assert len({key.split("_")[0] for key in labels}) == 12
    assert sum(len(v) for v in labels.values()) == 40_791
    assert sum(int(v.sum()) for v in labels.values()) == 17_326
