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


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the (N, 4) boxes kept by greedy non-maximum suppression, best score first: a box
    overlapping a better one by `iou_threshold` or more is dropped."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    x0, y0, x1, y1 = (np.asarray(boxes, dtype=np.float64)[:, k] for k in range(4))
    areas = np.maximum(x1 - x0, 0.0) * np.maximum(y1 - y0, 0.0)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[overlap < iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def drop_nested(boxes: np.ndarray, *, inside: float = 0.7, wider: float = 1.5) -> np.ndarray:
    """Indices of the (N, 4) boxes to keep: a box that lies mostly (`inside` of its area) within
    a box at least `wider` times as wide is dropped. Two faces never nest like that; a part of a
    face found as a face of its own does (a detector pass at a scale too fine for a large face),
    and its IoU with the whole face is too low for non-maximum suppression to catch."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    widths = np.maximum(b[:, 2] - b[:, 0], 0.0)
    areas = widths * np.maximum(b[:, 3] - b[:, 1], 0.0)
    keep = []
    for i in range(len(b)):
        w = np.maximum(0.0, np.minimum(b[i, 2], b[:, 2]) - np.maximum(b[i, 0], b[:, 0]))
        h = np.maximum(0.0, np.minimum(b[i, 3], b[:, 3]) - np.maximum(b[i, 1], b[:, 1]))
        covered = w * h / max(areas[i], 1e-12)
        outer = (covered >= inside) & (widths >= wider * widths[i])
        outer[i] = False
        if not outer.any():
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)
