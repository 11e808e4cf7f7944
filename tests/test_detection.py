"""Detection (CenterFace by default, HOG), 5-point landmarks and chips on the real photos in
../shared/faces."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from recognition.core.detection import (
    DetectorConfig,
    align_faces,
    box_from_landmarks,
    detect_faces,
    model_path,
)
from recognition.core.geometry import iou
from recognition.core.images import decode_image

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))


def load_rgb(relative: str) -> np.ndarray:
    return decode_image(FACES / relative, max_pixels=50_000_000).rgb


def resized(image: np.ndarray, factor: float) -> np.ndarray:
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


HOG = DetectorConfig(model="hog")


def test_it_finds_the_three_faces_in_obama_and_biden_with_hog() -> None:
    image = load_rgb("photos/_multi_face/obama_and_biden.jpg")
    faces = detect_faces(image, HOG)
    assert len(faces) == 3
    # Biden and Obama, then the girl at the bottom right (the weakest detection).
    by_x = sorted(faces, key=lambda f: f.left)
    assert [f.left // 100 for f in by_x] == [7, 11, 15]
    assert all(180 <= f.width <= 210 for f in by_x[:2])
    assert by_x[2].score < min(f.score for f in by_x[:2])
    assert not any(f.too_small for f in faces)


def test_it_returns_boxes_and_landmarks_in_original_pixels_after_downscaling() -> None:
    image = load_rgb("photos/obama/obama-480p.jpg")
    large = resized(image, 2.0)  # 1706 px wide: detection runs on a 1600 px copy
    assert max(large.shape[:2]) > HOG.max_side
    [face] = detect_faces(image, HOG)
    [big] = detect_faces(large, HOG)
    centre = np.array([(face.left + face.right) / 2, (face.top + face.bottom) / 2])
    big_centre = np.array([(big.left + big.right) / 2, (big.top + big.bottom) / 2])
    # HOG box sizes come from a pyramid, so boxes agree to ~10%; landmarks much closer.
    assert np.abs(big_centre - 2 * centre).max() < 0.1 * big.width
    assert 0.8 < big.width / (2 * face.width) < 1.25
    landmarks = np.array(face.landmarks)
    big_landmarks = np.array(big.landmarks)
    assert np.abs(big_landmarks - 2 * landmarks).max() <= 4


def test_it_maps_boxes_back_from_a_small_detection_copy() -> None:
    image = load_rgb("photos/obama/obama-720p.jpg")
    [full] = detect_faces(image, HOG)
    [small] = detect_faces(image, DetectorConfig(model="hog", max_side=640))
    assert abs(small.left - full.left) < 0.1 * full.width
    assert abs(small.top - full.top) < 0.1 * full.height
    assert 0.8 < small.width / full.width < 1.25
    # Landmarks are predicted on the full-resolution image, not the 640 px copy.
    assert np.abs(np.array(small.landmarks) - np.array(full.landmarks)).max() <= 4


@pytest.mark.parametrize("model", ["centerface", "hog"])
def test_it_flags_faces_smaller_than_min_face_px(model: str) -> None:
    image = load_rgb("photos/obama/obama-240p.jpg")
    [face] = detect_faces(image, DetectorConfig(model=model))
    assert 55 <= face.width <= 70
    assert not face.too_small
    [strict] = detect_faces(image, DetectorConfig(model=model, min_face_px=100))
    assert strict.too_small
    [tiny] = detect_faces(resized(image, 0.5), DetectorConfig(model=model))
    assert tiny.width < 40
    assert tiny.too_small


@pytest.mark.parametrize("model", ["centerface", "hog"])
def test_it_clips_boxes_to_the_image(model: str) -> None:
    image = load_rgb("photos/obama/obama_partial_face.jpg")
    [face] = detect_faces(image, DetectorConfig(model=model))
    # The face is cut by the left edge: the box starts left of the image before clipping.
    assert face.left == 0
    assert 0 < face.right <= image.shape[1]
    assert 0 <= face.top < face.bottom <= image.shape[0]


def test_centerface_is_the_default_and_gives_boxes_in_hogs_convention() -> None:
    assert DetectorConfig().model == "centerface"
    groups = [("obama_and_biden.jpg", 3), ("kit_with_rose.jpg", 2), ("two_people.jpg", 2)]
    for name, count in groups:
        image = load_rgb(f"photos/_multi_face/{name}")
        faces, hog = detect_faces(image), detect_faces(image, HOG)
        assert len(faces) == len(hog) == count
        # The embedding network was trained on dlib's chips: the box the 5-point predictor gets
        # from CenterFace's landmarks is calibrated to HOG's, so each face has its HOG twin.
        for face in faces:
            box = (face.left, face.top, face.right, face.bottom)
            assert max(iou(box, (h.left, h.top, h.right, h.bottom)) for h in hog) > 0.6, name
            assert 0.55 < face.score <= 1.0


def test_it_finds_and_aligns_a_face_that_fills_a_150px_crop() -> None:
    image = load_rgb("photos/obama/obama.jpg")
    cx, cy, half = 493, 256, 140  # the face's centre; the crop cuts forehead and chin
    tight = np.ascontiguousarray(
        resized(image[cy - half : cy + half, cx - half : cx + half], 150 / 280)
    )
    assert tight.shape == (150, 150, 3)
    [face] = detect_faces(tight)
    assert face.width > 90 and not face.too_small
    [chip] = align_faces(tight, [face])
    assert chip.std() > 20


def test_box_from_landmarks_follows_the_face_in_position_and_scale() -> None:
    points = np.array([[40, 40], [60, 40], [50, 52], [42, 62], [58, 62]], dtype=np.float64)
    x0, y0, x1, y1 = box_from_landmarks(points)
    assert x0 < 40 and x1 > 60 and y0 < 40 and y1 > 62
    assert abs((x0 + x1) / 2 - 50) < 2  # a symmetric face gives a box centred on it
    moved = box_from_landmarks(points * 2 + 100)
    np.testing.assert_allclose(moved, np.array([x0, y0, x1, y1]) * 2 + 100)


def test_it_gives_five_landmarks_on_the_face() -> None:
    image = load_rgb("photos/_multi_face/kit_with_rose.jpg")
    faces = detect_faces(image)
    assert len(faces) == 2
    for face in faces:
        assert len(face.landmarks) == 5
        xs, ys = zip(*face.landmarks, strict=True)
        assert face.left <= min(xs) and max(xs) <= face.right
        assert face.top <= min(ys) and max(ys) <= face.bottom


@pytest.mark.parametrize("model", ["centerface", "hog"])
def test_it_finds_no_faces_in_the_nonface_images(model: str) -> None:
    names = sorted(p.name for p in (FACES / "nonface").iterdir())
    assert len(names) == 14
    config = DetectorConfig(model=model)
    found = {name: len(detect_faces(load_rgb(f"nonface/{name}"), config)) for name in names}
    assert found == dict.fromkeys(names, 0)


def test_it_makes_chips_of_the_requested_size() -> None:
    image = load_rgb("photos/_multi_face/kit_with_rose.jpg")
    faces = detect_faces(image)
    chips = align_faces(image, faces)
    assert chips.shape == (2, 150, 150, 3)
    assert chips.dtype == np.uint8
    assert chips.std() > 20  # real image content, not a blank chip
    assert align_faces(image, faces, size=112).shape == (2, 112, 112, 3)
    assert align_faces(image, []).shape == (0, 150, 150, 3)


def test_it_refuses_images_that_are_not_rgb_uint8() -> None:
    image = load_rgb("photos/obama/obama_small.jpg")
    with pytest.raises(ValueError, match="RGB"):
        detect_faces(image[:, :, 0])
    with pytest.raises(ValueError, match="RGB"):
        detect_faces(image.astype(np.float32))
    with pytest.raises(ValueError, match="unknown detector"):
        detect_faces(image, DetectorConfig(model="yolo"))


def test_it_locates_the_model_files() -> None:
    path = model_path("shape_predictor_5_face_landmarks.dat")
    assert path.is_file() and path.stat().st_size > 1_000_000
    with pytest.raises(FileNotFoundError):
        model_path("no_such_model.dat")


@pytest.mark.parametrize(
    "relative", ["photos/alex_lacamoire/img1.jpg", "photos/kit_harington/john2.jpeg"]
)
def test_centerface_finds_one_face_not_a_face_and_its_part_on_a_4000_px_photo(
    relative: str,
) -> None:
    # The phone-photo size: the fine pass, too fine for a 1,100 px face, found part of it as a
    # second, smaller face inside the whole one (IoU ~0.25, so NMS kept both).
    image = load_rgb(relative)
    photo = resized(image, 4000 / max(image.shape[:2]))
    faces = detect_faces(photo, DetectorConfig(model="centerface"))
    assert len(faces) == 1
    assert faces[0].width > 900
