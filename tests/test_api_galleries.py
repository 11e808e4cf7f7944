"""REST API: galleries and their members (session and basic authentication)."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from gallery.auth import SafeBasicAuthentication
from gallery.models import Gallery, GalleryMember
from tests.conftest import PASSWORD
from tests.factories import GalleryFactory, PhotoFactory


def test_it_lists_visible_galleries_with_role_and_counts(
    gallery: Gallery, bob: User, charlie: User, bob_client: Client
) -> None:
    PhotoFactory.create_batch(2, gallery=gallery)
    GalleryFactory(owner=bob, name="Mine", tags=["x"])
    GalleryFactory(owner=charlie, name="Not yours")
    body = bob_client.get(reverse("api:gallery-list")).json()
    assert body["count"] == 2
    by_name = {g["name"]: g for g in body["results"]}
    assert by_name["Holidays"]["role"] == "editor" and by_name["Holidays"]["photo_count"] == 2
    assert by_name["Holidays"]["owner"] == "alice"
    assert by_name["Mine"]["role"] == "owner" and by_name["Mine"]["tags"] == ["x"]
    filtered = bob_client.get(reverse("api:gallery-list"), {"tag": "x"}).json()
    assert [g["name"] for g in filtered["results"]] == ["Mine"]


def test_it_refuses_basic_authentication_unless_it_is_turned_on(
    gallery: Gallery, client: Client
) -> None:
    token = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    off = client.get(reverse("api:gallery-list"), headers={"Authorization": f"Basic {token}"})
    assert off.status_code == 401 and off["WWW-Authenticate"].startswith("Bearer")

    # FACEWEB_API_BASIC_AUTH=1 adds this class for old scripts.
    def basic(raw: bytes) -> tuple[object, None] | None:
        header = "Basic " + base64.b64encode(raw).decode()
        request = Request(APIRequestFactory().get("/api/galleries/", HTTP_AUTHORIZATION=header))
        return SafeBasicAuthentication().authenticate(request)

    assert basic(f"alice:{PASSWORD}".encode()) == (gallery.owner, None)
    for wrong in (b"alice:wrong", b"ali\x00ce:x", b"alice:x\x00"):
        with pytest.raises(AuthenticationFailed):
            basic(wrong)


def test_it_creates_updates_and_deletes_a_gallery(alice: User, alice_client: Client) -> None:
    created = alice_client.post(
        reverse("api:gallery-list"),
        {"name": "Trip", "tags": ["Sea", "sea", "Hills"]},
        content_type="application/json",
    )
    assert created.status_code == 201
    data = created.json()
    assert data["tags"] == ["sea", "hills"] and data["role"] == "owner"
    url = reverse("api:gallery-detail", args=[data["id"]])

    patched = alice_client.patch(url, {"description": "June"}, content_type="application/json")
    assert patched.status_code == 200 and patched.json()["description"] == "June"
    assert patched.json()["name"] == "Trip"
    blank = alice_client.patch(url, {"name": " "}, content_type="application/json")
    assert blank.status_code == 400 and "name" in blank.json()

    replaced = alice_client.put(url, {"name": "Trip 2"}, content_type="application/json")
    assert replaced.status_code == 200
    assert (replaced.json()["name"], replaced.json()["description"]) == ("Trip 2", "")
    assert replaced.json()["tags"] == []

    assert alice_client.delete(url).status_code == 204
    assert not Gallery.objects.filter(pk=data["id"]).exists()
    assert alice_client.get(url).status_code == 404


def test_it_validates_gallery_input(alice_client: Client) -> None:
    response = alice_client.post(reverse("api:gallery-list"), {}, content_type="application/json")
    assert response.status_code == 400 and "name" in response.json()


def test_it_shares_and_unshares_through_the_api(
    gallery: Gallery, alice_client: Client, bob: User, charlie: User
) -> None:
    url = reverse("api:member-list", args=[gallery.pk])
    shared = alice_client.post(
        url, {"username": "charlie", "role": "viewer"}, content_type="application/json"
    )
    assert shared.status_code == 201
    assert shared.json()["username"] == "charlie" and shared.json()["role"] == "viewer"
    members = alice_client.get(url).json()
    assert [(m["username"], m["role"]) for m in members] == [
        ("bob", "editor"),
        ("charlie", "viewer"),
    ]

    promoted = alice_client.post(
        url, {"username": "charlie", "role": "editor"}, content_type="application/json"
    )
    assert promoted.status_code == 201
    assert GalleryMember.objects.get(gallery=gallery, user=charlie).role == "editor"

    nobody = alice_client.post(
        url, {"username": "nobody", "role": "viewer"}, content_type="application/json"
    )
    assert nobody.status_code == 400 and "no user called" in nobody.json()["detail"]
    bad_role = alice_client.post(
        url, {"username": "charlie", "role": "admin"}, content_type="application/json"
    )
    assert bad_role.status_code == 400 and "role" in bad_role.json()

    removed = alice_client.delete(reverse("api:member-detail", args=[gallery.pk, bob.pk]))
    assert removed.status_code == 204
    assert not GalleryMember.objects.filter(gallery=gallery, user=bob).exists()
    again = alice_client.delete(reverse("api:member-detail", args=[gallery.pk, bob.pk]))
    assert again.status_code == 404
