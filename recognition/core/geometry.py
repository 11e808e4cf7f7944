"""Distances between embeddings and overlaps between boxes: the one copy of each.

Boxes are `(left, top, right, bottom)` in pixels with right/bottom exclusive, as `DetectedFace`.
"""

from __future__ import annotations

import numpy as np

Box = tuple[float, float, float, float]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances in float64, never negative.

    Uses |a|^2 + |b|^2 - 2ab: one matrix product, so it is fast for thousands of rows; the
    rounding error is ~1e-12 relative, far below the distances faces are told apart by.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need (N, D) and (M, D) arrays, got {x.shape} and {y.shape}")
    sq: np.ndarray = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    np.maximum(sq, 0.0, out=sq)
    return sq


def euclidean_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances in float64."""
    d = squared_distances(a, b)
    np.sqrt(d, out=d)
    return d


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 for boxes that do not overlap or are empty."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
