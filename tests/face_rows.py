"""Face rows with REAL embeddings, without running the whole photo pipeline for every test.

Each photo is detected and embedded once per test session with the real models; tests then
build Photo/Face rows around those vectors so the matching and tagging logic runs on real
distances at the speed of database writes.
"""

from __future__ import annotations

import functools
import hashlib
import itertools

import numpy as np
from django.conf import settings

from gallery.models import Face, Gallery, Photo
from recognition.core.embedding import get_embedder
from recognition.core.images import decode_image
from recognition.core.pipeline import analyse_image
from recognition.runtime import detector_config
from tests.conftest import photo_path

_counter = itertools.count(1)


@functools.cache
def embedder_version() -> str:
    return get_embedder(settings.FACEWEB_EMBEDDER).version


@functools.cache
def real_embedding(relative: str) -> tuple[float, ...]:
    """The largest face's embedding in one of the shared photos."""
    decoded = decode_image(photo_path(relative), max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS)
    faces, _ = analyse_image(
        decoded.rgb, detector_config(), get_embedder(settings.FACEWEB_EMBEDDER)
    )
    assert faces, f"no face found in {relative}"
    best = max(faces, key=lambda f: f.detection.width * f.detection.height)
    return tuple(float(x) for x in best.embedding)


def make_photo(gallery: Gallery, name: str = "photo.jpg") -> Photo:
    n = next(_counter)
    return Photo.objects.create(
        gallery=gallery,
        original=f"originals/{gallery.pk}/{n}.jpg",
        original_name=name,
        sha256=hashlib.sha256(f"{name}-{n}".encode()).hexdigest(),
        status=Photo.Status.DONE,
        width=1000,
        height=1000,
    )


def make_face(
    photo: Photo,
    relative: str,
    *,
    left: int = 100,
    trusted: bool = True,
    jitter: float = 0.0,
) -> Face:
    vector = np.asarray(real_embedding(relative), dtype=np.float32)
    if jitter:
        vector = vector + np.random.default_rng(left).normal(scale=jitter, size=vector.shape)
    return Face.objects.create(
        photo=photo,
        left=left,
        top=100,
        width=200,
        height=200,
        embedding=vector.astype(np.float32).tolist(),
        embedder_version=embedder_version(),
        ood_status=Face.Quality.ACCEPTED if trusted else Face.Quality.REJECTED,
    )


def face_in_new_photo(gallery: Gallery, relative: str, **kwargs: object) -> Face:
    return make_face(make_photo(gallery, relative.rsplit("/", 1)[-1]), relative, **kwargs)
