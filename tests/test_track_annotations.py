"""The reader of annotated object tracks (the ground truth of the published RBDC/TBDC), where
evaluate finds them, and the published ShanghaiTech files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ddlvad.data import labels as lab
from ddlvad.data.layouts import find_track_annotations, index_dataset
from ddlvad.errors import UserError


def test_reads_boxes_tracks_and_lines(tmp_path):
    path = tmp_path / "01_0014.txt"
    path.write_text("0,154,4,142,119,249\n0,155,6,145,129,254\n\n1, 155, 0, 0, 855, 479\r\n0,157,30,137,151,250\n")
    ann = lab.read_track_file(path)
    assert ann.path == path and ann.track_ids == [0, 1]
    assert [tuple(b) for b in ann.boxes] == [(0, 154, 4, 142, 119, 249, 1), (0, 155, 6, 145, 129, 254, 2),
                                             (1, 155, 0, 0, 855, 479, 4), (0, 157, 30, 137, 151, 250, 5)]
    assert ann.boxes[2].x_max == 855 and ann.boxes[3].frame == 157  # a track may skip frames (156)
    assert ann.checked(158, (480, 856), "video 01_0014") == ann.boxes
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert lab.read_track_file(empty).boxes == ()


@pytest.mark.parametrize("line, needle", [
    ("0,1,2,3,4", "5 values, expected 6 (track_id,frame,x_min,y_min,x_max,y_max)"),
    ("0,1,2,3,4,5,6", "7 values, expected 6"),
    ("0,1,2.5,3,4,5", "'2.5' is not an integer"),
    ("0,1,a,3,4,5", "'a' is not an integer"),
    ("track_id,frame,x_min,y_min,x_max,y_max", "'track_id' is not an integer"),
    ("0,-1,2,3,4,5", "frame -1 is negative (frames are 0-based)"),
    ("-1,1,2,3,4,5", "track id -1 is negative"),
    ("0,1,-2,3,4,5", "negative pixel coordinate"),
    ("0,1,9,3,4,5", "x_max 4 < x_min 9"),
    ("0,1,2,9,4,5", "y_max 5 < y_min 9"),
    ("0,0,1,1,2,2", "track 0 already has a box in frame 0 (line 1): one box per track and frame"),
])
def test_each_malformed_line_is_one_error_naming_file_and_line(tmp_path, line, needle):
    path = tmp_path / "01_0014.txt"
    path.write_text(f"0,0,1,1,5,5\n1,0,1,1,5,5\n{line}\n")
    with pytest.raises(UserError) as err:
        lab.read_track_file(path)
    message = str(err.value)
    assert f"track annotation file {path} line 3: " in message and needle in message
    assert "\n" not in message


def test_a_track_id_reused_in_another_video_is_two_tracks(tmp_path):
    (tmp_path / "01_0014.txt").write_text("0,3,1,1,5,5\n")
    (tmp_path / "01_0015.txt").write_text("0,3,1,1,5,5\n")
    (tmp_path / "readme.txt").write_text("The files have the following format:\n")
    out = lab.read_track_folder(tmp_path, ["01_0014", "01_0015", "01_0016"])
    assert sorted(out) == ["01_0014", "01_0015"]  # 01_0016 has no file: no annotated anomaly
    assert [a.track_ids for a in out.values()] == [[0], [0]]


def test_folder_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist or is not a folder"):
        lab.read_track_folder(tmp_path / "absent", ["01"])
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(UserError, match=r"holds no file of a test video: expected VIDEO.txt per test video "
                                        r"\(e.g. 01_0014.txt\), found readme.txt"):
        lab.read_track_folder(tmp_path, ["01_0014"])


def test_checked_against_the_video(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("0,0,0,0,855,479\n0,4,0,0,10,10\n")
    ann = lab.read_track_file(path)
    with pytest.raises(UserError, match=r"line 2: frame 4 but video v has 4 frames \(0-based 0..3\)"):
        ann.checked(4, (480, 856), "video v")
    with pytest.raises(UserError, match=r"line 1: box x 0..855, y 0..479 \(inclusive\) lies outside the 855x480 "
                                        r"frames of video v: annotations made for another frame size\?"):
        ann.checked(5, (480, 855), "video v")


def test_shanghaitech_tracks_are_found_where_the_labels_live(data_tiny, tmp_path):
    root = tmp_path / "sh"
    shutil.copytree(data_tiny["shanghaitech"].root, root)
    assert find_track_annotations(index_dataset(root, splits=("testing",))) is None
    (root / "tracks").mkdir()
    (root / "tracks" / "01_0014.txt").write_text("0,1,0,0,3,3\n")
    assert find_track_annotations(index_dataset(root, splits=("testing",))) == root / "tracks"
    (root / "testing" / "test_track_annotations").mkdir()
    assert find_track_annotations(index_dataset(root, splits=("testing",))) == root / "tracks"  # empty: skipped
    (root / "testing" / "test_track_annotations" / "02_0001.txt").write_text("")
    assert find_track_annotations(index_dataset(root, splits=("testing",))) == root / "testing" / "test_track_annotations"
    # only for ShanghaiTech: other datasets publish no tracks
    assert find_track_annotations(index_dataset(data_tiny["folder_frames"].root, splits=("testing",))) is None


def test_published_shanghaitech_tracks(data_shared):
    """Every published ShanghaiTech track file parses; the counts, and the two format facts:
    frames are 0-based (the annotated frames are exactly the abnormal frames of
    ``test_frame_mask``, a 0-based array, in 95 of 107 videos, and within them in all 107),
    corners are inclusive pixel indices (x_max reaches 855 = 856 - 1, never 856)."""
    base = data_shared / "shanghaitech-labels"
    if not (base / "tracks").is_dir():
        pytest.skip("shanghaitech-labels/tracks not in the shared data")
    frame_labels = lab.load_label_folder(base / "testing" / "test_frame_mask")
    tracks = lab.read_track_folder(base / "tracks", frame_labels)  # readme.txt beside them is ignored
    boxes = [b for a in tracks.values() for b in a.boxes]
    n_tracks = sum(len(a.track_ids) for a in tracks.values())
    print(f"ShanghaiTech published tracks: {len(tracks)} videos, {n_tracks} tracks, {len(boxes)} boxes")
    assert (len(tracks), n_tracks, len(boxes)) == (107, 158, 18_937)
    exact = 0
    for vid, ann in tracks.items():
        labels = frame_labels[vid]
        ann.checked(len(labels), (480, 856), f"video {vid}")
        annotated = {b.frame for b in ann.boxes}
        assert annotated <= set(np.flatnonzero(labels).tolist()), vid
        exact += annotated == set(np.flatnonzero(labels).tolist())
    assert exact == 95
    assert max(b.x_max for b in boxes) == 855 and max(b.y_max for b in boxes) == 479
    assert min(b.x_min for b in boxes) == 0 and min(b.y_min for b in boxes) == 0
