"""Load on the production server: 50 signed-in users at once, a 2-minute idle, 50 users again.

    python -m bench.bench_load [--users 50] [--requests 20] [--idle 120]

Starts gunicorn exactly as `./dev run` does (faceweb/gunicorn.py) on a free port of 127.0.0.1,
against a database of its own on the embedded server (`faceweb_bench`, created and migrated
here, dropped at the end) with a gallery of generated photos that every bench user may see.
Each user is a thread with its own keep-alive connection that walks the pages and the API a
fixed number of times: the load is bounded in requests and in time, and goes to loopback only.
Prints p50/p95 per endpoint (first for one user alone: the requests' own cost, then for all
users at once), errors and the server's PostgreSQL connections before, after each round and after
the idle; writes the "load" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "faceweb_bench"
DEADLINE_SECONDS = 600  # a round that takes longer than this stops by itself


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup_django(database_url: str, media_root: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ["FACEWEB_MEDIA_ROOT"] = media_root
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
    import django

    django.setup()


def _bench_database() -> str:
    """Create the bench database on the embedded server; returns its URL."""
    from pathlib import Path as _Path

    import psycopg

    from faceweb.db import EMBEDDED_DB_NAME, start_embedded_server

    var_dir = _Path(os.environ.get("FACEWEB_VAR_DIR", REPO / "var")).resolve()
    url = start_embedded_server(var_dir / "pgdata")
    admin = url.replace(f"/{EMBEDDED_DB_NAME}?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    return url.replace(f"/{EMBEDDED_DB_NAME}?", f"/{BENCH_DB}?")


def _drop_database(url: str) -> None:
    import psycopg

    admin = url.replace(f"/{BENCH_DB}?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def _jpeg(width: int, height: int, shade: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (shade % 256, 120, 200)).save(out, format="JPEG")
    return out.getvalue()


@dataclass
class World:
    gallery_id: int
    photo_ids: list[int]
    person_ids: list[int]
    thumbnails: list[str]
    cookies: list[str]


def _make_world(users: int, photos: int) -> World:
    """One owner's gallery of `photos` processed photos (two named faces each), shared with
    `users` viewers, each with a session made directly (no password hashing in the bench)."""
    from django.conf import settings
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.files.base import ContentFile
    from django.core.management import call_command

    from gallery.models import Face, Gallery, GalleryMember, Person, Photo

    call_command("migrate", verbosity=0)
    model = get_user_model()
    owner = model.objects.create_user("bench-owner", password=None)
    gallery = Gallery.objects.create(owner=owner, name="Bench", tags=["bench"])
    people = [Person.objects.create(owner=owner, name=f"Person {i}") for i in range(20)]
    photo_ids, thumbnails = [], []
    for i in range(photos):
        photo = Photo(
            gallery=gallery,
            uploaded_by=owner,
            original_name=f"photo{i}.jpg",
            sha256=f"{i:064x}",
            content_type="image/jpeg",
            status=Photo.Status.DONE,
            width=640,
            height=480,
        )
        photo.original.save("o.jpg", ContentFile(_jpeg(640, 480, i)), save=False)
        photo.thumbnail.save("t.jpg", ContentFile(_jpeg(160, 120, i)), save=False)
        photo.preview.save("p.jpg", ContentFile(_jpeg(320, 240, i)), save=False)
        photo.save()
        for j in range(2):
            face = Face(
                photo=photo,
                left=50 + 200 * j,
                top=60,
                width=120,
                height=120,
                landmarks=[[100.0, 100.0]] * 5,
                det_score=1.0,
                ood_status=Face.Quality.ACCEPTED,
                person=people[(2 * i + j) % len(people)],
                assignment=Face.Assignment.CONFIRMED,
            )
            face.crop.save("c.jpg", ContentFile(_jpeg(64, 64, i + j)), save=False)
            face.save()
        photo_ids.append(photo.pk)
        thumbnails.append(photo.thumbnail.name or "")
    cookies = []
    for n in range(users):
        user = model.objects.create_user(f"bench-user-{n}", password=None)
        GalleryMember.objects.create(gallery=gallery, user=user)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
    return World(gallery.pk, photo_ids, [p.pk for p in people], thumbnails, cookies)


def _paths(world: World, k: int) -> list[tuple[str, str]]:
    """One user's walk: (endpoint name, path)."""
    photo = world.photo_ids[k % len(world.photo_ids)]
    person = world.person_ids[k % len(world.person_ids)]
    return [
        ("galleries page", "/"),
        ("gallery page", f"/galleries/{world.gallery_id}/"),
        ("photo page", f"/photos/{photo}/"),
        ("thumbnail", f"/media/{world.thumbnails[k % len(world.thumbnails)]}"),
        ("people page", "/people/"),
        ("person page", f"/people/{person}/"),
        ("api galleries", "/api/galleries/"),
        ("api photos", f"/api/galleries/{world.gallery_id}/photos/"),
        ("api people", "/api/people/"),
    ]


@dataclass
class Round:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.latencies.values()) + sum(self.errors.values())


def _user(
    port: int,
    cookie: str,
    walk: list[tuple[str, str]],
    times: int,
    out: Round,
    think: float = 0.0,
    seed: int = 0,
) -> None:
    """One user: `times` GETs along `walk`; with `think`, a pause before each request (uniform
    between half and one and a half times `think` seconds: a person reading the page)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    deadline = time.monotonic() + DEADLINE_SECONDS
    pauses = random.Random(seed)
    for i in range(times):
        if time.monotonic() > deadline:
            break
        if think:
            time.sleep(pauses.uniform(0.5 * think, 1.5 * think))
        name, path = walk[i % len(walk)]
        start = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Cookie": cookie, "Host": "localhost"})
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        elapsed = time.perf_counter() - start
        if ok:
            out.latencies[name].append(elapsed)
        else:
            out.errors[name] += 1
    conn.close()


def _round(port: int, world: World, requests_per_user: int, think: float = 0.0) -> Round:
    result = Round()
    threads = [
        threading.Thread(
            target=_user,
            args=(port, cookie, _paths(world, k), requests_per_user, result, think, k),
        )
        for k, cookie in enumerate(world.cookies)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    return result


def _connections(database_url: str) -> int:
    import psycopg

    admin = database_url.replace(f"/{BENCH_DB}?", "/postgres?")
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [BENCH_DB]
        ).fetchone()
    return int(row[0]) if row else 0


def _wait_for(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/health/", headers={"Host": "localhost"})
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("gunicorn did not come up")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _table(label: str, result: Round) -> list[str]:
    lines = [
        f"**{label}**: {result.requests} requests in {result.seconds:.1f} s "
        f"({result.requests / result.seconds:.0f} req/s), "
        f"{sum(result.errors.values())} errors",
        "",
        "| endpoint | requests | p50 ms | p95 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    every: list[float] = []
    for name in sorted(set(result.latencies) | set(result.errors)):
        values = result.latencies.get(name, [])
        every += values
        lines.append(
            f"| {name} | {len(values)} | {1000 * _pct(values, 0.5):.0f} | "
            f"{1000 * _pct(values, 0.95):.0f} | {1000 * max(values, default=0):.0f} | "
            f"{result.errors.get(name, 0)} |"
        )
    lines.append(
        f"| **all** | {len(every)} | {1000 * _pct(every, 0.5):.0f} | "
        f"{1000 * _pct(every, 0.95):.0f} | {1000 * max(every, default=0):.0f} | "
        f"{sum(result.errors.values())} |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="requests per user per round")
    parser.add_argument("--idle", type=int, default=120, help="seconds between the rounds")
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds each user pauses before a request (0: a closed loop, the worst case)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    os.chdir(REPO)
    media = tempfile.mkdtemp(prefix="faceweb-bench-media-")
    url = _bench_database()
    _setup_django(url, media)
    world = _make_world(args.users, args.photos)
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "FACEWEB_MEDIA_ROOT": media,
        "FACEWEB_BIND": f"127.0.0.1:{port}",
        "FACEWEB_ACCESS_LOG": "",
    }
    log = open(Path(media) / "gunicorn.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:faceweb.gunicorn",
         "faceweb.wsgi:application"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        _wait_for(port)
        connections = {"before": _connections(url)}
        # One user alone first: each request's own cost, without queueing behind the others.
        alone = _round(port, replace(world, cookies=world.cookies[:1]), 4 * 9)
        first = _round(port, world, args.requests, args.think)
        connections["after round 1"] = _connections(url)
        time.sleep(args.idle)
        connections["after the idle"] = _connections(url)
        second = _round(port, world, args.requests, args.think)
        connections["after round 2"] = _connections(url)
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
        _drop_database(url)
        shutil.rmtree(media, ignore_errors=True)
    workers = env.get("FACEWEB_WEB_WORKERS") or "default (2 x cores + 1)"
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    think = f" --think {args.think:g}" if args.think else ""
    pause = (
        f", each pausing {0.5 * args.think:g}-{1.5 * args.think:g} s before every request "
        "(reading the page)"
        if args.think
        else ", no pause between requests (a closed loop: the worst case)"
    )
    text = [
        f"## Load: {args.users} users on gunicorn (`python -m bench.bench_load{think}`)",
        "",
        f"`python -m bench.bench_load --users {args.users} --requests {args.requests} "
        f"--idle {args.idle}{think}`: gunicorn as `./dev run` starts it ({workers} sync workers, "
        f"CONN_MAX_AGE {os.environ.get('FACEWEB_DB_CONN_MAX_AGE', '60')} s) on 127.0.0.1, "
        f"{args.users} signed-in users at once (one thread and keep-alive connection each, "
        f"{args.requests} GETs per user per round over 9 pages, API lists and a thumbnail"
        f"{pause}), "
        f"a gallery of {args.photos} photos with 2 named faces each. The client runs on the same "
        f"2-core machine. Load average at the end: {' '.join(load)}.",
        "",
        *_table("One user alone (36 requests, one at a time)", alone),
        "",
        *_table("Round 1", first),
        "",
        *_table(f"Round 2 (after {args.idle} s idle)", second),
        "",
        "PostgreSQL connections to the bench database: "
        + ", ".join(f"{k} {v}" for k, v in connections.items())
        + ".",
        "",
        "With no think time a closed loop of N users waits about N / throughput per request "
        f"({args.users} / {first.requests / first.seconds:.0f} req/s = "
        f"{args.users / (first.requests / first.seconds):.1f} s in round 1): the latencies under "
        "load are queueing for the CPU, which the machine's other processes share (the load "
        "average above); one user alone shows each request's own cost."
        if not args.think
        else f"With pauses the users ask for {first.requests / first.seconds:.0f} req/s in "
        "round 1; latencies above one user's own cost are queueing for the CPU.",
    ]
    print("\n".join(text))
    if not args.no_write:
        from bench._report import write_section

        write_section("load-think" if args.think else "load", "\n".join(text))


if __name__ == "__main__":
    main()
