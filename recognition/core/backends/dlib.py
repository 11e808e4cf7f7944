"""dlib's ResNet (plain or flip-averaged) behind the configured detector and dlib's alignment."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recognition.core.detection import DetectedFace, DetectorConfig, align_faces, face_in_box
from recognition.core.embedding import CHIP_SIZE, Embedder
from recognition.core.pipeline import Detected, detect_and_align


class DlibBackend:
    chip_size = CHIP_SIZE

    def __init__(self, detector: DetectorConfig, embedder: Embedder) -> None:
        self.detector = detector
        self.embedder = embedder
        self.name = embedder.name
        self.version = embedder.version
        self.dimension = embedder.dimension
        self.detector_id = f"dlib-align/{detector.model}"

    def detect_and_align(self, rgb: np.ndarray) -> Detected:
        return detect_and_align(rgb, self.detector)

    def align(self, rgb: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        return align_faces(rgb, faces)

    def face_in_box(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> DetectedFace:
        return face_in_box(rgb, box, self.detector)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return self.embedder.embed(chips)
