"""The torch port of dlib's face ResNet against dlib itself, on real faces."""

from __future__ import annotations

import os
import pathlib

import dlib
import numpy as np
import pytest

from recognition.core.detection import align_faces, detect_faces, model_path
from recognition.core.embedding import (
    DLIB_RESNET_FILE,
    DlibReferenceEmbedder,
    DlibResnetEmbedder,
    ModelFormatError,
    get_embedder,
    load_dlib_resnet,
)
from recognition.core.images import decode_image
from recognition.core.versions import DLIB_RESNET_VERSION

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))

PHOTOS = [
    "photos/obama/obama_small.jpg",
    "photos/obama/obama-240p.jpg",
    "photos/biden/biden2.jpg",
    "photos/kit_harington/john2.jpeg",
    "photos/alex_lacamoire/alex-lacamoire.png",
    "photos/_multi_face/kit_with_rose.jpg",
    "lfw/Al_Gore/Al_Gore_0001.jpg",
    "lfw/Al_Gore/Al_Gore_0002.jpg",
    "lfw/Abdullah_Gul/Abdullah_Gul_0001.jpg",
    "lfw/Anna_Kournikova/Anna_Kournikova_0001.jpg",
    "lfw/Ashanti/Ashanti_0001.jpg",
]


def load_rgb(path: pathlib.Path) -> np.ndarray:
    return decode_image(path, max_pixels=50_000_000).rgb


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    """Aligned chips of 12 real faces (kit_with_rose holds two)."""
    found = []
    for name in PHOTOS:
        image = load_rgb(FACES / name)
        found.append(align_faces(image, detect_faces(image)))
    result = np.concatenate(found)
    assert len(result) == len(PHOTOS) + 1
    return result


@pytest.fixture(scope="module")
def reference(chips: np.ndarray) -> np.ndarray:
    return DlibReferenceEmbedder().embed(chips)


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return model_path(DLIB_RESNET_FILE).read_bytes()


def test_it_matches_dlib_compute_face_descriptor_on_real_faces(
    chips: np.ndarray, reference: np.ndarray
) -> None:
    embeddings = get_embedder().embed(chips)
    assert embeddings.dtype == np.float32
    assert embeddings.shape == (len(chips), 128)
    assert np.abs(embeddings - reference).max() <= 1e-5
    # Not L2-normalised, like dlib's output.
    assert np.all(np.linalg.norm(embeddings, axis=1) > 1.0)


def test_it_embeds_the_chip_dlib_full_image_call_embeds() -> None:
    image = load_rgb(FACES / "photos/_multi_face/kit_with_rose.jpg")
    faces = detect_faces(image)
    facerec = dlib.face_recognition_model_v1(str(model_path(DLIB_RESNET_FILE)))
    full_image = []
    for face in faces:
        rect = dlib.rectangle(face.left, face.top, face.right - 1, face.bottom - 1)
        points = [dlib.point(round(x), round(y)) for x, y in face.landmarks]
        shape = dlib.full_object_detection(rect, points)
        full_image.append(np.asarray(facerec.compute_face_descriptor(image, shape)))
    embeddings = get_embedder().embed(align_faces(image, faces))
    assert np.abs(embeddings - np.stack(full_image)).max() <= 1e-5


def test_it_separates_people(chips: np.ndarray) -> None:
    embeddings = get_embedder().embed(chips)
    obama_small, obama_240p, biden = embeddings[0], embeddings[1], embeddings[2]
    gore_1, gore_2 = embeddings[7], embeddings[8]
    assert np.linalg.norm(obama_small - obama_240p) < 0.6
    assert np.linalg.norm(gore_1 - gore_2) < 0.6
    assert np.linalg.norm(obama_small - biden) > 0.6
    assert np.linalg.norm(obama_small - gore_1) > 0.6


def test_it_gives_the_same_embedding_in_a_batch_as_alone(chips: np.ndarray) -> None:
    embedder = get_embedder()
    some = chips[::2]  # 6 chips: single calls are the slow part on a busy machine
    one_by_one = np.concatenate([embedder.embed(some[i : i + 1]) for i in range(len(some))])
    batched = embedder.embed(some)
    # Chunk boundaries must not matter either.
    chunked = DlibResnetEmbedder(embedder.module, batch_size=4).embed(some)
    assert np.abs(batched - one_by_one).max() <= 1e-6
    assert np.abs(chunked - batched).max() <= 1e-6


def test_it_returns_an_empty_array_for_an_empty_batch() -> None:
    empty = np.zeros((0, 150, 150, 3), dtype=np.uint8)
    for embedder in (get_embedder(), DlibReferenceEmbedder()):
        result = embedder.embed(empty)
        assert result.shape == (0, 128)
        assert result.dtype == np.float32


def test_it_refuses_chips_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="150, 150, 3"):
        get_embedder().embed(np.zeros((1, 112, 112, 3), dtype=np.uint8))


def test_it_loads_the_weights_once_per_process() -> None:
    embedder = get_embedder()
    assert get_embedder() is embedder
    assert embedder.version == DLIB_RESNET_VERSION
    assert embedder.dimension == 128


def test_it_refuses_a_truncated_file(tmp_path: pathlib.Path, model_bytes: bytes) -> None:
    for cut in (100, len(model_bytes) // 2, len(model_bytes) - 7):
        path = tmp_path / f"cut{cut}.dat"
        path.write_bytes(model_bytes[:cut])
        with pytest.raises(ModelFormatError, match="truncated"):
            load_dlib_resnet(path)


def test_it_refuses_trailing_bytes(tmp_path: pathlib.Path, model_bytes: bytes) -> None:
    path = tmp_path / "longer.dat"
    path.write_bytes(model_bytes + b"\x01\x00")
    with pytest.raises(ModelFormatError, match="bytes left"):
        load_dlib_resnet(path)


def test_it_refuses_a_corrupted_file(tmp_path: pathlib.Path, model_bytes: bytes) -> None:
    path = tmp_path / "corrupt.dat"
    at = model_bytes.index(b"affine_") - 2
    # A garbage control byte where the length of "affine_" is stored.
    path.write_bytes(model_bytes[:at] + b"\x7f" + model_bytes[at + 1 :])
    with pytest.raises(ModelFormatError):
        load_dlib_resnet(path)


def test_it_refuses_a_changed_layer_type(tmp_path: pathlib.Path, model_bytes: bytes) -> None:
    path = tmp_path / "htan.dat"
    path.write_bytes(model_bytes.replace(b"\x01\x05relu_", b"\x01\x05htan_", 1))
    with pytest.raises(ModelFormatError, match="relu_"):
        load_dlib_resnet(path)


def test_it_refuses_a_changed_wiring(tmp_path: pathlib.Path, model_bytes: bytes) -> None:
    # Layer versions are stored outer to inner, each as b"\x01" + version; 1 marks a tag or skip
    # layer, which carries no weights. The innermost five are the first residual block's tag,
    # then max_pool, relu, affine and the first convolution. Moving that tag one layer outwards
    # rewires a residual connection while every weight stays where it was.
    end = model_bytes.index(b"\x01\x15input_rgb_image_sized")
    assert model_bytes[end - 12 : end] == b"\x01\x02\x01\x01\x01\x02\x01\x02\x01\x02\x01\x03"
    rewired = model_bytes[: end - 12] + b"\x01\x01\x01\x02" + model_bytes[end - 8 :]
    path = tmp_path / "rewired.dat"
    path.write_bytes(rewired)
    with pytest.raises(ModelFormatError, match="layer sequence"):
        load_dlib_resnet(path)
