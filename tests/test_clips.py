"""Windows and object masks (docs/method.md §2.2)."""

import numpy as np
import torch

from ddlvad.data.clips import WindowIndex, epoch_order, gather_clips
from ddlvad.data.tracks import VideoTracks
from ddlvad.pseudo_anomaly import object_masks, random_masks


def test_window_index_skips_edge_frames_and_is_o1():
    idx = WindowIndex([5, 2, 4], frames=3)
    # video 0: centres 1..3; video 1 (2 frames): none; video 2: centres 1..2
    assert [idx[i] for i in range(len(idx))] == [(0, 1), (0, 2), (0, 3), (2, 1), (2, 2)]
    assert list(idx.frame_indices(2)) == [1, 2, 3]


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(50, 0, 3), epoch_order(50, 0, 3)
    assert np.array_equal(a, b) and sorted(a) == list(range(50))
    assert not np.array_equal(a, epoch_order(50, 0, 4))


def test_gather_clips_layout():
    video = np.arange(5 * 2 * 3 * 1, dtype=np.uint8).reshape(5, 2, 3, 1)
    idx = WindowIndex([5], 3)
    clip = gather_clips([video], idx, np.array([1]))  # centre 2 -> frames 1, 2, 3
    assert clip.shape == (1, 1, 3, 2, 3)
    assert torch.allclose(clip[0, 0, 1], torch.from_numpy(video[2, :, :, 0]).float() / 255)


def rows(track, boxes):
    return [[f, track, *b, 1.0] for f, b in boxes.items()]


def test_mask_covers_exactly_the_chosen_tracks_box_in_every_frame():
    # track 3 is in frames 0-4; track 9 only in frames 2-4. Window centred at 1 (frames 0-2):
    # only track 3 is common. Frame size 10x20 (h x w).
    boxes3 = {f: (0.1 * f / 2, 0.2, 0.1 * f / 2 + 0.25, 0.6) for f in range(5)}
    boxes9 = {f: (0.5, 0.5, 0.9, 0.9) for f in range(2, 5)}
    vt = VideoTracks(5, np.array(rows(3, boxes3) + rows(9, boxes9)))
    idx = WindowIndex([5], 3)
    mask = object_masks([vt], idx, np.array([0]), 10, 20, [np.random.default_rng(0)])
    assert mask.shape == (1, 1, 3, 10, 20)
    for t, f in enumerate(range(0, 3)):
        x1, y1, x2, y2 = boxes3[f]
        expected = torch.zeros(10, 20)
        expected[int(np.floor(y1 * 10)):int(np.ceil(y2 * 10)), int(np.floor(x1 * 20)):int(np.ceil(x2 * 20))] = 1
        assert torch.equal(mask[0, 0, t], expected)


def test_random_choice_among_common_tracks_covers_both():
    vt = VideoTracks(3, np.array(rows(1, {f: (0, 0, 0.5, 0.5) for f in range(3)}) +
                                 rows(2, {f: (0.5, 0.5, 1, 1) for f in range(3)})))
    idx = WindowIndex([3], 3)
    rng = np.random.default_rng(0)
    seen = {int(object_masks([vt], idx, np.array([0]), 8, 8, [rng])[0, 0, 0, 0, 0]) for _ in range(30)}
    assert seen == {0, 1}  # top-left pixel set only when track 1 is picked


def test_window_without_a_common_track_gets_an_empty_mask():
    vt = VideoTracks(3, np.array(rows(1, {0: (0, 0, 1, 1)}) + rows(2, {1: (0, 0, 1, 1), 2: (0, 0, 1, 1)})))
    idx = WindowIndex([3, 3], 3)
    masks = object_masks([vt, None], idx, np.array([0, 1]), 8, 8, [np.random.default_rng(0)] * 2)
    assert masks.sum() == 0


def test_random_masks_are_boxes_constant_over_time():
    m = random_masks(3, 32, 48, [np.random.default_rng(i) for i in range(4)])
    assert m.shape == (4, 1, 3, 32, 48)
    for b in range(4):
        assert torch.equal(m[b, 0, 0], m[b, 0, 2]) and m[b].sum() > 0
        ys, xs = torch.nonzero(m[b, 0, 0], as_tuple=True)
        assert m[b, 0, 0, ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()  # a filled rectangle
