"""REST API: people list, create, retrieve, rename, and their visible faces."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import GalleryMember
from tests.factories import FaceFactory, GalleryFactory, PersonFactory, PhotoFactory


def test_it_lists_creates_and_renames_people(alice: User, alice_client: Client) -> None:
    created = alice_client.post(
        reverse("api:person-list"), {"name": "Ann"}, content_type="application/json"
    )
    assert created.status_code == 201
    person = created.json()
    assert person["owner"] == "alice" and person["face_count"] == 0

    listed = alice_client.get(reverse("api:person-list"), {"q": "an"}).json()
    assert [p["name"] for p in listed["results"]] == ["Ann"]

    url = reverse("api:person-detail", args=[person["id"]])
    renamed = alice_client.patch(url, {"name": "Anne"}, content_type="application/json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Anne"
    blank = alice_client.patch(url, {"name": ""}, content_type="application/json")
    assert blank.status_code == 400


def test_it_counts_and_lists_only_faces_the_user_can_see(
    alice: User, bob: User, bob_client: Client
) -> None:
    shared, private = GalleryFactory(owner=alice), GalleryFactory(owner=alice)
    GalleryMember.objects.create(gallery=shared, user=bob, role="viewer")
    ann = PersonFactory(owner=alice, name="Ann")
    seen = FaceFactory(photo=PhotoFactory(gallery=shared), person=ann)
    FaceFactory(photo=PhotoFactory(gallery=private), person=ann)

    person = bob_client.get(reverse("api:person-detail", args=[ann.pk])).json()
    assert person["face_count"] == 1
    faces = bob_client.get(reverse("api:person-faces", args=[ann.pk])).json()
    assert [f["id"] for f in faces["results"]] == [seen.pk]
    listed = bob_client.get(reverse("api:person-list")).json()
    assert [(p["name"], p["face_count"]) for p in listed["results"]] == [("Ann", 1)]
