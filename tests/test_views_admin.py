"""The admin lists and edit pages of every gallery and recognition model render."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gallery.models import FaceEvent
from tests.web_factories import make_world

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
