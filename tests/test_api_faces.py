"""REST API: a face, tagging it with a person (by id or by name) and untagging it."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import Face, GalleryMember, Person
from tests.factories import FaceFactory, PersonFactory, PhotoFactory, make_world


def _post(client: Client, name: str, face: Face, data: dict | None = None) -> object:
    return client.post(reverse(name, args=[face.pk]), data or {}, content_type="application/json")


def test_it_returns_a_face_with_box_person_and_filter_status(
    alice: User, alice_client: Client
) -> None:
    world = make_world(alice)
    data = alice_client.get(reverse("api:face-detail", args=[world.face.pk])).json()
    assert data["box"] == {"left": 64, "top": 48, "width": 160, "height": 120}
    assert data["person"] == {"id": world.person.pk, "name": "Ann"}
    assert data["assignment"] == "confirmed" and data["ood_status"] == "accepted"
    assert data["crop_url"].endswith(world.face.crop.name)


def test_it_tags_by_name_into_the_owners_library_and_by_id(
    alice: User, bob: User, bob_client: Client
) -> None:
    world = make_world(alice, bob, GalleryMember.Role.EDITOR)
    face = cast(Face, FaceFactory(photo=world.photo, left=400))
    by_name = _post(bob_client, "api:face-tag", face, {"name": "Zed"})
    assert by_name.status_code == 200
    zed = Person.objects.get(name="Zed")
    assert zed.owner == alice and by_name.json()["person"] == {"id": zed.pk, "name": "Zed"}

    ben = cast(Person, PersonFactory(owner=alice, name="Ben"))
    # bob sees no face of Ben yet, so for him Ben does not exist.
    url = reverse("api:face-tag", args=[face.pk])
    refused = bob_client.post(url, {"person": ben.pk}, content_type="application/json")
    assert refused.status_code == 404
    FaceFactory(photo=PhotoFactory(gallery=world.gallery), person=ben, assignment="confirmed")
    by_id = _post(bob_client, "api:face-tag", face, {"person": ben.pk})
    assert by_id.status_code == 200 and by_id.json()["person"]["name"] == "Ben"

    untagged = _post(bob_client, "api:face-untag", face)
    assert untagged.status_code == 200 and untagged.json()["person"] is None


def test_it_explains_why_a_tag_is_refused(alice: User, bob: User, alice_client: Client) -> None:
    world = make_world(alice)
    face = FaceFactory(photo=world.photo, left=400)
    clash = _post(alice_client, "api:face-tag", face, {"name": "Ann"})
    assert clash.status_code == 400
    assert "two faces in one photo are never the same person" in clash.json()["detail"]

    own_person = PersonFactory(owner=alice, name="Mine")
    bobs = PersonFactory(owner=bob, name="Bob's")
    GalleryMember.objects.create(gallery=world.gallery, user=bob)
    # alice can see bob's library only once bob shares a gallery; until then it is a 404.
    assert _post(alice_client, "api:face-tag", face, {"person": bobs.pk}).status_code == 404

    empty = _post(alice_client, "api:face-tag", face, {})
    assert empty.status_code == 400
    face.refresh_from_db()
    assert face.person is None and own_person.faces.count() == 0
    assert not Person.objects.filter(name="Ann").exclude(pk=world.person.pk).exists()
