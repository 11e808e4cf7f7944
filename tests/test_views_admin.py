"""The admin lists and edit pages of every gallery and recognition model render."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import Face, FaceEvent, Person, Photo
from tests.factories import make_world

MODELS = [
    model for model in admin.site._registry if model._meta.app_label in {"gallery", "recognition"}
]


@pytest.fixture
def admin_client_with_data(alice: User) -> Client:
    make_world(alice)
    FaceEvent.objects.create(user=alice, action="face_tagged")
    superuser = User.objects.create_superuser("root", "root@example.test", "x")
    client = Client()
    client.force_login(superuser)
    return client


def test_it_registers_every_model_of_both_apps() -> None:
    from django.apps import apps

    expected = {
        m for name in ("gallery", "recognition") for m in apps.get_app_config(name).get_models()
    }
    assert expected == set(MODELS)


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_it_renders_the_admin_list_search_and_edit_pages(
    model: type, admin_client_with_data: Client
) -> None:
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert admin_client_with_data.get(changelist).status_code == 200
    assert admin_client_with_data.get(changelist, {"q": "a"}).status_code == 200
    obj = model.objects.first()
    if obj is not None:
        change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        assert admin_client_with_data.get(change).status_code == 200


def test_it_keeps_the_admin_away_from_members(bob_client: Client) -> None:
    response = bob_client.get(reverse("admin:gallery_photo_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def _superuser_client() -> Client:
    superuser = User.objects.create_superuser("root2", "root2@example.test", "x")
    client = Client()
    client.force_login(superuser)
    return client


def _post_change(client: Client, obj: object, data: dict[str, object]) -> int:
    opts = obj._meta  # type: ignore[attr-defined]
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])  # type: ignore[attr-defined]
    return client.post(url, data).status_code


def test_it_never_lets_an_admin_form_write_who_a_face_is_or_where_a_photo_stands(
    alice: User,
) -> None:
    world = make_world(alice)
    face = Face.objects.filter(person__isnull=False).select_related("photo").first()
    assert face is not None
    other = Person.objects.create(owner=alice, name="Someone else")
    client = _superuser_client()
    status = _post_change(
        client,
        face,
        {"person": other.pk, "assignment": "confirmed", "ood_status": "rejected"},
    )
    assert status == 403
    fresh = Face.objects.get(pk=face.pk)
    assert (fresh.person_id, fresh.assignment, fresh.ood_status) == (
        face.person_id,
        face.assignment,
        face.ood_status,
    )
    photo = face.photo
    assert _post_change(client, photo, {"status": "queued", "attempts": 0}) == 403
    assert Photo.objects.get(pk=photo.pk).status == photo.status
    assert world is not None


def test_it_renames_and_hides_a_person_through_the_logged_actions(alice: User) -> None:
    person = Person.objects.create(owner=alice, name="Old name")
    client = _superuser_client()
    status = _post_change(client, person, {"name": "AC/DC", "hidden": "on"})
    assert status == 302
    person.refresh_from_db()
    assert person.name == "AC/DC" and person.hidden
    actions = set(FaceEvent.objects.filter(person=person).values_list("action", flat=True))
    assert actions == {FaceEvent.Action.PERSON_RENAMED, FaceEvent.Action.PERSON_HIDDEN}


def test_it_processes_photos_again_from_the_admin(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    make_world(alice)
    photo = Photo.objects.first()
    assert photo is not None
    Photo.objects.filter(pk=photo.pk).update(status=Photo.Status.FAILED, error="broken")
    client = _superuser_client()
    url = reverse("admin:gallery_photo_changelist")
    response = client.post(
        url, {"action": "process_again", "_selected_action": [photo.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "1 photo(s) queued" in response.content.decode()
