"""A name is personal data: a user sees a person only through a face in a photo they may see.

alice owns a private gallery (Family) and a gallery shared with bob (Club). The people who appear
only in Family must not reach bob anywhere: pages, API, autocomplete, search, or the matcher
writing their name onto a face in Club.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.access import visible_people
from gallery.actions.people import do_create_person, do_hide_person
from gallery.models import Face, Gallery, GalleryMember, Person
from recognition.actions.identity import do_match_faces, do_tag_face, matchable_gallery_ids
from recognition.web.probe import ProbeFace, search_face
from tests.conftest import client_for
from tests.factories import embedder_version, face_in_new_photo, real_embedding

OBAMA = ["obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg", "obama/obama3.jpg"]


@dataclass
class World:
    family: Gallery
    club: Gallery
    secret: Person
    shared: Person
    kit: Face


@pytest.fixture
def world(alice: User, bob: User) -> World:
    family = Gallery.objects.create(owner=alice, name="Family")
    club = Gallery.objects.create(owner=alice, name="Club")
    GalleryMember.objects.create(gallery=club, user=bob, role=GalleryMember.Role.EDITOR)
    secret = do_create_person(alice, "Secret Obama", by=alice)
    do_tag_face(face_in_new_photo(family, OBAMA[0]), secret, by=alice)
    shared = do_create_person(alice, "Shared Kit", by=alice)
    kit = face_in_new_photo(club, "kit_harington/john1.jpeg")
    do_tag_face(kit, shared, by=alice)
    return World(family=family, club=club, secret=secret, shared=shared, kit=kit)


def test_it_shows_a_member_only_the_people_of_faces_they_can_see(
    world: World, alice: User, bob: User, charlie: User
) -> None:
    secret, shared = world.secret, world.shared
    assert set(visible_people(alice)) == {secret, shared}
    assert set(visible_people(bob)) == {shared}
    assert set(visible_people(charlie)) == set()

    bob_client = client_for(bob)
    for url in (
        reverse("gallery:person-list"),
        reverse("api:person-list"),
        reverse("gallery:photo-detail", args=[world.kit.photo_id]),
        reverse("gallery:suggestion-list"),
    ):
        body = bob_client.get(url).content.decode()
        assert "Secret Obama" not in body, url
    assert "Shared Kit" in bob_client.get(reverse("api:person-list")).content.decode()
    assert bob_client.get(reverse("gallery:person-detail", args=[secret.pk])).status_code == 404
    assert bob_client.get(reverse("api:person-detail", args=[secret.pk])).status_code == 404
    assert bob_client.get(reverse("api:person-faces", args=[secret.pk])).status_code == 404
    assert bob_client.get(reverse("gallery:person-detail", args=[shared.pk])).status_code == 200
    # The owner keeps every person of the library.
    assert "Secret Obama" in client_for(alice).get(reverse("api:person-list")).content.decode()


def test_it_lets_only_the_owner_rename_hide_or_merge_people(
    world: World, alice: User, bob: User
) -> None:
    """bob edits the club, where alice's Shared Kit has a face; alice also sees Kit in galleries
    bob cannot. A person spans the whole library, so bob may tag faces with Kit but not rename,
    hide, unhide, merge or cover Kit (the reviewer unhid and renamed alice's people as bob)."""
    client: Client = client_for(bob)
    secret, shared = world.secret, world.shared
    do_hide_person(shared, by=alice, hidden=True)
    url = reverse("api:person-detail", args=[secret.pk])
    response = client.patch(url, {"name": "x"}, content_type="application/json")
    assert response.status_code == 404
    url = reverse("api:person-detail", args=[shared.pk])
    response = client.patch(url, {"name": "Kit"}, content_type="application/json")
    assert response.status_code == 403
    for name, data in [
        ("gallery:person-rename", {"name": "Kit"}),
        ("gallery:person-hide", {"hidden": "0"}),
        ("gallery:person-merge", {"into": secret.pk}),
        ("gallery:person-cover", {"face": world.kit.pk}),
    ]:
        response = client.post(reverse(name, args=[shared.pk]), data)
        assert response.status_code == 403, name
    shared.refresh_from_db()
    assert (shared.name, shared.hidden, shared.cover_face_id) == ("Shared Kit", True, None)
    assert Person.objects.get(pk=secret.pk).name == "Secret Obama"
    # The person page offers bob none of it; alice gets all of it.
    page = client.get(reverse("gallery:person-detail", args=[shared.pk])).content.decode()
    assert reverse("gallery:person-rename", args=[shared.pk]) not in page
    assert reverse("gallery:person-hide", args=[shared.pk]) not in page
    hidden = client.get(reverse("gallery:person-list") + "?show=hidden").content.decode()
    assert "Shared Kit" in hidden and reverse("gallery:person-hide", args=[shared.pk]) not in hidden
    alices = client_for(alice).get(reverse("gallery:person-detail", args=[shared.pk]))
    assert reverse("gallery:person-rename", args=[shared.pk]) in alices.content.decode()
    # Tagging a face in the club with Kit stays an editor's job.
    other = face_in_new_photo(world.club, "kit_harington/john2.jpeg")
    response = client.post(reverse("gallery:face-tag", args=[other.pk]), {"name": "Shared Kit"})
    assert response.status_code in {200, 302}
    other.refresh_from_db()
    assert other.person_id == shared.pk


def test_it_never_finds_a_private_person_in_a_members_search(
    world: World, alice: User, bob: User
) -> None:
    vector = np.asarray(real_embedding(OBAMA[1]), dtype=np.float32)
    probe = ProbeFace(0, 0, 0, 10, 10, vector, False, None, [], b"")
    assert search_face(alice, probe, embedder_version()).hits[0].person == world.secret
    assert all(
        hit.person != world.secret for hit in search_face(bob, probe, embedder_version()).hits
    )


def test_it_never_writes_a_private_name_onto_a_face_in_a_shared_gallery(
    world: World, alice: User
) -> None:
    """The leak of issue 13: a name used only in a private gallery was copied as an automatic
    tag onto faces in a gallery shared with other people."""
    in_club = face_in_new_photo(world.club, OBAMA[1])
    in_private = face_in_new_photo(
        Gallery.objects.create(owner=alice, name="Private too"), OBAMA[2]
    )
    decided = do_match_faces([in_club, in_private])
    in_club.refresh_from_db()
    in_private.refresh_from_db()
    secret = world.secret
    # Another private gallery of alice's still learns from Family (the matcher works) ...
    assert decided[in_private.pk].person_id == secret.pk
    assert secret.pk in {in_private.person_id, in_private.suggested_person_id}
    # ... but the shared gallery gets neither the name nor a suggestion of it.
    assert in_club.person_id is None and in_club.suggested_person_id is None
    assert not Face.objects.filter(photo__gallery=world.club, person=secret).exists()


def test_it_matches_against_galleries_whose_audience_contains_the_faces_audience(
    world: World, alice: User, bob: User, charlie: User
) -> None:
    family, club = world.family, world.club
    wider = Gallery.objects.create(owner=alice, name="Club and more")
    GalleryMember.objects.create(gallery=wider, user=bob)
    GalleryMember.objects.create(gallery=wider, user=charlie)
    # A private gallery may use everything; the club may use itself and wider audiences only.
    assert set(matchable_gallery_ids(family.pk)) == {family.pk, club.pk, wider.pk}
    assert set(matchable_gallery_ids(club.pk)) == {club.pk, wider.pk}
    assert set(matchable_gallery_ids(wider.pk)) == {wider.pk}
    # A name bob can see in the club is offered there.
    again = face_in_new_photo(club, "kit_harington/john2.jpeg")
    do_match_faces([again])
    again.refresh_from_db()
    assert world.shared.pk in {again.person_id, again.suggested_person_id}
