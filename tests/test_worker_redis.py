"""An upload travels through a real Celery worker process over a real Redis broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from faceweb.celery import app as celery_app
from gallery.actions.galleries import do_create_gallery
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Photo
from tests.conftest import REPO, upload_file

REDIS_URL = os.environ.get("FACEWEB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _database_url() -> str:
    db = connection.settings_dict
    host = db["HOST"] or "localhost"
    if host.startswith("/"):
        return f"postgresql://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={host}"
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def _reset_connections() -> None:
    """Forget pooled broker connections so the next publish uses the current broker_url."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def redis_worker(tmp_path: Path) -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # Redis must run: ./dev test starts it
    queue = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "DATABASE_URL": _database_url(),
        "FACEWEB_MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "faceweb", "worker", "-Q", queue, "-c", "1"),
            *("--pool", "solo", "--without-gossip", "--without-mingle", "-l", "info"),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    old = {
        "broker_url": celery_app.conf.broker_url,
        "task_default_queue": celery_app.conf.task_default_queue,
        "task_always_eager": celery_app.conf.task_always_eager,
    }
    celery_app.conf.broker_url = REDIS_URL
    celery_app.conf.task_default_queue = queue
    celery_app.conf.task_always_eager = False
    _reset_connections()
    try:
        yield queue
    finally:
        for key, value in old.items():
            setattr(celery_app.conf, key, value)
        _reset_connections()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        client.delete(queue)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_it_processes_an_upload_in_a_real_worker_over_redis(
    alice: User, redis_worker: str, tmp_path: Path
) -> None:
    gallery = do_create_gallery(alice, "Worker test")
    result = do_upload_photos(
        gallery,
        [upload_file("_multi_face/obama_and_biden.jpg"), upload_file("obama/obama_small.jpg")],
        by=alice,
    )
    assert len(result.accepted) == 2 and not result.rejected

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        statuses = set(Photo.objects.filter(gallery=gallery).values_list("status", flat=True))
        if statuses <= {Photo.Status.DONE, Photo.Status.FAILED}:
            break
        time.sleep(0.5)
    else:
        log = (tmp_path / "worker.log").read_text()
        pytest.fail(f"the worker did not finish in time; statuses {statuses}\n{log[-3000:]}")

    group = Photo.objects.get(gallery=gallery, original_name="obama_and_biden.jpg")
    assert group.status == Photo.Status.DONE, group.error
    assert group.width and group.height and group.thumbnail.name and group.preview.name
    faces = Face.objects.filter(photo=group)
    assert faces.count() == 3
    for face in faces:
        assert face.embedding is not None and len(face.embedding) == 128
        assert face.embedder_version
        assert face.ood_status != Face.Quality.PENDING
    assert Path(group.original.path).exists()
