"""Biometric data goes with its owner: deleting a person removes their templates and the
embeddings of their faces; deleting a user leaves nothing of them in the database or on disk;
a user can take their data away as a zip."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse

from gallery.actions.accounts import do_create_api_key, do_delete_user
from gallery.actions.people import do_create_person
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, FaceEvent, Gallery, GalleryMember, Person
from recognition.actions.identity import do_delete_person, do_tag_face
from recognition.models import Template
from tests.conftest import client_for, upload_file
from tests.factories import face_in_new_photo


def _rows_mentioning(text: str) -> dict[str, int]:
    """Rows of any table whose text form contains `text` (case-insensitive)."""
    found: dict[str, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f'SELECT count(*) FROM "{table}" t WHERE t::text ILIKE %s', [f"%{text}%"]
            )
            count = cursor.fetchone()[0]
            if count:
                found[table] = count
    return found


def _references_to(user_id: int) -> dict[str, int]:
    found = {}
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model is User:
                count = model._default_manager.filter(**{field.attname: user_id}).count()
                if count:
                    found[f"{model._meta.label}.{field.name}"] = count
    return found


def test_it_deletes_a_persons_templates_and_face_embeddings(alice: User) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Family")
    zelda = do_create_person(alice, "Zelda Zimmermann", by=alice)
    faces = [face_in_new_photo(gallery, p) for p in ("obama/obama.jpg", "obama/obama1.jpg")]
    for face in faces:
        do_tag_face(face, zelda, by=alice)
    other = face_in_new_photo(gallery, "biden/biden.jpg")
    assert Template.objects.filter(person=zelda).count() == 2

    response = client_for(alice).delete(reverse("api:person-detail", args=[zelda.pk]))
    assert response.status_code == 204
    assert not Person.objects.filter(pk=zelda.pk).exists()
    assert not Template.objects.filter(face__in=faces).exists()
    for face in faces:
        face.refresh_from_db()
        assert face.person_id is None and face.embedding is None
    other.refresh_from_db()
    assert other.embedding is not None  # only their faces
    assert _rows_mentioning("Zelda Zimmermann") == {}


def test_it_deletes_a_person_only_for_the_owner(alice: User, bob: User) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Shared")
    GalleryMember.objects.create(gallery=gallery, user=bob, role=GalleryMember.Role.EDITOR)
    ann = do_create_person(alice, "Ann", by=alice)
    do_tag_face(face_in_new_photo(gallery, "obama/obama.jpg"), ann, by=alice)
    assert client_for(bob).delete(reverse("api:person-detail", args=[ann.pk])).status_code == 403
    do_delete_person(ann, by=alice)
    assert not Person.objects.filter(pk=ann.pk).exists()


def test_it_leaves_nothing_of_a_deleted_user(
    alice: User, bob: User, _media_root: Path, django_capture_on_commit_callbacks: object
) -> None:
    # alice: a gallery processed by the real pipeline, a named person, a key, a membership
    # in bob's gallery; bob: a membership in hers.
    mine = Gallery.objects.create(owner=alice, name="Alice holidays")
    GalleryMember.objects.create(gallery=mine, user=bob)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(mine, [upload_file("obama/obama_small.jpg")], by=alice)
    face = result.accepted[0].faces.get()
    person = do_create_person(alice, "Quentin Quasimodo", by=alice)
    do_tag_face(face, person, by=alice)
    assert Template.objects.filter(owner=alice).exists()
    do_create_api_key(alice, "script")
    bobs = Gallery.objects.create(owner=bob, name="Bob's")
    GalleryMember.objects.create(gallery=bobs, user=alice)
    client_for(alice).get(reverse("gallery:gallery-list"))  # a session
    assert any(_media_root.rglob("*.jpg"))

    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        do_delete_user(alice)

    assert not User.objects.filter(username="alice").exists()
    assert _references_to(alice.pk) == {}
    for text in ("Alice holidays", "Quentin Quasimodo", "obama_small", "alice"):
        assert _rows_mentioning(text) == {}, text
    assert not Face.objects.filter(pk=face.pk).exists()
    assert not FaceEvent.objects.filter(face__isnull=True, person__isnull=True, user__isnull=True)
    assert [p for p in _media_root.rglob("*") if p.is_file()] == []
    # bob and his gallery are untouched.
    assert Gallery.objects.filter(owner=bob).count() == 1


def test_it_exports_a_users_photos_names_and_boxes(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Export me")
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        result = do_upload_photos(gallery, [upload_file("obama/obama_small.jpg")], by=alice)
    photo = result.accepted[0]
    face = photo.faces.get()
    do_tag_face(face, do_create_person(alice, "Barack", by=alice), by=alice)

    response = client_for(alice).get(reverse("account-export"))
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.getvalue()))
    index = json.loads(archive.read("faceweb.json"))
    [exported] = index["galleries"][0]["photos"]
    assert exported["name"] == "obama_small.jpg"
    assert exported["faces"] == [
        {
            "box": {"left": face.left, "top": face.top, "width": face.width, "height": face.height},
            "person": "Barack",
            "confirmed": True,
        }
    ]
    assert archive.read(exported["file"]) == Path(photo.original.path).read_bytes()
