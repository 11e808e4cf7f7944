"""Shared fixtures: the real embedded PostgreSQL, three named users, real photos.

alice owns the gallery, bob is a member (editor unless a test changes it), charlie is a stranger.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from faceweb.celery import app as celery_app
from faceweb.db import ensure_embedded_server
from gallery.models import Gallery, GalleryMember

REPO = Path(__file__).resolve().parent.parent
FACES_DIR = Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces")).resolve()
PHOTOS = FACES_DIR / "photos"
PASSWORD = "correct-horse-battery-staple"

# The suite gets the embedded server like any entry point does (nothing starts it on import).
ensure_embedded_server()


@pytest.fixture(scope="session", autouse=True)
def _eager_celery() -> Iterator[None]:
    """Tasks run in-process unless a test starts a real worker (tests/test_worker_redis.py)."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: object) -> None:
    # PBKDF2 costs ~0.3 s per user on this machine; tests create three users each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _media_root(tmp_path_factory: pytest.TempPathFactory, settings: object) -> Path:
    root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = str(root)  # type: ignore[attr-defined]
    return root


@pytest.fixture
def faces_dir() -> Path:
    assert FACES_DIR.is_dir(), f"shared faces folder missing: {FACES_DIR}"
    return FACES_DIR


def photo_path(relative: str) -> Path:
    path = PHOTOS / relative
    assert path.exists(), path
    return path


def upload_file(relative_or_path: str | Path, name: str | None = None) -> SimpleUploadedFile:
    path = relative_or_path if isinstance(relative_or_path, Path) else photo_path(relative_or_path)
    return SimpleUploadedFile(name or path.name, path.read_bytes())


def copy_photo(relative: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(photo_path(relative), dest)
    return dest


def _user(username: str, **extra: object) -> User:
    return User.objects.create_user(username, f"{username}@example.test", PASSWORD, **extra)


@pytest.fixture
def alice(db: None) -> User:
    return _user("alice")


@pytest.fixture
def bob(db: None) -> User:
    return _user("bob")


@pytest.fixture
def charlie(db: None) -> User:
    return _user("charlie")


@pytest.fixture
def staff(db: None) -> User:
    return _user("reviewer", is_staff=True)


@pytest.fixture
def gallery(alice: User, bob: User) -> Gallery:
    gallery = Gallery.objects.create(owner=alice, name="Holidays")
    GalleryMember.objects.create(gallery=gallery, user=bob, role=GalleryMember.Role.EDITOR)
    return gallery


@pytest.fixture
def uncalibrated_flip(monkeypatch: pytest.MonkeyPatch) -> str:
    """The flip-averaged dlib version without its thresholds: an uncalibrated version (as every
    InsightFace pack starts) on the real models and real photos, for the learning phase."""
    from recognition.core import calibration
    from recognition.core.versions import DLIB_RESNET_FLIP_VERSION

    monkeypatch.delitem(calibration.THRESHOLDS, DLIB_RESNET_FLIP_VERSION)
    return DLIB_RESNET_FLIP_VERSION


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice: User) -> Client:
    return client_for(alice)


@pytest.fixture
def bob_client(bob: User) -> Client:
    return client_for(bob)


@pytest.fixture
def charlie_client(charlie: User) -> Client:
    return client_for(charlie)
