"""Face detection, 5-point landmarks and alignment.

Detectors: CenterFace (the default; recognition/core/centerface.py), dlib's HOG and dlib's MMOD
CNN (face_recognition_models). Whatever the detector, a face comes out in dlib's conventions,
because the embedding network was trained on them: a HOG-style box and dlib's 5 points (two
corners per eye, the base of the nose), predicted by dlib's shape predictor at full resolution.
For CenterFace the predictor's box is derived from CenterFace's own 5 landmarks
(`box_from_landmarks`), which measured better on LFW than its face box, calibrated or not.

Pure functions: images in, frozen dataclasses out. Models are loaded once per process.
"""

from __future__ import annotations

import functools
import importlib.resources
import importlib.util
import pathlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

from recognition.core import centerface
from recognition.core.geometry import iou

MODELS_PACKAGE = "face_recognition_models"


DETECTORS = ("centerface", "hog", "cnn")


@dataclass(frozen=True)
class DetectorConfig:
    # "centerface", "hog" or "cnn" (dlib MMOD: about 40 s per photo on CPU, GPU only)
    model: str = "centerface"
    upsample: int = 1  # hog, cnn
    max_side: int = 1600  # hog, cnn: larger images are downscaled; boxes are mapped back
    # Smaller faces are kept but flagged too_small; CenterFace reads a photo at the scale that
    # still finds faces of this size.
    min_face_px: int = 40
    score_threshold: float = 0.5  # centerface
    threads: int = 0  # centerface: onnxruntime threads, 0 = every core this process may use
    device: str = ""  # centerface: "cpu", "cuda"; "" = CUDA when onnxruntime has it


@dataclass(frozen=True)
class DetectedFace:
    """A face box in original image pixels, clipped to the image; right/bottom are exclusive."""

    left: int
    top: int
    right: int
    bottom: int
    score: float
    landmarks: tuple[tuple[float, float], ...]
    too_small: bool

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def clipped_face(
    box: Sequence[float],
    image_size: tuple[int, int],
    score: float,
    landmarks: Iterable[Sequence[float]],
    min_face_px: int,
) -> DetectedFace | None:
    """A detector's (left, top, right, bottom) box rounded and clipped to an image of
    (height, width), or None when nothing of it is left inside."""
    height, width = image_size
    left, top = max(0, round(box[0])), max(0, round(box[1]))
    right, bottom = min(width, round(box[2])), min(height, round(box[3]))
    if right <= left or bottom <= top:
        return None
    return DetectedFace(
        left=left,
        top=top,
        right=right,
        bottom=bottom,
        score=float(score),
        landmarks=tuple((float(x), float(y)) for x, y in landmarks),
        too_small=min(right - left, bottom - top) < min_face_px,
    )


# A detection must overlap a hand-drawn box this much to stand in for it.
DRAWN_BOX_IOU = 0.3


def around_drawn_box(
    image_size: tuple[int, int], box: tuple[int, int, int, int]
) -> tuple[int, int, int, int]:
    """The region searched for a face a person drew (left, top, width, height): the box with
    half its size around it, clipped to an image of (height, width), as (x0, y0, x1, y1)."""
    height, width = image_size
    left, top, w, h = box
    return (
        max(0, left - w // 2),
        max(0, top - h // 2),
        min(width, left + w + w // 2),
        min(height, top + h + h // 2),
    )


def best_for_drawn_box(
    found: Iterable[DetectedFace],
    offset: tuple[int, int],
    box: tuple[int, int, int, int],
    min_face_px: int,
) -> DetectedFace | None:
    """Of the faces found in a region cut out at `offset` (x0, y0), the one overlapping the drawn
    box (left, top, width, height) most, moved back to image pixels; None if none overlaps
    by DRAWN_BOX_IOU."""
    x0, y0 = offset
    left, top, w, h = box
    drawn = (left, top, left + w, top + h)
    best: tuple[float, DetectedFace] | None = None
    for f in found:
        moved = (f.left + x0, f.top + y0, f.right + x0, f.bottom + y0)
        overlap = iou(moved, drawn)
        if overlap >= DRAWN_BOX_IOU and (best is None or overlap > best[0]):
            best = (
                overlap,
                DetectedFace(
                    *moved,
                    score=f.score,
                    landmarks=tuple((x + x0, y + y0) for x, y in f.landmarks),
                    too_small=min(f.width, f.height) < min_face_px,
                ),
            )
    return best[1] if best else None


def model_path(name: str) -> pathlib.Path:
    """Path of a model file shipped in the face_recognition_models wheel.

    The package's own __init__ imports pkg_resources, which recent setuptools no longer ship,
    so the package is resolved from its import spec without executing it.
    """
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None:
        raise FileNotFoundError(f"{MODELS_PACKAGE} is not installed")
    package = importlib.util.module_from_spec(spec)
    resource = importlib.resources.files(package) / "models" / name
    path = pathlib.Path(str(resource))
    if not path.is_file():
        raise FileNotFoundError(f"{name} is not in {MODELS_PACKAGE}")
    return path


@functools.cache
def _hog_detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@functools.cache
def _cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))


@functools.cache
def _landmark_predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_path("shape_predictor_5_face_landmarks.dat")))


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _downscaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    longest = max(height, width)
    if longest <= max_side:
        return image, 1.0
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(image).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(small), scale


# dlib's HOG box relative to CenterFace's 5 landmarks: corners = centroid + rms * offset, where
# rms is the root mean square distance of the 5 points from their centroid. Medians over 2,007
# of the 2,034 single-image identities of ../shared/faces/lfw, where both detectors found the
# face (`python -m evaluation.detector_calibration`). The box is axis-aligned, like HOG's.
LANDMARK_BOX = ((-2.0755, -2.0095), (1.8133, 1.8205))


def box_from_landmarks(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """The HOG-style box (left, top, right, bottom) of a face from CenterFace's 5 landmarks."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centre = points.mean(axis=0)
    rms = float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean()))
    (x0, y0), (x1, y1) = LANDMARK_BOX
    return (
        float(centre[0] + rms * x0),
        float(centre[1] + rms * y0),
        float(centre[0] + rms * x1),
        float(centre[1] + rms * y1),
    )


def _centerface_detections(
    image: np.ndarray, config: DetectorConfig
) -> list[tuple[dlib.rectangle, float]]:
    found = centerface.detect(
        image,
        centerface.CenterFaceConfig(
            min_face_px=config.min_face_px, score_threshold=config.score_threshold
        ),
        centerface.get_centerface(config.threads, config.device),
    )
    rects = []
    for face in found:
        left, top, right, bottom = box_from_landmarks(np.asarray(face.landmarks))
        rect = dlib.rectangle(round(left), round(top), round(right) - 1, round(bottom) - 1)
        rects.append((rect, face.score))
    return rects


def _raw_detections(
    image: np.ndarray, config: DetectorConfig
) -> list[tuple[dlib.rectangle, float]]:
    if config.model == "hog":
        rects, scores, _ = _hog_detector().run(image, config.upsample, 0.0)
        return list(zip(rects, scores, strict=True))
    if config.model == "cnn":
        return [(d.rect, d.confidence) for d in _cnn_detector()(image, config.upsample)]
    raise ValueError(f"unknown detector model {config.model!r}")


def detect_faces(
    image: np.ndarray, config: DetectorConfig = DetectorConfig()
) -> list[DetectedFace]:
    """Faces in an HxWx3 uint8 RGB image, in detector order, with boxes in original pixels."""
    image = _as_rgb(image)
    height, width = image.shape[:2]
    if config.model == "centerface":
        # CenterFace picks its own scales from min_face_px; its boxes are in original pixels.
        scale, raw = 1.0, _centerface_detections(image, config)
    else:
        small, scale = _downscaled(image, config.max_side)
        raw = _raw_detections(small, config)
    predictor = _landmark_predictor()
    faces = []
    for rect, score in raw:
        # Landmarks come from the full-resolution image so that the chips keep all the detail
        # the downscaled detection pass threw away.
        full = dlib.rectangle(
            round(rect.left() / scale),
            round(rect.top() / scale),
            round((rect.right() + 1) / scale) - 1,
            round((rect.bottom() + 1) / scale) - 1,
        )
        shape = predictor(image, full)
        face = clipped_face(
            (full.left(), full.top(), full.right() + 1, full.bottom() + 1),
            (height, width),
            score,
            ((p.x, p.y) for p in shape.parts()),
            config.min_face_px,
        )
        if face is not None:
            faces.append(face)
    return faces


def _shape(face: DetectedFace) -> dlib.full_object_detection:
    rect = dlib.rectangle(face.left, face.top, face.right - 1, face.bottom - 1)
    points = [dlib.point(round(x), round(y)) for x, y in face.landmarks]
    return dlib.full_object_detection(rect, points)


def align_faces(
    image: np.ndarray, faces: Sequence[DetectedFace], size: int = 150, padding: float = 0.25
) -> np.ndarray:
    """(N, size, size, 3) uint8 chips, the same pixels dlib's full-image descriptor call embeds."""
    if not faces:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    image = _as_rgb(image)
    shapes = dlib.full_object_detections()
    shapes.extend(_shape(face) for face in faces)
    return np.stack(dlib.get_face_chips(image, shapes, size=size, padding=padding))


def face_in_box(
    image: np.ndarray, box: tuple[int, int, int, int], config: DetectorConfig = DetectorConfig()
) -> DetectedFace:
    """The face a person drew a box around (left, top, width, height in image pixels).

    The detector runs on the area around the box first, twice upsampled so that a face too
    small for the whole-photo pass is found: a detection overlapping the box gives a tighter
    box and better landmarks. Otherwise the landmarks are predicted inside the drawn box as it
    is (score 0). The caller has clamped the box to the image.
    """
    image = _as_rgb(image)
    left, top, w, h = box
    x0, y0, x1, y1 = around_drawn_box(image.shape[:2], box)
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    local = DetectorConfig(
        model="hog", upsample=max(config.upsample, 2), max_side=800, min_face_px=0
    )
    found = best_for_drawn_box(detect_faces(region, local), (x0, y0), box, config.min_face_px)
    if found is not None:
        return found
    rect = dlib.rectangle(left, top, left + w - 1, top + h - 1)
    shape = _landmark_predictor()(image, rect)
    return DetectedFace(
        left=left,
        top=top,
        right=left + w,
        bottom=top + h,
        score=0.0,
        landmarks=tuple((float(p.x), float(p.y)) for p in shape.parts()),
        too_small=min(w, h) < config.min_face_px,
    )
