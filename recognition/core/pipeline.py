"""Pure recognition steps joined into one call per image (or per batch of images).

No ORM, no Celery, no settings: configuration is passed in.
`recognition/actions/processing.py` is the one place that joins these steps to the database.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recognition.core.detection import (
    DetectedFace,
    DetectorConfig,
    align_faces,
    detect_faces,
    face_in_box,
)
from recognition.core.embedding import Embedder


@dataclass(frozen=True)
class AnalysedFace:
    detection: DetectedFace
    chip: np.ndarray  # 150x150x3 uint8, the aligned face the embedding was computed on
    embedding: np.ndarray  # (D,) float32


@dataclass
class StageTimes:
    """Milliseconds spent per stage (summed over the images of a batch)."""

    detect: float = 0.0
    align: float = 0.0
    embed: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


def analyse_images(
    images: Sequence[np.ndarray], detector: DetectorConfig, embedder: Embedder
) -> tuple[list[list[AnalysedFace]], StageTimes]:
    """Detect, align and embed the faces of several RGB images; all chips in one forward pass."""
    times = StageTimes()
    detections: list[list[DetectedFace]] = []
    chips: list[np.ndarray] = []
    for rgb in images:
        t0 = time.perf_counter()
        found = detect_faces(rgb, detector)
        t1 = time.perf_counter()
        chips.append(align_faces(rgb, found))
        t2 = time.perf_counter()
        times.detect += (t1 - t0) * 1000
        times.align += (t2 - t1) * 1000
        detections.append(found)
    all_chips = np.concatenate(chips) if chips else np.zeros((0, 150, 150, 3), dtype=np.uint8)
    t3 = time.perf_counter()
    vectors = embedder.embed(all_chips)
    times.embed += (time.perf_counter() - t3) * 1000
    results: list[list[AnalysedFace]] = []
    offset = 0
    for found, image_chips in zip(detections, chips, strict=True):
        faces = [
            AnalysedFace(detection=det, chip=image_chips[i], embedding=vectors[offset + i])
            for i, det in enumerate(found)
        ]
        offset += len(found)
        results.append(faces)
    return results, times


def analyse_image(
    rgb: np.ndarray, detector: DetectorConfig, embedder: Embedder
) -> tuple[list[AnalysedFace], StageTimes]:
    faces, times = analyse_images([rgb], detector, embedder)
    return faces[0], times


def analyse_box(
    rgb: np.ndarray, box: tuple[int, int, int, int], detector: DetectorConfig, embedder: Embedder
) -> AnalysedFace:
    """Align and embed the face inside a box drawn by hand, like a detected face."""
    found = face_in_box(rgb, box, detector)
    chip = align_faces(rgb, [found])
    return AnalysedFace(detection=found, chip=chip[0], embedding=embedder.embed(chip)[0])
