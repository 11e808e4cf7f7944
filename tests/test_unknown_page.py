""" "Who is unknown?" with real embeddings: groups biggest first in a paginated grid, hints when a
group looks like a named person or another group, and strangers ignored (kept out of the page
and of matching) and brought back."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.actions.people import do_create_person
from gallery.models import Face, Gallery
from gallery.views import tagging
from recognition.actions.identity import do_match_faces, do_tag_face
from recognition.index.unknown import unknown_groups
from tests.factories import face_in_new_photo

OBAMA = ["obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg", "obama/obama3.jpg"]
BIDEN = ["biden/biden.jpg", "biden/biden2.jpg"]
# One person whose photos fall into two groups, near enough for a "same person?" hint.
ALEX = ["alex_lacamoire/img1.jpg", "alex_lacamoire/alex_lacamoire1.jpg"]
ALEX_APART = "alex_lacamoire/alex-lacamoire.png"


def test_it_shows_groups_biggest_first_on_pages(
    gallery: Gallery, alice: User, alice_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    obama = [face_in_new_photo(gallery, p) for p in OBAMA]
    biden = [face_in_new_photo(gallery, p) for p in BIDEN]
    kit = face_in_new_photo(gallery, "kit_harington/john1.jpeg")
    monkeypatch.setattr(tagging, "GROUPS_PER_PAGE", 2)

    first = alice_client.get(reverse("gallery:unknown-list"))
    second = alice_client.get(reverse("gallery:unknown-list"), {"page": 2})

    assert [g.size for g in first.context["page"]] == [4, 2]
    assert {f.pk for f in first.context["page"][0].faces} == {f.pk for f in obama}
    assert {f.pk for f in first.context["page"][1].faces} == {f.pk for f in biden}
    assert [g.faces for g in second.context["page"]] == [[kit]]
    html = first.content.decode()
    assert html.count('class="cluster card"') == 2 and "Page 1 of 2" in html


def test_it_hints_at_a_named_person_and_at_another_group(
    gallery: Gallery, alice: User, alice_client: Client
) -> None:
    obama = do_create_person(alice, "Obama", by=alice)
    do_tag_face(face_in_new_photo(gallery, OBAMA[0]), obama, by=alice)
    rest = [face_in_new_photo(gallery, p) for p in OBAMA[1:]]
    Face.objects.filter(pk__in=[f.pk for f in rest]).update(suggested_person=obama)
    alex = [face_in_new_photo(gallery, p) for p in ALEX]
    apart = face_in_new_photo(gallery, ALEX_APART)
    crop = f"derived/{gallery.pk}/{'a' * 32}.jpg"  # a name is all the page needs
    Face.objects.filter(pk=apart.pk).update(crop=crop)

    groups, total = unknown_groups(alice)

    assert total == 6
    by_faces = {frozenset(f.pk for f in g.faces): g for g in groups}
    named = by_faces[frozenset(f.pk for f in rest)]
    assert named.suggested_name == "Obama" and named.near_person == obama
    pair, single = by_faces[frozenset(f.pk for f in alex)], by_faces[frozenset([apart.pk])]
    assert pair.near_group is single and single.near_group is pair
    assert named.near_group is None  # nobody else looks like those
    html = alice_client.get(reverse("gallery:unknown-list")).content.decode()
    assert 'value="Obama"' in html and "Looks like Obama." in html
    # Groups have a number (biggest first) the hints name, with the other group's face: "the
    # group of 1" was ambiguous when several groups had one face.
    assert [g.number for g in groups] == [1, 2, 3] and single.number == 3
    hint = html.split(f'href="/people/unknown/#group-{single.key}"')[1].split("</a>")[0]
    assert f'src="/media/{crop}"' in hint and "group 3 (1 face)" in hint
    card = html.split(f'id="group-{single.key}"')[1].split("</p>")[0]
    assert "<strong>1</strong> face · group 3" in card
    # The counts say faces, as the page's heading does ("6 unnamed faces").
    assert "6 unnamed faces" in html and "<strong>3</strong> faces" in html


def test_it_ignores_strangers_and_brings_them_back(
    gallery: Gallery, alice: User, alice_client: Client, charlie_client: Client
) -> None:
    obama = do_create_person(alice, "Obama", by=alice)
    do_tag_face(face_in_new_photo(gallery, OBAMA[0]), obama, by=alice)
    strangers = [face_in_new_photo(gallery, p) for p in BIDEN]
    lookalike = face_in_new_photo(gallery, OBAMA[1])
    url = reverse("gallery:unknown-ignore")
    ids = [f.pk for f in [*strangers, lookalike]]

    charlie_client.post(url, {"face": ids})  # a stranger to the library changes nothing
    assert not Face.objects.filter(assignment=Face.Assignment.IGNORED).exists()
    response = alice_client.post(url, {"face": ids, "next": reverse("gallery:unknown-list")})

    assert response.status_code == 302
    assert set(
        Face.objects.filter(assignment=Face.Assignment.IGNORED).values_list("pk", flat=True)
    ) == set(ids)
    page = alice_client.get(reverse("gallery:unknown-list"))
    assert list(page.context["page"]) == [] and "Ignored faces (3)" in page.content.decode()
    # Ignored faces stay out of matching: Obama's look-alike gets no tag or suggestion.
    do_match_faces([lookalike])
    lookalike.refresh_from_db()
    assert lookalike.person is None and lookalike.suggested_person is None

    listing = alice_client.get(reverse("gallery:unknown-list"), {"show": "ignored"})
    assert listing.content.decode().count('name="face"') == 3
    alice_client.post(url, {"face": [lookalike.pk], "ignored": "0"})

    lookalike.refresh_from_db()
    assert lookalike.assignment != Face.Assignment.IGNORED
    assert obama.pk in {lookalike.person_id, lookalike.suggested_person_id}  # matched again


def test_it_ignores_one_face_from_the_photo_page(
    gallery: Gallery, alice: User, alice_client: Client, bob: User
) -> None:
    face = face_in_new_photo(gallery, BIDEN[0])
    url = reverse("gallery:face-ignore", args=[face.pk])
    response = alice_client.post(url, {"ignored": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.content.decode()
    assert (
        ">Ignored</span>" in html and "Stop ignoring" in html and "Ignored: this stranger" in html
    )
    face.refresh_from_db()
    assert face.assignment == Face.Assignment.IGNORED
    person = do_create_person(alice, "Biden", by=alice)
    do_tag_face(face, person, by=bob)  # naming an ignored face is allowed: it is not a stranger
    face.refresh_from_db()
    assert face.assignment == Face.Assignment.CONFIRMED
    response = alice_client.post(url, {"ignored": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 422 and "untag it first" in response.content.decode()


def test_it_lets_only_the_owner_ignore_a_face_from_the_photo_page(
    gallery: Gallery, alice: User, bob: User, bob_client: Client
) -> None:
    """bob edits alice's gallery; ignoring takes a face off alice's "Who is unknown?", which the
    bulk ignore there already leaves to alice: the photo page must not let bob do it."""
    face = face_in_new_photo(gallery, BIDEN[0])
    url = reverse("gallery:face-ignore", args=[face.pk])
    response = bob_client.post(url, {"ignored": "1"}, headers={"HX-Request": "true"})
    assert response.status_code == 403
    face.refresh_from_db()
    assert face.assignment != Face.Assignment.IGNORED
    assert face in unknown_groups(alice)[0][0].faces
    page = bob_client.get(reverse("gallery:photo-detail", args=[face.photo_id])).content.decode()
    assert "Who is this?" in page and url not in page
