"""factory-boy factories for the web and API tests: rows with real (small) image files, no pipeline.

The pipeline itself runs in the tests that upload (test_upload_bad_input, test_views_upload);
everything else builds processed photos directly so a test costs only database writes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import factory
from django.contrib.auth.models import User
from factory.django import DjangoModelFactory
from PIL import Image

from gallery.models import Face, Gallery, GalleryMember, Person, Photo, UploadBatch
from tests.conftest import PASSWORD


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
    gallery = GalleryFactory(owner=alice, name="Holidays", tags=["beach"])
    if bob is not None and bob_role:
        GalleryMember.objects.create(gallery=gallery, user=bob, role=bob_role)
    batch = BatchFactory(gallery=gallery)
    photo = PhotoFactory(gallery=gallery, batch=batch)
    person = PersonFactory(owner=alice, name="Ann")
    face = FaceFactory(photo=photo, person=person, assignment=Face.Assignment.CONFIRMED)
    return World(gallery=gallery, photo=photo, face=face, person=person, batch=batch)
