"""An action that fails half way leaves nothing half done (each of these was not atomic)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse

from gallery.actions import people, photos
from gallery.actions.people import do_create_person
from gallery.actions.photos import do_delete_photo, do_move_photos, do_upload_photos
from gallery.models import Face, FaceEvent, Gallery, Person, Photo
from recognition.actions import identity
from recognition.actions.identity import do_tag_face, do_untag_face
from recognition.index.enrolment import sync_face_templates
from tests.conftest import upload_file


class Boom(RuntimeError):
    pass


def processed_photo(gallery: Gallery, relative: str, by: User, capture: object) -> Photo:
    """A photo uploaded and processed by the real pipeline (tasks run eagerly in tests)."""
    with capture(execute=True):  # type: ignore[operator]
        photo = do_upload_photos(gallery, [upload_file(relative)], by=by).accepted[0]
    photo.refresh_from_db()
    assert photo.status == Photo.Status.DONE, photo.error
    return photo


def _explode(*_args: object, **_kwargs: object) -> None:
    raise Boom


def test_it_creates_no_person_when_the_audit_entry_fails(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(people.FaceEvent.objects, "create", _explode)
    with pytest.raises(Boom):
        do_create_person(alice, "Ada", by=alice)
    assert not Person.objects.filter(name="Ada").exists()


def test_it_keeps_the_tag_when_untagging_fails_half_way(
    alice: User,
    gallery: Gallery,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: object,
) -> None:
    photo = processed_photo(gallery, "biden/biden.jpg", alice, django_capture_on_commit_callbacks)
    face = photo.faces.get()
    person = do_create_person(alice, "Joe", by=alice)
    do_tag_face(face, person, by=alice)
    monkeypatch.setattr(identity, "sync_face_templates", _explode)
    with pytest.raises(Boom):
        do_untag_face(face, by=alice)
    face = Face.objects.get(pk=face.pk)
    assert face.person_id == person.pk and face.assignment == Face.Assignment.CONFIRMED
    assert not FaceEvent.objects.filter(action=FaceEvent.Action.FACE_UNTAGGED).exists()


def test_it_keeps_the_photo_and_its_files_when_deleting_fails_half_way(
    alice: User,
    gallery: Gallery,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: object,
) -> None:
    photo = processed_photo(gallery, "biden/biden.jpg", alice, django_capture_on_commit_callbacks)
    photo_id = photo.pk
    names = [photo.original.name, photo.thumbnail.name, *photo.faces.values_list("crop", flat=True)]
    monkeypatch.setattr(photos, "sync_face_templates", _explode)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Boom):  # type: ignore[operator]
        do_delete_photo(photo, by=alice)
    assert gallery.photos.filter(pk=photo_id).exists()
    assert all(default_storage.exists(name) for name in names if name)
    assert not FaceEvent.objects.filter(action=FaceEvent.Action.PHOTO_DELETED).exists()
    assert Path(photo.original.path).exists()


def _explode_for(face_ids: set[int], real: Callable[..., object]) -> Callable[..., object]:
    """sync_face_templates that fails once it is given one of `face_ids` (a later photo)."""

    def sync(ids: Iterable[int]) -> object:
        ids = list(ids)
        if face_ids & set(ids):
            raise Boom
        return real(ids)

    return sync


def test_it_deletes_all_selected_photos_or_none(
    alice: User,
    gallery: Gallery,
    alice_client: Client,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: object,
) -> None:
    """The bulk delete ran one transaction per photo: a failure on the second left the first
    deleted and the rest kept."""
    first = processed_photo(gallery, "biden/biden.jpg", alice, django_capture_on_commit_callbacks)
    second = processed_photo(gallery, "obama/obama.jpg", alice, django_capture_on_commit_callbacks)
    # The grid deletes newest first: `second`, then `first`, which fails.
    later = set(first.faces.values_list("pk", flat=True))
    monkeypatch.setattr(photos, "sync_face_templates", _explode_for(later, sync_face_templates))
    url = reverse("gallery:photos-bulk", args=[gallery.pk])
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Boom):  # type: ignore[operator]
        alice_client.post(url, {"action": "delete", "photo": [first.pk, second.pk]})
    assert set(gallery.photos.values_list("pk", flat=True)) == {first.pk, second.pk}
    assert Path(first.original.path).exists()
    assert not FaceEvent.objects.filter(action=FaceEvent.Action.PHOTO_DELETED).exists()


def test_it_leaves_no_linked_files_when_a_move_fails(
    alice: User,
    gallery: Gallery,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: object,
    _media_root: Path,
) -> None:
    """The files were linked under the new gallery before the transaction; a move that failed
    left those links behind."""
    first = processed_photo(gallery, "biden/biden.jpg", alice, django_capture_on_commit_callbacks)
    second = processed_photo(gallery, "obama/obama.jpg", alice, django_capture_on_commit_callbacks)
    target = Gallery.objects.create(owner=alice, name="Target")
    later = set(second.faces.values_list("pk", flat=True))
    monkeypatch.setattr(photos, "sync_face_templates", _explode_for(later, sync_face_templates))
    before = sorted(p for p in _media_root.rglob("*") if p.is_file())
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Boom):  # type: ignore[operator]
        do_move_photos([first, second], target, by=alice)
    assert set(gallery.photos.values_list("pk", flat=True)) == {first.pk, second.pk}
    assert sorted(p for p in _media_root.rglob("*") if p.is_file()) == before
