"""Accounts and API keys: a user changes their password, an invited user signs in, a script
uploads with an API key (and a revoked key is refused), failed sign-ins are throttled."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from gallery.actions.accounts import do_create_api_key
from gallery.models import ApiKey, Gallery, Photo
from tests.conftest import PASSWORD, client_for, upload_file

NEW_PASSWORD = "a-much-longer-passphrase-2026"


def _signs_in(username: str, password: str) -> bool:
    return Client().login(username=username, password=password)


def test_it_lets_a_user_change_their_password(alice: User) -> None:
    client = client_for(alice)
    assert client.get(reverse("password_change")).status_code == 200
    response = client.post(
        reverse("password_change"),
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    assert _signs_in("alice", NEW_PASSWORD) and not _signs_in("alice", PASSWORD)


def test_it_invites_a_user_who_then_signs_in(
    staff: User, alice: User, django_capture_on_commit_callbacks: object
) -> None:
    client = client_for(staff)
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        page = client.post(
            reverse("users"), {"username": "dora", "email": "dora@example.test", "is_staff": ""}
        )
    assert page.status_code == 200
    html = page.content.decode()
    link = re.search(r"http://testserver(/accounts/reset/[^<\s]+)", html)
    assert link, html
    assert len(mail.outbox) == 1 and link.group(1) in mail.outbox[0].body
    dora = User.objects.get(username="dora")
    assert not dora.has_usable_password()
    # The invited user follows the link and sets a password.
    guest = Client()
    form = guest.get(link.group(1), follow=True)
    assert form.status_code == 200 and "Set your password" in form.content.decode()
    done = guest.post(
        form.redirect_chain[-1][0],
        {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert done.status_code == 302 and done["Location"] == reverse("password_reset_complete")
    assert _signs_in("dora", NEW_PASSWORD)
    # The link works once.
    assert "no longer works" in Client().get(link.group(1), follow=True).content.decode()
    # Staff see who has access to what; others do not see the page at all.
    overview = client.get(reverse("users")).content.decode()
    assert "dora" in overview and "alice" in overview
    assert client_for(alice).get(reverse("users")).status_code == 404


def test_it_mails_a_password_reset_link(alice: User) -> None:
    response = Client().post(reverse("password_reset"), {"email": "alice@example.test"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and "/accounts/reset/" in mail.outbox[0].body


def test_it_has_self_registration_off_unless_turned_on(db: None, settings: object) -> None:
    assert Client().get(reverse("register")).status_code == 404
    settings.FACEWEB_SELF_REGISTRATION = True  # type: ignore[attr-defined]
    response = Client().post(
        reverse("register"),
        {"username": "erin", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert _signs_in("erin", NEW_PASSWORD)


def test_it_throttles_repeated_failed_sign_ins(alice: User, settings: object) -> None:
    settings.FACEWEB_LOGIN_FAILURES = 3  # type: ignore[attr-defined]
    client = Client()
    for _ in range(3):
        page = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
        assert page.status_code == 200 and "Too many" not in page.content.decode()
    refused = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert refused.status_code == 200
    assert "Too many failed sign-ins" in refused.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_makes_a_key_shown_once_and_stored_hashed(alice: User) -> None:
    client = client_for(alice)
    page = client.post(reverse("api-keys"), {"name": "backup script", "expires_in_days": "30"})
    assert page.status_code == 200
    secret = re.search(r"fw_[0-9a-f]{12}_[A-Za-z0-9_-]+", page.content.decode())
    assert secret
    key = ApiKey.objects.get(user=alice)
    assert key.name == "backup script" and key.expires_at is not None
    assert secret.group(0) not in str(list(ApiKey.objects.values_list()))
    listing = client.get(reverse("api-keys")).content.decode()
    assert "backup script" in listing and secret.group(0) not in listing


def test_a_script_uploads_with_a_key_and_a_revoked_key_is_refused(
    alice: User, django_capture_on_commit_callbacks: object
) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Scripted")
    new = do_create_api_key(alice, "uploader")
    bearer = {"Authorization": f"Bearer {new.secret}"}
    script = Client(enforce_csrf_checks=True)
    url = reverse("api:gallery-photos", args=[gallery.pk])
    with django_capture_on_commit_callbacks(execute=True):  # type: ignore[operator]
        uploaded = script.post(
            url, {"files": [upload_file("obama/obama_small.jpg")]}, headers=bearer
        )
    assert uploaded.status_code == 201, uploaded.content
    photo = Photo.objects.get(pk=uploaded.json()["accepted"][0]["id"])
    assert photo.status == Photo.Status.DONE and photo.uploaded_by == alice
    assert ApiKey.objects.get(pk=new.key.pk).last_used_at is not None

    client_for(alice).post(reverse("api-key-revoke", args=[new.key.pk]))
    refused = script.get(reverse("api:gallery-list"), headers=bearer)
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")


def test_it_lets_a_read_only_key_read_but_not_write(alice: User) -> None:
    gallery = Gallery.objects.create(owner=alice, name="Read me")
    key = do_create_api_key(alice, "viewer", read_only=True)
    bearer = {"Authorization": f"Bearer {key.secret}"}
    client = Client()
    assert client.get(reverse("api:gallery-list"), headers=bearer).status_code == 200
    write = client.patch(
        reverse("api:gallery-detail", args=[gallery.pk]),
        {"name": "x"},
        content_type="application/json",
        headers=bearer,
    )
    assert write.status_code == 403 and "read-only" in write.json()["detail"]


@pytest.mark.parametrize("kind", ["expired", "wrong", "malformed"])
def test_it_refuses_bad_keys(alice: User, kind: str) -> None:
    new = do_create_api_key(alice, "k")
    secret = {
        "expired": new.secret,
        "wrong": new.secret[:-4] + "AAAA",
        "malformed": "fw_notakey",
    }[kind]
    if kind == "expired":
        ApiKey.objects.filter(pk=new.key.pk).update(expires_at=timezone.now() - timedelta(1))
    response = Client().get(
        reverse("api:gallery-list"), headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 401


def test_it_throttles_key_guessing(alice: User) -> None:
    client = Client()
    headers = {"Authorization": "Bearer fw_000000000000_guess"}
    codes = [
        client.get(reverse("api:gallery-list"), headers=headers).status_code for _ in range(21)
    ]
    assert codes[:20] == [401] * 20 and codes[20] == 429


def test_it_documents_bearer_keys_in_the_schema(alice: User) -> None:
    schema = client_for(alice).get(reverse("api-schema"), {"format": "json"}).json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    assert "basicAuth" not in schema["components"]["securitySchemes"]


def test_it_counts_failures_per_client_behind_a_trusted_proxy(
    alice: User, settings: object
) -> None:
    settings.FACEWEB_LOGIN_FAILURES = 1  # type: ignore[attr-defined]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")  # type: ignore[attr-defined]

    def sign_in(client_ip: str, username: str, password: str) -> str:
        response = Client().post(
            reverse("login"),
            {"username": username, "password": password},
            headers={"X-Forwarded-For": f"10.9.9.9, {client_ip}"},  # spoofed, then the proxy's
        )
        return response.content.decode()

    for name in ("u1", "u2", "u3"):  # three names from one client: its address limit (3 x 1)
        sign_in("192.0.2.1", name, "wrong")
    assert "Too many failed sign-ins" in sign_in("192.0.2.1", "alice", PASSWORD)
    # Another client behind the same proxy is not locked out.
    assert "Too many failed sign-ins" not in sign_in("192.0.2.2", "bob", "wrong")
