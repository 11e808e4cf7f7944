"""Accounts and API keys: the only writer of users (outside Django admin) and ApiKey rows.

Deleting a user takes everything of theirs with them: galleries, photos, faces, people,
templates, API keys, the audit rows about them, and the stored files.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.models import Session
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from gallery.actions.common import ActionError
from gallery.actions.photos import delete_stored_files
from gallery.models import ApiKey, Face, FaceEvent, Gallery, Person, Photo

KEY_TAG = "fw"
MAX_KEYS_PER_USER = 50
# Writing last_used_at on every call would make each API read a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    secret: str  # the whole key: shown once, never stored


@transaction.atomic
def do_create_api_key(
    user: User,
    name: str,
    *,
    read_only: bool = False,
    expires_at: datetime | None = None,
) -> NewKey:
    name = name.strip()[:100]
    if not name:
        raise ActionError("Give the key a name, so you can tell your keys apart.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ActionError("The expiry date must be in the future.")
    if ApiKey.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_KEYS_PER_USER:
        raise ActionError(f"You have {MAX_KEYS_PER_USER} keys already; revoke one first.")
    prefix = secrets.token_hex(6)
    secret = f"{KEY_TAG}_{prefix}_{secrets.token_urlsafe(24)}"
    key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        digest=_digest(secret),
        read_only=read_only,
        expires_at=expires_at,
    )
    return NewKey(key=key, secret=secret)


@transaction.atomic
def do_revoke_api_key(key: ApiKey) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
    return key


def check_api_key(secret: str) -> ApiKey | None:
    """The live key this secret belongs to, or None (unknown, wrong, revoked or expired)."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_TAG or len(parts[1]) != 12 or not parts[1].isalnum():
        return None
    if not parts[1].isascii() or "\x00" in secret:
        return None
    key = ApiKey.objects.filter(prefix=parts[1]).select_related("user").first()
    if key is None or not hmac.compare_digest(key.digest, _digest(secret)):
        return None
    now = timezone.now()
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return None
    if not key.user.is_active:
        return None
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


# Users --------------------------------------------------------------------------------------


def invite_path(user: User) -> str:
    """The one-use link (a password-reset link) with which an invited user sets a password."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("password_reset_confirm", kwargs={"uidb64": uid, "token": token})


@dataclass(frozen=True)
class NewUser:
    user: User
    invite_path: str  # empty when a password was given


@transaction.atomic
def do_create_user(
    username: str,
    email: str = "",
    *,
    password: str = "",
    is_staff: bool = False,
    site_url: str = "",
) -> NewUser:
    """A new account. Without a password it is an invitation: the user sets one through the
    link (mailed when there is an address and the site URL is known)."""
    model = get_user_model()
    username = username.strip()
    if not username:
        raise ActionError("A user needs a user name.")
    if "\x00" in username + email + password:
        raise ActionError("Names and addresses cannot contain NUL characters.")
    if model.objects.filter(username__iexact=username).exists():
        raise ActionError(f"There is already a user called {username!r}.")
    user = model.objects.create_user(username, email.strip(), password or None)
    if is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    if password:
        return NewUser(user=user, invite_path="")
    path = invite_path(user)
    if email and site_url:
        body = f"Hello {username},\n\nset your password and sign in here:\n{site_url}{path}\n"
        transaction.on_commit(lambda: send_mail("You are invited to faceweb", body, None, [email]))
    return NewUser(user=user, invite_path=path)


@transaction.atomic
def do_delete_user(user: User) -> None:
    """Delete a user with all their galleries, photos, faces, people, templates and keys, the
    audit rows about them and their faces, and (after commit) their stored files."""
    galleries = Gallery.objects.filter(owner=user)
    photos = Photo.objects.filter(gallery__in=galleries)
    faces = Face.objects.filter(photo__in=photos)
    names = [n for row in photos.values_list("original", "thumbnail", "preview") for n in row if n]
    names += [n for n in faces.values_list("crop", flat=True) if n]
    _delete_sessions(user)
    people = Person.objects.filter(owner=user)
    FaceEvent.objects.filter(Q(user=user) | Q(face__in=faces) | Q(person__in=people)).delete()
    galleries.delete()  # photos, faces, batches, memberships, templates: by cascade
    people.delete()
    user.delete()  # API keys, memberships in others' galleries: by cascade
    transaction.on_commit(lambda: delete_stored_files(names))


def _delete_sessions(user: User) -> None:
    """Sign the user out everywhere (Django keeps sessions of deleted users until they expire)."""
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.get_decoded().get("_auth_user_id") == str(user.pk):
            session.delete()
