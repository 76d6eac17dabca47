"""The one sliding-window iterator (:func:`ddlvad.score.sliding_windows`), on its own: every frame
comes out once, in order, as a window centre or an edge frame, batches hold at most ``batch``
windows, and no more than ``batch + T - 1`` items are held."""

from __future__ import annotations

import itertools

import pytest

from ddlvad.score import sliding_windows


def flatten(batches) -> list[tuple[int, bool, list[int]]]:
    """``(source index, edge, the window's items)`` per frame, in the order they came out."""
    out = []
    for b in batches:
        if b.edge:
            out.append((b.start, True, b.items))
        else:
            for k in range(b.count):
                out.append((b.start + k, False, b.items[k:k + len(b.items) - b.count + 1]))
    return out


@pytest.mark.parametrize("frames", [1, 3, 5])
@pytest.mark.parametrize("batch", [1, 2, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 9, 16])
def test_every_frame_once_in_order_as_centre_or_edge(n, batch, frames):
    h = frames // 2
    batches = list(sliding_windows(range(n), frames, batch))
    seen = flatten(batches)
    assert [i for i, _, _ in seen] == list(range(n))                  # each frame once, in source order
    for i, edge, items in seen:
        if i < h or i >= n - h:                                        # (T-1)/2 edge frames at each end
            assert edge and items == [i]
        else:
            assert not edge and items == list(range(i - h, i + h + 1))  # the T frames centred on i
    assert all(1 <= b.count <= batch for b in batches if not b.edge)
    assert all(len(b.items) == b.count + frames - 1 for b in batches if not b.edge)


def test_hand_worked_batches_of_two_windows_of_three():
    # 7 frames, T = 3, batch 2: edge 0, windows at 1-2 (frames 0-3), at 3-4 (frames 2-5), at 5
    # (frames 4-6), edge 6
    got = [(b.start, b.count, b.items) for b in sliding_windows(range(7), 3, 2)]
    assert got == [(0, 0, [0]), (1, 2, [0, 1, 2, 3]), (3, 2, [2, 3, 4, 5]), (5, 1, [4, 5, 6]), (6, 0, [6])]


def test_a_batch_is_yielded_as_soon_as_its_last_frame_arrives():
    """Live streams: a window's result cannot wait for later frames."""
    read = []

    def source():
        for i in range(10):
            read.append(i)
            yield i

    for b in sliding_windows(source(), 3, 1):
        if not b.edge:  # window centred on b.start needs frames up to b.start + 1, and no later one
            assert read[-1] == b.start + 1


def test_memory_does_not_grow_with_the_stream():
    held = 0
    for b in itertools.islice(sliding_windows(itertools.count(), 5, 4), 2000):
        held = max(held, len(b.items))
    assert held == 4 + 5 - 1
