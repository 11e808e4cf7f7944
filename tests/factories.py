"""The one place tests build rows: factory-boy factories for every model, real embeddings for
faces, and bulk helpers for the search tests.

- `UserFactory` ... `FaceFactory`, `make_world`: rows with real (small) image files and no
  pipeline, so a web or API test costs only database writes. The pipeline itself runs in the
  tests that upload.
- `real_embedding`, `make_face`, `face_in_new_photo`: faces carrying the REAL embedding of a
  shared photo (each photo is detected and embedded once per test session), so matching and
  tagging run on real distances.
- `make_people`, `make_photos`, `make_faces`: bulk rows for search tests with many vectors.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import factory
import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from factory.django import DjangoModelFactory
from PIL import Image

from gallery.models import Face, Gallery, GalleryMember, Person, Photo, UploadBatch
from recognition.core.embedding import get_embedder
from recognition.core.images import decode_image
from recognition.core.pipeline import analyse_image
from recognition.core.versions import DLIB_RESNET_VERSION
from recognition.runtime import detector_config
from tests.conftest import PASSWORD, photo_path

VERSION = DLIB_RESNET_VERSION

# Factories -------------------------------------------------------------------------------------


@cache
def jpeg(width: int = 64, height: int = 48, color: tuple[int, int, int] = (90, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="JPEG")
    return out.getvalue()


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    password = factory.django.Password(PASSWORD)


class GalleryFactory(DjangoModelFactory):
    class Meta:
        model = Gallery

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Gallery {n}")
    tags = factory.LazyFunction(list)


class BatchFactory(DjangoModelFactory):
    class Meta:
        model = UploadBatch

    gallery = factory.SubFactory(GalleryFactory)
    created_by = factory.SelfAttribute("gallery.owner")


class PhotoFactory(DjangoModelFactory):
    """A processed photo with an original, a thumbnail and a preview stored under MEDIA_ROOT."""

    class Meta:
        model = Photo

    gallery = factory.SubFactory(GalleryFactory)
    uploaded_by = factory.SelfAttribute("gallery.owner")
    original_name = factory.Sequence(lambda n: f"photo{n}.jpg")
    original = factory.django.FileField(filename="o.jpg", data=jpeg(640, 480))
    thumbnail = factory.django.FileField(filename="t.jpg", data=jpeg(64, 48))
    preview = factory.django.FileField(filename="p.jpg", data=jpeg(320, 240))
    sha256 = factory.Sequence(lambda n: f"{n:064x}")
    content_type = "image/jpeg"
    size_bytes = 1000
    width = 640
    height = 480
    status = Photo.Status.DONE


class PersonFactory(DjangoModelFactory):
    class Meta:
        model = Person

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Person {n}")


class FaceFactory(DjangoModelFactory):
    class Meta:
        model = Face

    photo = factory.SubFactory(PhotoFactory)
    left = 64
    top = 48
    width = 160
    height = 120
    landmarks = factory.LazyFunction(lambda: [[100.0, 90.0]] * 5)
    det_score = 1.0
    crop = factory.django.FileField(filename="c.jpg", data=jpeg(32, 32))
    ood_status = Face.Quality.ACCEPTED


@dataclass
class World:
    """alice's gallery with one processed photo, one face tagged with her person Ann."""

    gallery: Gallery
    photo: Photo
    face: Face
    person: Person
    batch: UploadBatch


def make_world(alice: User, bob: User | None = None, bob_role: str = "") -> World:
    gallery: Gallery = GalleryFactory.create(owner=alice, name="Holidays", tags=["beach"])
    if bob is not None and bob_role:
        GalleryMember.objects.create(gallery=gallery, user=bob, role=bob_role)
    batch: UploadBatch = BatchFactory.create(gallery=gallery)
    photo: Photo = PhotoFactory.create(gallery=gallery, batch=batch)
    person: Person = PersonFactory.create(owner=alice, name="Ann")
    face: Face = FaceFactory.create(
        photo=photo, person=person, assignment=Face.Assignment.CONFIRMED
    )
    return World(gallery=gallery, photo=photo, face=face, person=person, batch=batch)


# Faces with real embeddings ----------------------------------------------------------------------


_counter = itertools.count(1)


@functools.cache
def embedder_version() -> str:
    return get_embedder(settings.FACEWEB_EMBEDDER).version


@functools.cache
def real_embedding(relative: str) -> tuple[float, ...]:
    """The largest face's embedding in one of the shared photos (computed once per session)."""
    decoded = decode_image(photo_path(relative), max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS)
    faces, _ = analyse_image(
        decoded.rgb, detector_config(), get_embedder(settings.FACEWEB_EMBEDDER)
    )
    assert faces, f"no face found in {relative}"
    best = max(faces, key=lambda f: f.detection.width * f.detection.height)
    return tuple(float(x) for x in best.embedding)


def make_photos(
    gallery: Gallery, count: int, tag: str = "", names: Sequence[str] = ()
) -> list[Photo]:
    """Processed photos with no stored file (rows only), 1000x1000 px."""
    n = next(_counter)
    return Photo.objects.bulk_create(
        [
            Photo(
                gallery=gallery,
                original=f"originals/{gallery.pk}/{tag}{n}-{i}.jpg",
                original_name=names[i] if i < len(names) else f"{tag}{i}.jpg",
                sha256=hashlib.sha256(f"{gallery.pk}/{tag}/{n}/{i}".encode()).hexdigest(),
                status=Photo.Status.DONE,
                width=1000,
                height=1000,
            )
            for i in range(count)
        ]
    )


def make_photo(gallery: Gallery, name: str = "photo.jpg") -> Photo:
    return make_photos(gallery, 1, names=[name])[0]


def make_face(
    photo: Photo,
    relative: str,
    *,
    left: int = 100,
    trusted: bool = True,
    jitter: float = 0.0,
) -> Face:
    """A face in `photo` carrying the real embedding of the shared photo `relative` (moved by
    Gaussian noise of scale `jitter`, to make look-alikes)."""
    vector = np.asarray(real_embedding(relative), dtype=np.float64)
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
    return make_face(make_photo(gallery, relative.rsplit("/", 1)[-1]), relative, **kwargs)  # type: ignore[arg-type]


# Bulk rows for the search tests ------------------------------------------------------------------


def make_people(owner: User, count: int, prefix: str = "person") -> list[Person]:
    return Person.objects.bulk_create(
        [Person(owner=owner, name=f"{prefix} {i}") for i in range(count)]
    )


def make_faces(
    gallery: Gallery,
    vectors: np.ndarray,
    people: Sequence[Person | None],
    *,
    confirmed: bool = True,
    ood_status: str = Face.Quality.ACCEPTED,
    tag: str = "",
) -> list[Face]:
    """One face per vector. Faces of one person go to different photos (the DB forbids two
    faces of one person in a photo): face i lands in photo (number of earlier faces of its
    person)."""
    seen: dict[int | None, int] = {}
    slots = []
    for person in people:
        key = person.pk if person is not None else None
        slots.append(seen.get(key, 0))
        seen[key] = seen.get(key, 0) + 1
    photos = make_photos(gallery, max(slots, default=0) + 1, tag=tag)
    return Face.objects.bulk_create(
        [
            Face(
                photo=photos[slot],
                left=10 * i,
                top=0,
                width=80,
                height=80,
                embedding=np.asarray(vec, dtype=np.float32),
                embedder_version=VERSION,
                ood_status=ood_status,
                person=person,
                assignment=Face.Assignment.CONFIRMED
                if confirmed and person is not None
                else Face.Assignment.NONE,
            )
            for i, (vec, person, slot) in enumerate(zip(vectors, people, slots, strict=True))
        ]
    )


def synthetic_like(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Vectors drawn from a Gaussian with the mean and covariance of real embeddings."""
    rng = np.random.default_rng(seed)
    mean = real.mean(axis=0)
    cov = np.cov(real.T) + 1e-6 * np.eye(real.shape[1])
    return rng.multivariate_normal(mean, cov, size=n).astype(np.float32)


def brute_force(
    query: np.ndarray, vectors: np.ndarray, person_ids: np.ndarray, top_n: int
) -> list[tuple[int, float]]:
    """(person id, distance of the nearest template) in original space, best first."""
    distances = np.linalg.norm(vectors.astype(np.float64) - query.astype(np.float64), axis=1)
    best: dict[int, float] = {}
    for pid, dist in zip(person_ids.tolist(), distances.tolist(), strict=True):
        if pid not in best or dist < best[pid]:
            best[pid] = dist
    return sorted(best.items(), key=lambda kv: (kv[1], kv[0]))[:top_n]
