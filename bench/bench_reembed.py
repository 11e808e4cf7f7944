"""What re-embedding a library costs: seconds per 1,000 photos on this machine, per kind of switch.

Run: .venv/bin/python -m bench.bench_reembed [--rounds 2] [--lfw 200] [--switch-photos 1000]
Prints the numbers and writes the `reembed` section of BENCHMARKS.md.

The job's work per photo (recognition/actions/models.py, `stage_photo`) is measured with the
app's own steps, without the database:
- same detector (dlib-resnet-v1 <-> dlib-resnet-flip-v1): decode the original, align every face
  from its stored landmarks, embed (the flip version runs the network on each chip and on its
  mirror image), and the filter's verdict;
- another detector (an InsightFace pack): decode, detect and align again, embed, verdict. No pack
  is reachable here, so this row runs the default CenterFace + dlib pipeline as the stand-in: it
  has the same steps; SCRFD-10G and ArcFace-R50 are heavier networks than CenterFace and dlib's
  ResNet, so a real pack costs more per photo than this row says.
The photos are the gallery photos of ../shared/faces/photos (26 photos, 0.1-2 megapixels) and
`--lfw` LFW images (250x250, one face each).

The switch at the end (`do_finish_reembed`: the check for photos changed meanwhile, then one
transaction that writes the new vectors onto the same face rows, fits the target's PCA basis,
rebuilds the templates and re-matches the library) is measured on a library in a throw-away
database (faceweb_bench_reembed, never the development one): `--switch-photos` photos with one
face each, real LFW faces (their dlib-resnet-v1 vectors from the evaluation cache under
var/cache, which also holds each face's mirror-image vector, so the staged flip vectors are
the real ones), every identity's first face confirmed (a template), the others open; the job is
staged to dlib-resnet-flip-v1 from those vectors (the staging's cost is the first table).
While the staging rounds and the switch run, another thread (its own database connection)
searches the library as the search page does, one face after another: how long a search takes
while the job works, and whether every search answered, with which version.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import django
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
django.setup()

from faceweb.db import ensure_embedded_server  # noqa: E402

ensure_embedded_server()

from bench._report import write_section  # noqa: E402
from recognition.core import ood  # noqa: E402
from recognition.core.detection import DetectedFace, DetectorConfig, align_faces  # noqa: E402
from recognition.core.embedding import get_embedder  # noqa: E402
from recognition.core.images import DEFAULT_MAX_PIXELS, decode_image  # noqa: E402
from recognition.core.pipeline import detect_and_align  # noqa: E402
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION  # noqa: E402

FACES = REPO.parent / "shared" / "faces"
BENCH_DB = "faceweb_bench_reembed"


def _photos(lfw: int) -> list[pathlib.Path]:
    gallery = sorted(p for p in (FACES / "photos").rglob("*") if p.is_file())
    people = sorted((FACES / "lfw").iterdir())[:lfw]
    return gallery + [sorted(d.iterdir())[0] for d in people]


def _rgb(path: pathlib.Path) -> np.ndarray:
    return decode_image(path, max_pixels=DEFAULT_MAX_PIXELS).rgb


def _assess(chips: np.ndarray, faces: list[DetectedFace], vectors: np.ndarray) -> None:
    if len(faces):
        ood.assess(
            chips,
            [min(f.width, f.height) for f in faces],
            [f.landmarks for f in faces],
            [f.score for f in faces],
            vectors,
            None,
            ood.Rules(),
        )


def _lfw_cache() -> dict[str, np.ndarray]:
    cached = sorted((REPO / "var" / "cache").glob("lfw-dlib-resnet-v1-*.npz"), key=os.path.getmtime)
    if not cached:
        raise SystemExit(
            "no LFW embedding cache: run manage.py calibrate ../shared/faces/lfw first"
        )
    with np.load(cached[-1], allow_pickle=False) as data:
        return {k: data[k] for k in ("labels", "embeddings", "flipped", "found")}


def build_library(n: int) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """`n` photos of one face each (real LFW vectors), a job to the flip version with every
    photo staged; returns (gallery, job, plain vectors, flip vectors)."""
    from django.contrib.auth.models import User

    from gallery.models import Face, Gallery, Person, Photo
    from recognition.actions.models import FACE_FIELDS, _plain, do_start_reembed
    from recognition.index.enrolment import sync_face_templates
    from recognition.models import StagedPhoto

    lfw = _lfw_cache()
    rows = np.flatnonzero(lfw["found"])[:n]
    plain = lfw["embeddings"][rows].astype(np.float32)
    flip = ((lfw["embeddings"][rows] + lfw["flipped"][rows]) / 2).astype(np.float32)
    labels = lfw["labels"][rows]
    owner = User.objects.create_user("owner", password="x" * 20)
    gallery = Gallery.objects.create(owner=owner, name="Library")
    people = {int(k): Person(owner=owner, name=f"Person {k}") for k in np.unique(labels)}
    Person.objects.bulk_create(list(people.values()))
    photos = [
        Photo(
            gallery=gallery,
            original=f"originals/{gallery.pk}/{i:06d}.jpg",
            original_name=f"{i:06d}.jpg",
            sha256=f"{i:064x}",
            status=Photo.Status.DONE,
            width=250,
            height=250,
        )
        for i in range(len(rows))
    ]
    Photo.objects.bulk_create(photos)
    seen: set[int] = set()
    faces = []
    for photo, label, vec in zip(photos, labels, plain, strict=True):
        first = int(label) not in seen
        seen.add(int(label))
        faces.append(
            Face(
                photo=photo,
                left=60,
                top=60,
                width=130,
                height=130,
                embedding=vec.tolist(),
                embedder_version=DLIB_RESNET_VERSION,
                ood_status=Face.Quality.ACCEPTED,
                person=people[int(label)] if first else None,
                assignment=Face.Assignment.CONFIRMED if first else Face.Assignment.NONE,
            )
        )
    Face.objects.bulk_create(faces)
    sync_face_templates([f.pk for f in faces if f.person_id is not None])
    job = do_start_reembed(DLIB_RESNET_FLIP_VERSION, enqueue=False)
    staged = []
    for face, vec in zip(Face.objects.order_by("photo_id"), flip, strict=True):
        entry = {k: _plain(getattr(face, k)) for k in FACE_FIELDS}
        entry |= {"face": face.pk, "embedding": [float(x) for x in vec]}
        entry["embedder_version"] = DLIB_RESNET_FLIP_VERSION
        staged.append(
            StagedPhoto(job=job, photo_id=face.photo_id, face_ids=[face.pk], faces=[entry])
        )
    StagedPhoto.objects.bulk_create(staged)
    return gallery, job, plain, flip


class Searcher(threading.Thread):
    """Searches the library one face after another, as the search page does, until stopped;
    each search is recorded with the phase the main thread was in."""

    def __init__(self, gallery_id: int, plain: np.ndarray, flip: np.ndarray) -> None:
        super().__init__(daemon=True)
        self.gallery_id, self.plain, self.flip = gallery_id, plain, flip
        self.phase = "idle"
        self.stop = threading.Event()
        self.log: list[tuple[str, float, bool, str]] = []  # phase, ms, answered, version
        self.errors: list[str] = []

    def run(self) -> None:
        from django.db import connection

        from recognition.index.search import search_people
        from recognition.runtime import active_version

        k = 0
        try:
            while not self.stop.is_set():
                phase = self.phase
                t0 = time.perf_counter()
                try:
                    version = active_version()
                    vectors = self.flip if version == DLIB_RESNET_FLIP_VERSION else self.plain
                    result = search_people(
                        vectors[k % len(vectors)],
                        gallery_ids=[self.gallery_id],
                        embedder_version=version,
                        top_n=4,
                    )
                    answered = bool(result.candidates)
                except Exception as exc:  # a failed search is what we count
                    self.errors.append(repr(exc))
                    answered, version = False, "error"
                ms = (time.perf_counter() - t0) * 1000
                self.log.append((phase, ms, answered, version))
                k += 7
                time.sleep(0.05)  # one user searching, not a flood
        finally:
            connection.close()

    def summary(self, phase: str) -> str:
        rows = [r for r in self.log if r[0] == phase]
        if not rows:
            return f"| {phase} | 0 | | | | |"
        ms = sorted(r[1] for r in rows)
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        versions = ", ".join(sorted({r[3] for r in rows}))
        answered = sum(r[2] for r in rows)
        return (
            f"| {phase} | {len(rows)} | {answered} | {statistics.median(ms):.0f} | {p95:.0f} "
            f"| {ms[-1]:.0f} | {versions} |"
        )


def with_database(fn: Callable[[], list[str]]) -> list[str]:
    from django.db import connection

    connection.settings_dict.setdefault("TEST", {})["NAME"] = BENCH_DB
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        return fn()
    finally:
        connection.creation.destroy_test_db(BENCH_DB, verbosity=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lfw", type=int, default=200)
    parser.add_argument("--switch-photos", type=int, default=1000)
    args = parser.parse_args()
    section = with_database(lambda: run(args))
    text = "\n".join(section)
    print(text)
    write_section("reembed", text)


def run(args: argparse.Namespace) -> list[str]:
    from recognition.actions.models import do_finish_reembed
    from recognition.models import Template
    from recognition.runtime import active_version

    t0 = time.perf_counter()
    gallery, job, plain_vectors, flip_vectors = build_library(args.switch_photos)
    build_s = time.perf_counter() - t0
    config = DetectorConfig()
    photos = _photos(args.lfw)
    # The library as processing left it: the stored boxes and landmarks of every photo.
    stored = {p: detect_and_align(_rgb(p), config).faces for p in photos}
    n_faces = sum(len(f) for f in stored.values())
    plain = get_embedder(DLIB_RESNET_VERSION)
    flip = get_embedder(DLIB_RESNET_FLIP_VERSION)
    searcher = Searcher(gallery.pk, plain_vectors, flip_vectors)
    searcher.start()
    time.sleep(5)  # the "idle" phase: nothing else of this process runs

    def same_detector(embedder: object) -> float:
        t0 = time.perf_counter()
        for p in photos:
            rgb = _rgb(p)
            faces = stored[p]
            chips = align_faces(rgb, faces)
            vectors = embedder.embed(chips) if len(faces) else np.zeros((0, 128))  # type: ignore[attr-defined]
            _assess(chips, faces, vectors)
        return time.perf_counter() - t0

    def new_detector() -> float:
        t0 = time.perf_counter()
        for p in photos:
            detected = detect_and_align(_rgb(p), config)
            vectors = plain.embed(detected.chips) if detected.faces else np.zeros((0, 128))
            _assess(detected.chips, detected.faces, vectors)
        return time.perf_counter() - t0

    rows = {
        "to dlib-resnet-flip-v1 (same detector, 2 passes per face)": lambda: same_detector(flip),
        "to dlib-resnet-v1 (same detector)": lambda: same_detector(plain),
        "to another detector (stand-in: CenterFace + dlib again)": new_detector,
    }
    times: dict[str, list[float]] = {k: [] for k in rows}
    searcher.phase = "staging"
    for _ in range(args.rounds):
        for name, measure in rows.items():
            times[name].append(measure())
    load = os.getloadavg()
    searcher.phase = "switch"
    t0 = time.perf_counter()
    switched = do_finish_reembed(job)
    switch_s = time.perf_counter() - t0
    switch_load = os.getloadavg()
    searcher.phase = "after"
    time.sleep(3)
    searcher.stop.set()
    searcher.join()
    assert switched and active_version() == DLIB_RESNET_FLIP_VERSION
    templates = Template.objects.filter(embedder_version=DLIB_RESNET_FLIP_VERSION).count()
    lines = [
        f"Re-embedding cost on this machine ({os.cpu_count()} cores, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; torch threads: all cores), "
        f"{len(photos)} photos ({len(photos) - args.lfw} gallery photos + {args.lfw} LFW images) "
        f"with {n_faces} faces, median of {args.rounds} rounds. `python -m bench.bench_reembed`.",
        "",
        "| switch | ms per photo | seconds per 1,000 photos |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        per_photo = statistics.median(values) / len(photos) * 1000
        lines.append(f"| {name} | {per_photo:.0f} | {per_photo:.0f} |")
    n = args.switch_photos
    lines += [
        "",
        "Staging (decode, align, embed, filter) only; the switch at the end is the second table.",
        "",
        f"**The switch** (`do_finish_reembed`: check for photos changed meanwhile, then the one "
        f"transaction: new vectors onto the same face rows, the target's PCA basis fitted, "
        f"templates rebuilt, every open face matched again) on a library of {n:,} photos "
        f"(one real LFW face each, {templates:,} people with a confirmed face and a template, "
        f"the rest open; staged to dlib-resnet-flip-v1 from the faces' real mirror-image "
        f"vectors; library built in {build_s:.0f} s), load average {switch_load[0]:.1f} / "
        f"{switch_load[1]:.1f} / {switch_load[2]:.1f} at its end:",
        "",
        "| photos | switch (s) | seconds per 1,000 photos |",
        "|---|---|---|",
        f"| {n:,} | {switch_s:.1f} | {switch_s / n * 1000:.1f} |",
        "",
        "**Searches while the job works**: another thread (its own database connection) searched "
        "the library as the search page does, one search every 50 ms plus its own time "
        "(phase: idle before the job; staging = while the staging rounds above ran; switch = "
        "during the switch; after = the 3 s after it committed).",
        "",
        "| phase | searches | answered | p50 ms | p95 ms | max ms | version searched |",
        "|---|---|---|---|---|---|---|",
        *(searcher.summary(p) for p in ("idle", "staging", "switch", "after")),
        "",
        f"Failed searches: {len(searcher.errors)}"
        + (f" (first: {searcher.errors[0]})" if searcher.errors else "")
        + ". Searches never wait for the switch: it holds the active-model lock, which only "
        "storing new faces takes; a search during the transaction reads the library as it was "
        "(old version) until the commit, the next one the new version.",
    ]
    return lines


if __name__ == "__main__":
    main()
