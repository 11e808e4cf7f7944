"""Media files are never public: each request maps back to its photo or face and checks access."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import GalleryMember
from tests.factories import FaceFactory, PhotoFactory, make_world


def _url(name: str) -> str:
    return reverse("gallery:media", kwargs={"path": name})


def test_it_serves_each_kind_of_file_to_a_member(
    alice: User, bob: User, bob_client: Client
) -> None:
    world = make_world(alice, bob, GalleryMember.Role.VIEWER)
    for field in (
        world.photo.original,
        world.photo.thumbnail,
        world.photo.preview,
        world.face.crop,
    ):
        response = bob_client.get(_url(field.name))
        assert response.status_code == 200, field.name
        assert response["Content-Type"] == "image/jpeg"
        assert response["Cache-Control"] == "private, max-age=3600"
        assert b"".join(response.streaming_content).startswith(b"\xff\xd8")
    original = bob_client.get(_url(world.photo.original.name))
    assert world.photo.original_name in original["Content-Disposition"]


def test_it_refuses_strangers_and_anonymous_visitors(
    alice: User, charlie_client: Client, client: Client
) -> None:
    world = make_world(alice)
    assert charlie_client.get(_url(world.photo.original.name)).status_code == 404
    response = client.get(_url(world.photo.original.name))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    "path",
    [
        "originals/{g}/../../secret_key",
        "originals/{g}/%2e%2e/%2e%2e/secret_key",
        "/etc/passwd",
        "originals/{g}/00000000000000000000000000000000.jpg",  # well-formed, not a stored file
        "derived/{g}/{other}",  # a real file, but of another gallery's path
        "originals/{g}/{crop}",  # a face crop asked for under the wrong kind
        "originals/{g}/sub/{crop}",
    ],
)
def test_it_refuses_paths_that_are_not_a_stored_file_of_that_gallery(
    alice: User, alice_client: Client, path: str
) -> None:
    world = make_world(alice)
    other = PhotoFactory()  # someone else's gallery
    crop = world.face.crop.name.rsplit("/", 1)[1]
    other_name = other.thumbnail.name.rsplit("/", 1)[1]
    url = "/media/" + path.format(g=world.gallery.pk, crop=crop, other=other_name)
    assert alice_client.get(url).status_code == 404


def test_it_does_not_serve_the_file_of_a_deleted_face(alice: User, alice_client: Client) -> None:
    world = make_world(alice)
    face = FaceFactory(photo=world.photo, left=300)
    name = face.crop.name
    face.delete()  # the file is still on disk until the on-commit cleanup
    assert alice_client.get(_url(name)).status_code == 404


def test_it_hands_the_bytes_to_nginx_when_configured(
    alice: User, alice_client: Client, settings: object
) -> None:
    settings.FACEWEB_MEDIA_ACCEL_PREFIX = "/protected/"  # type: ignore[attr-defined]
    world = make_world(alice)
    response = alice_client.get(_url(world.photo.thumbnail.name))
    assert response.status_code == 200
    assert response["X-Accel-Redirect"] == "/protected/" + world.photo.thumbnail.name
    assert response.content == b""
