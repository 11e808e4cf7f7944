"""The HTML side of tagging: confirm / not-this-person buttons, the suggestions list with bulk
actions, the "who is unknown" page, merge / undo / hide; strangers and viewers refused."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.actions.people import do_create_person
from gallery.models import Face, FaceNotPerson, Gallery, GalleryMember, Person, PersonMerge
from recognition.actions.identity import do_match_faces, do_tag_face
from tests.factories import face_in_new_photo, make_face, make_photo

OBAMA = ["obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg", "obama/obama3.jpg"]
BIDEN = ["biden/biden.jpg", "biden/biden2.jpg"]


@pytest.fixture
def tagged(gallery: Gallery, alice: User) -> dict[str, object]:
    """Obama confirmed once; three more Obama faces matched (auto-tags or suggestions)."""
    obama = do_create_person(alice, "Obama", by=alice)
    do_tag_face(face_in_new_photo(gallery, OBAMA[0]), obama, by=alice)
    faces = [face_in_new_photo(gallery, p) for p in OBAMA[1:]]
    do_match_faces(faces)
    return {"obama": obama, "faces": faces}


def _pending(face: Face) -> int | None:
    face.refresh_from_db()
    if face.person_id is not None:
        return face.person_id if face.assignment == Face.Assignment.SUGGESTED else None
    return face.suggested_person_id


def test_it_confirms_a_face_from_the_photo_page(
    tagged: dict[str, object], alice_client: Client
) -> None:
    face = tagged["faces"][0]
    response = alice_client.post(
        reverse("gallery:face-confirm", args=[face.pk]), HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    assert f'id="face-{face.pk}"' in response.content.decode()
    face.refresh_from_db()
    assert face.assignment == Face.Assignment.CONFIRMED and face.person == tagged["obama"]


def test_it_rejects_a_face_from_the_suggestions_list(
    tagged: dict[str, object], alice_client: Client
) -> None:
    face = tagged["faces"][1]
    response = alice_client.post(
        reverse("gallery:face-reject", args=[face.pk]),
        {"view": "suggestion"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert f'id="suggestion-{face.pk}"' in body and "not be offered as that person again" in body
    assert "Noted: not Obama" in body  # the flash message rides along out of band
    assert FaceNotPerson.objects.filter(face=face, person=tagged["obama"]).exists()
    assert _pending(face) is None


def test_it_lists_suggestions_and_confirms_them_in_bulk(
    tagged: dict[str, object], alice_client: Client, django_assert_max_num_queries: object
) -> None:
    url = reverse("gallery:suggestion-list")
    with django_assert_max_num_queries(12):
        response = alice_client.get(url)
    body = response.content.decode()
    for face in tagged["faces"]:
        assert f'id="suggestion-{face.pk}"' in body
    ids = [f.pk for f in tagged["faces"][:2]]
    response = alice_client.post(
        reverse("gallery:suggestion-bulk"), {"face": ids, "action": "confirm", "next": url}
    )
    assert response.status_code == 302 and response["Location"] == url
    response = alice_client.post(
        reverse("gallery:suggestion-bulk"),
        {"face": ids, "action": "confirm", "next": "/\\evil.test/"},
    )
    assert response["Location"] == url  # never an open redirect
    assert set(Face.objects.filter(pk__in=ids).values_list("assignment", "person_id")) == {
        (Face.Assignment.CONFIRMED, tagged["obama"].pk)
    }


def test_it_shows_the_person_tools_with_pending_count(
    tagged: dict[str, object], alice_client: Client
) -> None:
    response = alice_client.get(reverse("gallery:person-detail", args=[tagged["obama"].pk]))
    body = response.content.decode()
    assert "Review 3 suggestions" in body
    assert reverse("gallery:person-merge", args=[tagged["obama"].pk]) not in body  # nobody else


def test_it_groups_unknown_faces_and_names_a_group(
    gallery: Gallery, alice: User, alice_client: Client
) -> None:
    faces = [face_in_new_photo(gallery, p) for p in OBAMA + BIDEN]
    response = alice_client.get(reverse("gallery:unknown-list"))
    groups = response.context["page"].object_list
    sets = [{f.pk for f in g.faces} for g in groups]
    assert {f.pk for f in faces[:4]} in sets
    assert {f.pk for f in faces[4:]} in sets
    response = alice_client.post(
        reverse("gallery:unknown-name"), {"face": [f.pk for f in faces[:4]], "name": "Barack"}
    )
    assert response.status_code == 302
    person = Person.objects.get(name="Barack", owner=alice)
    assert person.faces.filter(assignment=Face.Assignment.CONFIRMED).count() == 4


def test_it_merges_and_undoes_from_the_person_page(
    gallery: Gallery, alice: User, alice_client: Client
) -> None:
    a = do_create_person(alice, "Obama", by=alice)
    b = do_create_person(alice, "Barack", by=alice)
    do_tag_face(face_in_new_photo(gallery, OBAMA[0]), a, by=alice)
    moved = face_in_new_photo(gallery, OBAMA[1])
    do_tag_face(moved, b, by=alice)
    response = alice_client.post(reverse("gallery:person-merge", args=[b.pk]), {"into": a.pk})
    assert response["Location"] == reverse("gallery:person-detail", args=[a.pk])
    moved.refresh_from_db()
    assert moved.person == a
    merge = PersonMerge.objects.get()
    page = alice_client.get(reverse("gallery:person-detail", args=[a.pk])).content.decode()
    assert reverse("gallery:merge-undo", args=[merge.pk]) in page
    alice_client.post(reverse("gallery:merge-undo", args=[merge.pk]))
    moved.refresh_from_db()
    assert moved.person == b


def test_it_hides_and_shows_a_person(gallery: Gallery, alice: User, alice_client: Client) -> None:
    person = do_create_person(alice, "Stranger", by=alice)
    alice_client.post(reverse("gallery:person-hide", args=[person.pk]), {"hidden": "1"})
    person.refresh_from_db()
    assert person.hidden
    alice_client.post(reverse("gallery:person-hide", args=[person.pk]), {"hidden": "0"})
    person.refresh_from_db()
    assert not person.hidden


def test_it_refuses_strangers_and_viewers(
    tagged: dict[str, object],
    gallery: Gallery,
    bob: User,
    bob_client: Client,
    charlie_client: Client,
) -> None:
    face = tagged["faces"][0]
    person = tagged["obama"]
    urls = [
        reverse("gallery:face-confirm", args=[face.pk]),
        reverse("gallery:face-reject", args=[face.pk]),
        reverse("gallery:person-hide", args=[person.pk]),
        reverse("gallery:person-merge", args=[person.pk]),
    ]
    for url in urls:
        assert charlie_client.post(url).status_code == 404, url
    GalleryMember.objects.filter(gallery=gallery, user=bob).update(role="viewer")
    for url in urls:
        assert bob_client.post(url).status_code == 403, url
    # Bulk actions silently skip faces the user may not change.
    charlie_client.post(reverse("gallery:suggestion-bulk"), {"face": [face.pk], "action": "reject"})
    assert _pending(face) == person.pk
    assert (
        charlie_client.get(reverse("gallery:suggestion-list")).context["page"].paginator.count == 0
    )


def test_it_keeps_one_person_per_photo_when_confirming(
    tagged: dict[str, object], gallery: Gallery, alice: User, alice_client: Client
) -> None:
    photo = make_photo(gallery, "pair.jpg")
    first = make_face(photo, OBAMA[1], left=10)
    second = make_face(photo, OBAMA[2], left=500)
    do_match_faces([first, second])
    pending = [f for f in (first, second) if _pending(f)]
    assert len(pending) == 1
    other = second if pending[0] == first else first
    # Naming the other face Obama withdraws the matcher's guess instead of failing.
    alice_client.post(reverse("gallery:face-tag", args=[other.pk]), {"person": tagged["obama"].pk})
    other.refresh_from_db()
    assert other.person == tagged["obama"] and other.assignment == Face.Assignment.CONFIRMED
    guessed = first if other == second else second
    assert _pending(guessed) != tagged["obama"].pk
    assert guessed.events.filter(action="match_cleared", user=alice).exists()
