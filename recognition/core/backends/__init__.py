"""Detector + embedder backends: what turns a photo into faces and vectors of one version.

A backend is pure (arrays in, frozen dataclasses and arrays out) and loads its models once per
process. Three kinds: dlib's ResNet behind the configured detector (CenterFace by default,
`dlib.py`), the same with flip-averaged embeddings, and an InsightFace pack supplied by the
operator (SCRFD + ArcFace on onnxruntime, `insightface_pack.py`). `recognition/runtime.py`
chooses one from the active model version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from recognition.core.detection import DetectedFace
from recognition.core.pipeline import Detected


class Backend(Protocol):
    name: str
    version: str  # the embedder version stored with every vector
    dimension: int
    # Two backends with the same detector_id find the same boxes and landmarks: a re-embed
    # between them keeps every face and only computes new vectors.
    detector_id: str
    chip_size: int

    def detect_and_align(self, rgb: np.ndarray) -> Detected:
        """The faces of an RGB image and their aligned chips."""
        ...

    def align(self, rgb: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        """(N, chip_size, chip_size, 3) uint8 chips of known faces (stored boxes and landmarks)."""
        ...

    def face_in_box(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> DetectedFace:
        """The face inside a (left, top, width, height) box, landmarks from this detector."""
        ...

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N, chip_size, chip_size, 3) uint8 -> (N, dimension) float32."""
        ...
