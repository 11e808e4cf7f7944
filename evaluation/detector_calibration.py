"""Fits `recognition.core.detection.LANDMARK_BOX`: where dlib's HOG puts its box relative to
CenterFace's 5 landmarks, so that dlib's 5-point predictor (trained on HOG's boxes) gets the box
it expects from a CenterFace detection.

    python -m evaluation.detector_calibration [--lfw ../shared/faces/lfw]

Uses the identities with a single image (never in the verification pairs, never a probe) where
both detectors find the face nearest the image centre at about the same place; prints the
medians of the HOG box corners in units of the landmarks' RMS radius around their centroid.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
from collections.abc import Sequence

import numpy as np

from recognition.core import centerface
from recognition.core.detection import DetectorConfig, detect_faces
from recognition.core.images import DEFAULT_MAX_PIXELS, decode_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})


def _central(boxes: Sequence[tuple[float, float, float, float]], w: int, h: int) -> int | None:
    if not boxes:
        return None
    return min(
        range(len(boxes)),
        key=lambda i: (boxes[i][0] + boxes[i][2] - w) ** 2 + (boxes[i][1] + boxes[i][3] - h) ** 2,
    )


def landmark_frame_corners(
    landmarks: np.ndarray, box: tuple[float, float, float, float]
) -> np.ndarray:
    """The box's corners ((x0, y0), (x1, y1)) relative to the landmarks' centroid, in units of
    their RMS radius: the inverse of `recognition.core.detection.box_from_landmarks`."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    centre = points.mean(axis=0)
    rms = float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean()))
    corners = np.array([[box[0], box[1]], [box[2], box[3]]], dtype=np.float64)
    return (corners - centre) / rms


def fit(lfw: pathlib.Path) -> tuple[np.ndarray, int, int]:
    """(median corners (2, 2), faces used, single-image identities)."""
    people = collections.defaultdict(list)
    for path in sorted(lfw.glob("*/*")):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            people[path.parent.name].append(path)
    singles = [paths[0] for paths in people.values() if len(paths) == 1]
    hog = DetectorConfig(model="hog")
    config = centerface.CenterFaceConfig(min_face_px=DetectorConfig().min_face_px)
    net = centerface.get_centerface()
    frames = []
    for path in singles:
        rgb = decode_image(path, max_pixels=DEFAULT_MAX_PIXELS).rgb
        h, w = rgb.shape[:2]
        hog_faces = detect_faces(rgb, hog)
        cf_faces = centerface.detect(rgb, config, net)
        i = _central([(f.left, f.top, f.right, f.bottom) for f in hog_faces], w, h)
        j = _central([(f.left, f.top, f.right, f.bottom) for f in cf_faces], w, h)
        if i is None or j is None:
            continue
        box, face = hog_faces[i], cf_faces[j]
        centre_gap = np.hypot(
            (box.left + box.right - face.left - face.right) / 2,
            (box.top + box.bottom - face.top - face.bottom) / 2,
        )
        if centre_gap > 0.3 * face.width:  # not the same face
            continue
        corners = (float(box.left), float(box.top), float(box.right), float(box.bottom))
        frames.append(landmark_frame_corners(np.asarray(face.landmarks), corners))
    return np.median(np.stack(frames), axis=0), len(frames), len(singles)


def main(argv: Sequence[str] | None = None) -> None:
    repo = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = repo.parent / "shared" / "faces" / "lfw"
    parser.add_argument("--lfw", type=pathlib.Path, default=default)
    args = parser.parse_args(argv)
    corners, used, singles = fit(args.lfw)
    (x0, y0), (x1, y1) = corners
    print(f"{used} faces of {singles} single-image identities")
    print(f"LANDMARK_BOX = (({x0:.4f}, {y0:.4f}), ({x1:.4f}, {y1:.4f}))")


if __name__ == "__main__":
    main()
