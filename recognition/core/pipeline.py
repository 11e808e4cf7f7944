"""Pure recognition steps joined into one call per image (or per batch of images).

No ORM, no Celery, no settings: configuration is passed in.
`recognition/actions/processing.py` is the one place that joins these steps to the database.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from recognition.core.detection import (
    DetectedFace,
    DetectorConfig,
    align_faces,
    detect_faces,
    face_in_box,
)
from recognition.core.embedding import Embedder

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class AnalysedFace:
    detection: DetectedFace
    chip: np.ndarray  # (S, S, 3) uint8 (150 for dlib, 112 for ArcFace), the aligned face embedded
    embedding: np.ndarray  # (D,) float32


@dataclass
class StageTimes:
    """Milliseconds spent per stage (summed over the images of a batch)."""

    detect: float = 0.0
    align: float = 0.0
    embed: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Detected:
    """One image after detection and alignment, before embedding."""

    faces: list[DetectedFace]
    chips: np.ndarray  # (len(faces), 150, 150, 3) uint8
    detect_ms: float
    align_ms: float


def detect_and_align(rgb: np.ndarray, detector: DetectorConfig) -> Detected:
    t0 = time.perf_counter()
    found = detect_faces(rgb, detector)
    t1 = time.perf_counter()
    chips = align_faces(rgb, found)
    return Detected(found, chips, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000)


def embed_detected(
    images: Sequence[Detected], embedder: Embedder
) -> tuple[list[list[AnalysedFace]], float]:
    """The faces of several images with their embeddings, all chips in one forward pass; and
    the milliseconds that pass took."""
    chips = [d.chips for d in images]
    size = int(getattr(embedder, "chip_size", 150))
    all_chips = np.concatenate(chips) if chips else np.zeros((0, size, size, 3), dtype=np.uint8)
    t0 = time.perf_counter()
    vectors = embedder.embed(all_chips)
    embed_ms = (time.perf_counter() - t0) * 1000
    results: list[list[AnalysedFace]] = []
    offset = 0
    for d in images:
        faces = [
            AnalysedFace(detection=det, chip=d.chips[i], embedding=vectors[offset + i])
            for i, det in enumerate(d.faces)
        ]
        offset += len(d.faces)
        results.append(faces)
    return results, embed_ms


def analyse_images(
    images: Sequence[np.ndarray], detector: DetectorConfig, embedder: Embedder
) -> tuple[list[list[AnalysedFace]], StageTimes]:
    """Detect, align and embed the faces of several RGB images; all chips in one forward pass."""
    detected = [detect_and_align(rgb, detector) for rgb in images]
    results, embed_ms = embed_detected(detected, embedder)
    times = StageTimes(
        detect=sum(d.detect_ms for d in detected),
        align=sum(d.align_ms for d in detected),
        embed=embed_ms,
    )
    return results, times


def prefetched(items: Iterable[T], work: Callable[[T], R], ahead: int) -> Generator[R, None, None]:
    """`work(item)` for each item, in order, computed in one background thread up to `ahead`
    items before they are asked for: the next photos are decoded and detected while the caller
    embeds and stores the previous ones (onnxruntime, torch and Pillow release the GIL).

    `work` must not touch the database (Django connections belong to their thread). An
    exception raised by `work` is raised to the caller when it reaches that item. Closing the
    iterator early cancels the items not started.
    """
    if ahead < 1:
        yield from map(work, items)
        return
    pending: collections.deque[concurrent.futures.Future[R]] = collections.deque()
    source = iter(items)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
        try:
            for item in itertools.islice(source, ahead):
                pending.append(pool.submit(work, item))
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(source, 1):
                    pending.append(pool.submit(work, item))
                yield result
        finally:
            for future in pending:
                future.cancel()


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to `size` consecutive items."""
    source = iter(items)
    while chunk := list(itertools.islice(source, size)):
        yield chunk


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
