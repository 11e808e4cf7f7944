"""Processing survives a killed worker and a database outage, with the default broker (the
queue in PostgreSQL, faceweb/broker.py) and real worker processes: every photo ends done or
failed with a reason, none is lost or processed into duplicate faces, and nobody restarts
anything by hand.

The outage test runs its own PostgreSQL server (a data directory under tmp_path), so stopping
it hurts no other test. Its two-minute version is marked `slow` (run it with `-m slow`); the
default suite stops the database for 20 seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection

from faceweb.broker import dispose_engines
from faceweb.celery import app as celery_app
from faceweb.db import start_embedded_server
from gallery.actions.galleries import do_create_gallery
from gallery.actions.photos import do_upload_photos
from gallery.models import Face, Photo
from tests.conftest import PHOTOS, REPO, upload_file

BATCH = [
    "obama/obama_small.jpg",
    "biden/biden.jpg",
    "obama/obama1.jpg",
    "biden/biden2.jpg",
    "kit_harington/john1.jpeg",
    "obama/obama2.jpg",
]


def _test_database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}:{db['PASSWORD']}@/{db['NAME']}?host={db['HOST']}"


def _broker_url(database_url: str) -> str:
    return "faceweb+" + database_url.replace("postgresql://", "postgresql+psycopg://", 1)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class Worker:
    """A real Celery worker process (prefork, one pool process) on a queue of its own."""

    def __init__(self, database_url: str, log: Path, **env: str) -> None:
        self.queue = f"test-{uuid.uuid4().hex[:8]}"
        self.log = log.open("w")
        environment = {
            **os.environ,
            "DATABASE_URL": database_url,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "FACEWEB_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "FACEWEB_PG_SHARED_BUFFERS": "",
            **env,
        }
        environment.pop("CELERY_BROKER_URL", None)
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "faceweb", "worker", "-Q", self.queue),
                *("-c", "1", "--pool", "prefork", "--without-gossip", "--without-mingle"),
                *("-l", "info"),
            ],
            cwd=REPO,
            env=environment,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


def _publish_to(broker_url: str, queue: str) -> dict[str, object]:
    old = {
        "broker_url": celery_app.conf.broker_url,
        "task_default_queue": celery_app.conf.task_default_queue,
        "task_always_eager": celery_app.conf.task_always_eager,
    }
    celery_app.conf.broker_url = broker_url
    celery_app.conf.task_default_queue = queue
    celery_app.conf.task_always_eager = False
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    return old


def _restore(old: dict[str, object]) -> None:
    for key, value in old.items():
        setattr(celery_app.conf, key, value)
    celery_app._pool = None
    celery_app.amqp._producer_pool = None
    dispose_engines()


@pytest.fixture
def db_worker(tmp_path: Path) -> Iterator[Worker]:
    url = _test_database_url()
    worker = Worker(url, tmp_path / "worker.log")
    old = _publish_to(_broker_url(url), worker.queue)
    try:
        yield worker
    finally:
        _restore(old)
        worker.stop()


def _wait(predicate: object, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    # The worker's own lines, without traceback frames, say what it did.
    lines = [line for line in log.read_text().splitlines() if not line.startswith((" ", "\t"))]
    pytest.fail(f"timed out waiting for {what}\n" + "\n".join(lines[-80:]))


def _assert_no_duplicate_faces(faces: list[tuple[int, int, int, int, int]]) -> None:
    """A photo processed twice over itself would hold the same box twice."""
    assert len(faces) == len(set(faces)), "duplicated faces"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_it_finishes_the_photo_whose_worker_was_killed(
    alice: User, db_worker: Worker, tmp_path: Path
) -> None:
    gallery = do_create_gallery(alice, "Killed worker")
    result = do_upload_photos(gallery, [upload_file(p) for p in BATCH[:3]], by=alice)
    assert len(result.accepted) == 3
    photos = Photo.objects.filter(gallery=gallery)
    log = tmp_path / "worker.log"
    _wait(
        lambda: photos.filter(status=Photo.Status.PROCESSING).exists(),
        120,
        "a photo in processing",
        log,
    )
    pool = _children(db_worker.process.pid)
    assert pool, "the worker has no pool process"
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    # The killed task held its photo and the others it had claimed for its batch
    # (FACEWEB_WORKER_BATCH); nothing claims them again before its message is redelivered.
    victims = list(photos.filter(status=Photo.Status.PROCESSING))
    assert victims

    _wait(lambda: not photos.exclude(status=Photo.Status.DONE).exists(), 240, "all done", log)
    for victim in victims:
        victim.refresh_from_db()
        assert victim.attempts == 2, victim.attempts  # the killed run and the one that finished
        assert Face.objects.filter(photo=victim).count() >= 1
    assert "exited with 'signal 9" in log.read_text()
    _assert_no_duplicate_faces(
        list(
            Face.objects.filter(photo__gallery=gallery).values_list(
                "photo_id", "left", "top", "width", "height"
            )
        )
    )


# The outage ------------------------------------------------------------------------------


class OwnServer:
    """A PostgreSQL server of the outage test's own, migrated for faceweb."""

    def __init__(self, root: Path) -> None:
        import pgserver

        os.environ["FACEWEB_PG_SHARED_BUFFERS"] = ""
        try:
            self.url = start_embedded_server(root / "pgdata")
        finally:
            os.environ.pop("FACEWEB_PG_SHARED_BUFFERS", None)
        self.server = pgserver.get_server(str((root / "pgdata").resolve()), cleanup_mode=None)
        env = {**os.environ, "DATABASE_URL": self.url}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=REPO,
            env=env,
            check=True,
            timeout=300,
        )

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        socket_dir = str(self.server.pgdata)
        self._pg_ctl(
            "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.server.log), "start"
        )

    def destroy(self) -> None:
        with contextlib.suppress(Exception):  # already stopped
            self.stop()

    def sql(self, query: str) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query).fetchall()


UPLOAD = """
from django.contrib.auth.models import User
from gallery.actions.galleries import do_create_gallery
from gallery.actions.photos import do_upload_photos
from django.core.files.uploadedfile import SimpleUploadedFile
from pathlib import Path
owner = User.objects.create_user("outage")
gallery = do_create_gallery(owner, "Outage")
files = [SimpleUploadedFile(Path(p).name, Path(p).read_bytes()) for p in {paths!r}]
result = do_upload_photos(gallery, files, by=owner)
assert len(result.accepted) == len(files), result.rejected
"""


@pytest.fixture
def server_root() -> Iterator[Path]:
    """Not under pytest's temporary folders: as root, pgserver runs PostgreSQL as its own
    system user, and pytest keeps its folders private to root (again at every session start)."""
    root = Path(tempfile.mkdtemp(prefix="faceweb-outage-", dir="/tmp"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _outage(root: Path, tmp_path: Path, outage_seconds: int) -> None:
    server = OwnServer(root)
    log = tmp_path / "worker.log"
    worker = Worker(server.url, log, FACEWEB_DATABASE_WAIT_SECONDS="600")
    try:
        paths = [str(PHOTOS / p) for p in BATCH]
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", UPLOAD.format(paths=paths)],
            cwd=REPO,
            env={
                **os.environ,
                "DATABASE_URL": server.url,
                "CELERY_TASK_DEFAULT_QUEUE": worker.queue,
                "FACEWEB_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            },
            check=True,
            timeout=300,
        )

        def counts() -> dict[str, int]:
            rows = server.sql("SELECT status, count(*) FROM gallery_photo GROUP BY status")
            return dict(rows)

        # Mid-batch: one photo is done, the others wait or are being processed.
        _wait(lambda: counts().get("done", 0) >= 1, 300, "the first photo", log)
        before = counts()
        assert before.get("done", 0) < len(BATCH), before
        server.stop()
        time.sleep(outage_seconds)
        server.start()
        _wait(
            lambda: counts().get("done", 0) + counts().get("failed", 0) == len(BATCH),
            600,
            "every photo to finish after the outage",
            log,
        )
        final = counts()
        assert final == {"done": len(BATCH)}, (final, log.read_text()[-3000:])
        faces = server.sql(
            'SELECT photo_id, "left", top, width, height FROM gallery_face ORDER BY photo_id'
        )
        _assert_no_duplicate_faces([tuple(f) for f in faces])
        assert {f[0] for f in faces} >= {
            row[0]
            for row in server.sql("SELECT id FROM gallery_photo WHERE original_name LIKE 'obama%'")
        }
    finally:
        worker.stop()
        server.destroy()


@pytest.mark.worker
def test_it_finishes_a_batch_across_a_short_database_outage(
    server_root: Path, tmp_path: Path
) -> None:
    _outage(server_root, tmp_path, outage_seconds=20)


@pytest.mark.slow
@pytest.mark.worker
def test_it_finishes_a_batch_across_a_two_minute_database_outage(
    server_root: Path, tmp_path: Path
) -> None:
    _outage(server_root, tmp_path, outage_seconds=120)
