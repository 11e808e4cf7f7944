"""An InsightFace pack on onnxruntime: SCRFD detection with 5 points, similarity alignment to
InsightFace's 112x112 ArcFace template, ArcFace embedding (512-d, L2-normalised).

The `insightface` package itself is not used: it builds a Cython extension at install time and
pulls in scikit-image, albumentations and matplotlib for the three functions needed here. These
follow its model_zoo code (scrfd.py, arcface_onnx.py, utils/face_align.py): the same input
normalisation ((x - 127.5) / 128 for SCRFD, (x - 127.5) / 127.5 for ArcFace), anchor decoding,
NMS at 0.4 and the same five-point template.
"""

from __future__ import annotations

import functools
import pathlib
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from recognition.core.backends.packs import DET_SIZE, REC_SIZE, SCRFD_ANCHORS, SCRFD_STRIDES
from recognition.core.detection import (
    DetectedFace,
    around_drawn_box,
    best_for_drawn_box,
    clipped_face,
)
from recognition.core.geometry import nms
from recognition.core.pipeline import Detected
from recognition.core.versions import ARCFACE_DIM

# InsightFace's five-point template for a 112x112 chip: eye centres, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
NMS_THRESHOLD = 0.4


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) taking src points nearest to dst
    in least squares (Umeyama 1991, as skimage's SimilarityTransform.estimate)."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum() / s.var(0).sum())
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def norm_crop(rgb: np.ndarray, landmarks: np.ndarray, size: int = REC_SIZE) -> np.ndarray:
    """The aligned (size, size, 3) uint8 chip of a face with SCRFD's five points."""
    dst = ARCFACE_TEMPLATE * (size / 112.0)
    forward = np.vstack([similarity_transform(landmarks, dst), [0, 0, 1]])
    inverse = np.linalg.inv(forward)[:2].ravel()
    chip = Image.fromarray(rgb).transform(
        (size, size), Image.Transform.AFFINE, tuple(inverse), Image.Resampling.BILINEAR
    )
    return np.asarray(chip, dtype=np.uint8)


def _anchor_centres(stride: int) -> np.ndarray:
    cells = DET_SIZE // stride
    ys, xs = np.mgrid[:cells, :cells]
    grid = np.stack([xs, ys], axis=-1).astype(np.float32)
    centres = (grid * stride).reshape(-1, 2)
    return np.repeat(centres, SCRFD_ANCHORS, axis=0)


def _session(path: pathlib.Path, threads: int, device: str) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), options, providers=providers)


class InsightFacePack:
    """An installed pack (recognition/core/backends/packs.py checked its files)."""

    chip_size = REC_SIZE
    dimension = ARCFACE_DIM

    def __init__(
        self,
        version: str,
        detector: pathlib.Path,
        recognizer: pathlib.Path,
        *,
        min_face_px: int = 40,
        score_threshold: float = 0.5,
        threads: int = 0,
        device: str = "",
    ) -> None:
        self.name = self.version = version
        self.detector_id = f"scrfd/{detector.name}"
        self.min_face_px = min_face_px
        self.score_threshold = score_threshold
        self._det = _session(detector, threads, device)
        self._rec = _session(recognizer, threads, device)
        self._det_input = self._det.get_inputs()[0].name  # type: ignore[attr-defined]
        self._rec_input = self._rec.get_inputs()[0].name  # type: ignore[attr-defined]

    # detection ---------------------------------------------------------------------------

    def _raw(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Boxes (N, 4), scores (N,), points (N, 5, 2) in image pixels, after NMS."""
        height, width = rgb.shape[:2]
        scale = min(DET_SIZE / height, DET_SIZE / width)
        new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
        canvas = np.zeros((DET_SIZE, DET_SIZE, 3), dtype=np.float32)
        resized = Image.fromarray(rgb).resize((new_w, new_h), Image.Resampling.BILINEAR)
        canvas[:new_h, :new_w] = np.asarray(resized, dtype=np.float32)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self._det.run(None, {self._det_input: blob})  # type: ignore[attr-defined]
        boxes, scores, points = [], [], []
        for i, stride in enumerate(SCRFD_STRIDES):
            score = np.asarray(outs[i]).reshape(-1)
            dist = np.asarray(outs[i + 3]).reshape(-1, 4) * stride
            kps = np.asarray(outs[i + 6]).reshape(-1, 10) * stride
            centres = _anchor_centres(stride)
            keep = np.where(score >= self.score_threshold)[0]
            c = centres[keep]
            d = dist[keep]
            boxes.append(
                np.stack(
                    [c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]],
                    axis=-1,
                )
            )
            k = kps[keep].reshape(-1, 5, 2) + c[:, None, :]
            points.append(k)
            scores.append(score[keep])
        all_boxes = np.concatenate(boxes) / scale
        all_scores = np.concatenate(scores)
        all_points = np.concatenate(points) / scale
        keep_idx = nms(all_boxes, all_scores, NMS_THRESHOLD)
        return all_boxes[keep_idx], all_scores[keep_idx], all_points[keep_idx]

    def _faces(self, rgb: np.ndarray, min_face_px: int) -> list[DetectedFace]:
        boxes, scores, points = self._raw(rgb)
        faces = []
        for box, score, pts in zip(boxes, scores, points, strict=True):
            face = clipped_face(box, rgb.shape[:2], score, pts, min_face_px)
            if face is not None:
                faces.append(face)
        return faces

    def detect_and_align(self, rgb: np.ndarray) -> Detected:
        t0 = time.perf_counter()
        faces = self._faces(rgb, self.min_face_px)
        t1 = time.perf_counter()
        chips = self.align(rgb, faces)
        return Detected(faces, chips, (t1 - t0) * 1000, (time.perf_counter() - t1) * 1000)

    def align(self, rgb: np.ndarray, faces: Sequence[DetectedFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, REC_SIZE, REC_SIZE, 3), dtype=np.uint8)
        return np.stack([norm_crop(rgb, np.asarray(f.landmarks)) for f in faces], axis=0)

    def face_in_box(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> DetectedFace:
        """The detection overlapping a drawn box most (searched around the box); else the box
        itself with the template's five points placed in it (score 0)."""
        left, top, w, h = box
        x0, y0, x1, y1 = around_drawn_box(rgb.shape[:2], box)
        region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        found = best_for_drawn_box(self._faces(region, 0), (x0, y0), box, self.min_face_px)
        if found is not None:
            return found
        points = ARCFACE_TEMPLATE / 112.0 * np.array([w, h]) + np.array([left, top])
        return DetectedFace(
            left=left,
            top=top,
            right=left + w,
            bottom=top + h,
            score=0.0,
            landmarks=tuple((float(x), float(y)) for x, y in points),
            too_small=min(w, h) < self.min_face_px,
        )

    # embedding ---------------------------------------------------------------------------

    def embed(self, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (112, 112, 3):
            raise ValueError(f"expected (N, 112, 112, 3) uint8 chips, got {chips.shape}")
        if not len(chips):
            return np.zeros((0, self.dimension), dtype=np.float32)
        blob = ((chips.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
        out = np.asarray(
            self._rec.run(None, {self._rec_input: np.ascontiguousarray(blob)})[0],  # type: ignore[attr-defined]
            dtype=np.float32,
        )
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: np.ndarray = (out / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


@functools.cache
def load_pack(
    version: str,
    folder: str,
    detector: str,
    recognizer: str,
    threads: int,
    device: str,
    min_face_px: int,
) -> InsightFacePack:
    """An installed pack's sessions, opened once per process."""
    root = pathlib.Path(folder)
    return InsightFacePack(
        version,
        root / detector,
        root / recognizer,
        min_face_px=min_face_px,
        threads=threads,
        device=device,
    )
