"""Tagging that learns: suggestions, "not this person", bulk naming, merges, the audit log.

The first test is the done-when scenario on the real pipeline (real photos, real models, Celery
eager); the others build face rows around real embeddings (tests/factories.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction

from gallery.actions.common import ActionError
from gallery.actions.people import do_create_person, do_hide_person
from gallery.actions.photos import do_requeue_photo, do_upload_photos
from gallery.models import Face, FaceEvent, FaceNotPerson, Gallery, Person, Photo
from recognition.actions.identity import (
    do_confirm_suggestion,
    do_confirm_suggestions,
    do_match_faces,
    do_merge_people,
    do_reject_suggestion,
    do_tag_face,
    do_tag_faces,
    do_undo_merge,
)
from recognition.models import Template
from recognition.web.probe import analyse_probe, search_face
from tests.conftest import PHOTOS, upload_file
from tests.factories import face_in_new_photo, make_face, make_photo

OBAMA = ["obama/obama.jpg", "obama/obama1.jpg", "obama/obama2.jpg", "obama/obama3.jpg"]
BIDEN = ["biden/biden.jpg", "biden/biden2.jpg"]


def _state(face: Face) -> tuple[int | None, str, int | None]:
    face.refresh_from_db()
    return face.person_id, face.assignment, face.suggested_person_id


def _pending(face: Face) -> int | None:
    """The person a face is offered (auto-tag or suggestion), None when unknown or confirmed."""
    person, assignment, suggested = _state(face)
    if person is not None:
        return person if assignment == Face.Assignment.SUGGESTED else None
    return suggested


def test_it_suggests_the_other_obama_photos_after_one_is_tagged(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Presidents")
    files = sorted((PHOTOS / "obama").iterdir()) + sorted((PHOTOS / "biden").iterdir())
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file(p) for p in files], by=alice)
    assert not result.rejected, result.rejected
    photos = {p.original_name: p for p in Photo.objects.filter(gallery=gallery)}
    assert len(photos) == len(files)
    assert all(p.status == Photo.Status.DONE for p in photos.values())

    tagged = photos["obama.jpg"].faces.get()
    obama = do_create_person(alice, "Barack Obama", by=alice)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_tag_face(tagged, obama, by=alice)
    assert Template.objects.filter(face=tagged, person=obama).exists()

    def offered(name: str) -> set[int | None]:
        faces = [f for f in photos[name].faces.all() if f.is_trusted]
        return {_pending(f) for f in faces}

    obama_names = [p.name for p in files if p.parent.name == "obama" and p.name != "obama.jpg"]
    suggested = [n for n in obama_names if obama.pk in offered(n)]
    trusted_elsewhere = [n for n in obama_names if offered(n)]
    # Every other Obama photo with a trusted face is offered as Obama, and they are most of them.
    assert suggested == trusted_elsewhere, {n: offered(n) for n in obama_names}
    assert len(suggested) >= 8, suggested
    for name in ("biden.jpg", "biden2.jpg"):
        assert obama.pk not in offered(name)
        assert all(f.person_id is None for f in photos[name].faces.all())
    # The matcher's changes are in the audit log, without a user.
    assert FaceEvent.objects.filter(
        action__in=["face_auto_tagged", "face_suggested"], user=None, person=obama
    ).count() == len(suggested)

    analysis = analyse_probe((PHOTOS / "obama" / "obama_small.jpg").read_bytes())
    outcome = search_face(alice, analysis.faces[analysis.largest], analysis.embedder_version)
    assert outcome.hits[0].person == obama
    assert outcome.answer == "same"
    assert {f.photo.original_name for f in outcome.hits[0].photos} >= {"obama.jpg"}


@pytest.fixture
def library(alice: User) -> dict[str, Any]:
    gallery = Gallery.objects.create(owner=alice, name="Family")
    obama = do_create_person(alice, "Obama", by=alice)
    biden = do_create_person(alice, "Biden", by=alice)
    anchor = face_in_new_photo(gallery, OBAMA[0])
    biden_anchor = face_in_new_photo(gallery, BIDEN[0])
    do_tag_face(anchor, obama, by=alice)
    do_tag_face(biden_anchor, biden, by=alice)
    return {"gallery": gallery, "obama": obama, "biden": biden, "anchor": anchor}


def test_it_matches_new_faces_against_confirmed_ones(library: dict[str, Any], alice: User) -> None:
    gallery, obama, biden = library["gallery"], library["obama"], library["biden"]
    face = face_in_new_photo(gallery, OBAMA[1])
    other = face_in_new_photo(gallery, BIDEN[1])
    stranger = face_in_new_photo(gallery, "kit_harington/john1.jpeg")
    decided = do_match_faces([face, other, stranger])
    assert decided[face.pk].person_id == obama.pk
    assert _pending(face) == obama.pk and _pending(other) == biden.pk
    assert _state(stranger) == (None, "", None)
    # An untrusted face is never matched, however near.
    rejected = face_in_new_photo(gallery, OBAMA[2], trusted=False)
    do_match_faces([rejected])
    assert _state(rejected) == (None, "", None)


def test_it_never_offers_one_person_for_two_faces_of_a_photo(
    library: dict[str, Any],
) -> None:
    photo = make_photo(library["gallery"], "twins.jpg")
    a = make_face(photo, OBAMA[1], left=10)
    b = make_face(photo, OBAMA[2], left=500)
    do_match_faces([a, b])
    offered = [_pending(a), _pending(b)]
    assert offered.count(library["obama"].pk) == 1
    # And the database refuses it anyway.
    Face.objects.filter(pk__in=[a.pk, b.pk]).update(person=None)
    Face.objects.filter(pk=a.pk).update(person=library["obama"])
    with pytest.raises(IntegrityError), transaction.atomic():
        Face.objects.filter(pk=b.pk).update(person=library["obama"])


def test_it_confirms_a_suggestion_and_makes_it_a_template(
    library: dict[str, Any], alice: User, django_capture_on_commit_callbacks: object
) -> None:
    face = face_in_new_photo(library["gallery"], OBAMA[1])
    do_match_faces([face])
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_confirm_suggestion(face, by=alice)
    assert _state(face) == (library["obama"].pk, "confirmed", None)
    assert Template.objects.filter(face=face, person=library["obama"]).exists()
    event = FaceEvent.objects.get(face=face, action="suggestion_confirmed")
    assert event.user == alice and event.person == library["obama"]
    with pytest.raises(ActionError, match="no suggestion"):
        do_confirm_suggestion(face, by=alice)


def test_it_confirms_suggestions_in_bulk(library: dict[str, Any], alice: User) -> None:
    faces = [face_in_new_photo(library["gallery"], p) for p in OBAMA[1:]]
    do_match_faces(faces)
    confirmed, errors = do_confirm_suggestions(faces, by=alice)
    assert not errors and len(confirmed) == len(faces)
    assert {_state(f) for f in faces} == {(library["obama"].pk, "confirmed", None)}
    assert Template.objects.filter(person=library["obama"]).count() == 1 + len(faces)


def test_it_remembers_not_this_person_for_the_face_and_the_pair(
    library: dict[str, Any], alice: User
) -> None:
    gallery, obama, anchor = library["gallery"], library["obama"], library["anchor"]
    face = face_in_new_photo(gallery, OBAMA[1])
    do_match_faces([face])
    assert _pending(face) == obama.pk
    do_reject_suggestion(face, by=alice)
    row = FaceNotPerson.objects.get(face=face)
    assert row.person == obama and row.via_face_id == anchor.pk and row.created_by == alice
    assert _pending(face) is None
    assert FaceEvent.objects.filter(face=face, action="suggestion_rejected", user=alice).exists()
    # Matching again (a new template, a reprocess) never brings it back.
    do_tag_face(face_in_new_photo(gallery, OBAMA[2]), obama, by=alice)
    do_match_faces([face])
    assert _pending(face) is None
    # The pair: the anchor face re-tagged as someone else never pulls `face` in through itself.
    other = do_create_person(alice, "Someone", by=alice)
    do_tag_face(anchor, other, by=alice)
    do_match_faces([face])
    assert _pending(face) != other.pk


def test_it_names_a_group_and_skips_faces_of_one_photo(
    library: dict[str, Any], alice: User
) -> None:
    gallery = library["gallery"]
    photo = make_photo(gallery, "two.jpg")
    faces = [make_face(photo, OBAMA[1], left=10), make_face(photo, OBAMA[2], left=400)]
    faces.append(face_in_new_photo(gallery, OBAMA[3]))
    person = do_create_person(alice, "New name", by=alice)
    tagged, errors = do_tag_faces(faces, person, by=alice)
    assert len(tagged) == 2 and len(errors) == 1
    assert "two faces in one photo" in errors[0][1]


def test_it_merges_people_and_undoes_the_merge(library: dict[str, Any], alice: User) -> None:
    gallery, obama = library["gallery"], library["obama"]
    dup = do_create_person(alice, "B. Obama", by=alice)
    moved = face_in_new_photo(gallery, OBAMA[1])
    do_tag_face(moved, dup, by=alice)
    suggested = face_in_new_photo(gallery, OBAMA[2])
    Face.objects.filter(pk=suggested.pk).update(suggested_person=dup)
    rejected = face_in_new_photo(gallery, BIDEN[1])
    FaceNotPerson.objects.create(face=rejected, person=dup, created_by=alice)

    merge = do_merge_people(dup, obama, by=alice)
    assert merge.face_ids == [moved.pk]
    assert _state(moved)[0] == obama.pk and _state(suggested)[2] == obama.pk
    assert Template.objects.get(face=moved).person == obama
    assert FaceNotPerson.objects.filter(face=rejected, person=obama).exists()
    dup.refresh_from_db()
    assert dup.merged_into == obama

    do_undo_merge(merge, by=alice)
    dup.refresh_from_db()
    merge.refresh_from_db()
    assert dup.merged_into is None and merge.undone_by == alice
    assert _state(moved)[0] == dup.pk and _state(suggested)[2] == dup.pk
    assert Template.objects.get(face=moved).person == dup
    assert not FaceNotPerson.objects.filter(face=rejected, person=obama).exists()
    assert FaceNotPerson.objects.filter(face=rejected, person=dup).exists()
    assert list(
        FaceEvent.objects.filter(action__in=["people_merged", "merge_undone"])
        .order_by("id")
        .values_list("action", flat=True)
    ) == ["people_merged", "merge_undone"]
    with pytest.raises(ActionError, match="already undone"):
        do_undo_merge(merge, by=alice)


def test_it_undoes_a_merge_from_the_merge_record_alone(
    library: dict[str, Any], alice: User
) -> None:
    """The audit log is a log: an undo must not depend on reading it back."""
    gallery, obama = library["gallery"], library["obama"]
    dup = do_create_person(alice, "B. Obama", by=alice)
    suggested = face_in_new_photo(gallery, OBAMA[2])
    Face.objects.filter(pk=suggested.pk).update(suggested_person=dup)
    rejected = face_in_new_photo(gallery, BIDEN[1])
    FaceNotPerson.objects.create(face=rejected, person=dup, created_by=alice)
    merge = do_merge_people(dup, obama, by=alice)
    FaceEvent.objects.all().delete()
    do_undo_merge(merge, by=alice)
    assert _state(suggested)[2] == dup.pk
    assert not FaceNotPerson.objects.filter(face=rejected, person=obama).exists()


def test_it_refuses_to_merge_people_seen_together(library: dict[str, Any], alice: User) -> None:
    photo = make_photo(library["gallery"], "together.jpg")
    a, b = make_face(photo, OBAMA[1], left=10), make_face(photo, BIDEN[1], left=500)
    do_tag_face(a, library["obama"], by=alice)
    do_tag_face(b, library["biden"], by=alice)
    with pytest.raises(ActionError, match="appear together in 1 photo"):
        do_merge_people(library["biden"], library["obama"], by=alice)


def test_it_hides_a_person(library: dict[str, Any], alice: User) -> None:
    person: Person = library["biden"]
    do_hide_person(person, by=alice)
    person.refresh_from_db()
    assert person.hidden
    assert FaceEvent.objects.filter(person=person, action="person_hidden", user=alice).exists()


def test_it_rematches_the_library_when_a_face_is_confirmed(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Later")
    waiting = [face_in_new_photo(gallery, p) for p in OBAMA[1:]]
    do_match_faces(waiting)
    assert {_pending(f) for f in waiting} == {None}
    person = do_create_person(alice, "Obama", by=alice)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_tag_face(face_in_new_photo(gallery, OBAMA[0]), person, by=alice)
    assert {_pending(f) for f in waiting} == {person.pk}


def test_it_keeps_confirmed_tags_when_matching(library: dict[str, Any], alice: User) -> None:
    face = face_in_new_photo(library["gallery"], OBAMA[1])
    do_tag_face(face, library["biden"], by=alice)
    do_match_faces([face])
    assert _state(face) == (library["biden"].pk, "confirmed", None)


def test_it_keeps_not_this_person_when_a_photo_is_processed_again(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Again")
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file("obama/obama1.jpg")], by=alice)
    photo = result.accepted[0]
    face = photo.faces.get()
    wrong = do_create_person(alice, "Not him", by=alice)
    FaceNotPerson.objects.create(face=face, person=wrong, created_by=alice)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_requeue_photo(photo)
    new_face = photo.faces.get()
    assert new_face.pk != face.pk
    row = FaceNotPerson.objects.get(person=wrong)
    assert row.face_id == new_face.pk and row.created_by == alice
