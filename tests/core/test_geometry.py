"""The one distance and overlap helper, against the naive definitions."""

from __future__ import annotations

import numpy as np
import pytest

from recognition.core.geometry import (
    drop_nested,
    euclidean_distances,
    iou,
    nms,
    squared_distances,
)


def test_it_computes_euclidean_distances() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 8)), rng.normal(size=(3, 8))
    naive = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
    assert np.allclose(euclidean_distances(a, b), naive)
    assert np.allclose(np.diag(euclidean_distances(a, a)), 0.0, atol=1e-6)


def test_it_never_returns_negative_squared_distances_for_identical_rows() -> None:
    x = np.full((3, 128), 0.1234567, dtype=np.float32)
    assert (squared_distances(x, x) >= 0).all()


def test_it_refuses_mismatched_dimensions() -> None:
    with pytest.raises(ValueError, match="need"):
        squared_distances(np.zeros((2, 3)), np.zeros((2, 4)))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (10, 10, 20, 20), 0.0),
        ((0, 0, 10, 10), (2, 2, 4, 4), 4 / 100),
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),
    ],
)
def test_it_computes_box_overlap(
    a: tuple[int, int, int, int], b: tuple[int, int, int, int], expected: float
) -> None:
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 4]])
    scores = np.array([0.6, 0.9, 0.7, 0.5])
    # [0, 0, 10, 4] overlaps the best box by 0.24: under the threshold, so it stays.
    assert nms(boxes, scores, 0.3).tolist() == [1, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3).tolist() == []


def test_it_drops_a_box_inside_a_much_wider_one_and_keeps_neighbours() -> None:
    boxes = np.array(
        [
            [100, 100, 1100, 1300],  # a whole face
            [350, 400, 850, 900],  # a part of it, found as a face of its own
            [1000, 200, 1500, 800],  # a neighbour overlapping the face's edge
            [400, 450, 700, 750],  # also inside, but checked against the widest box too
            [2000, 100, 2100, 220],  # a small face elsewhere
        ]
    )
    assert drop_nested(boxes).tolist() == [0, 2, 4]
    # Two boxes of about the same width never drop each other (that is NMS's job).
    same = np.array([[0, 0, 100, 100], [10, 10, 100, 100]])
    assert drop_nested(same).tolist() == [0, 1]
    assert drop_nested(np.zeros((0, 4))).tolist() == []
