"""Rows for search and template tests: photos, people and confirmed faces with real embeddings."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from django.contrib.auth.models import User

from gallery.models import Face, Gallery, Person, Photo

VERSION = "dlib-resnet-v1"


def make_people(owner: User, count: int, prefix: str = "person") -> list[Person]:
    return Person.objects.bulk_create(
        [Person(owner=owner, name=f"{prefix} {i}") for i in range(count)]
    )


def make_photos(gallery: Gallery, count: int, tag: str = "") -> list[Photo]:
    return Photo.objects.bulk_create(
        [
            Photo(
                gallery=gallery,
                original=f"originals/{gallery.pk}/{tag}{i}.jpg",
                original_name=f"{tag}{i}.jpg",
                sha256=hashlib.sha256(f"{gallery.pk}/{tag}/{i}".encode()).hexdigest(),
                status=Photo.Status.DONE,
            )
            for i in range(count)
        ]
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
