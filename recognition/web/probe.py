"""Search by an uploaded face: analyse the probe, filter it, search, collect what the user may see.

Shared by the search page (recognition/web/probe_views.py), the API (recognition/api.py) and
bench/bench_face_search.py. Nothing here writes to the database. A probe image is kept in
memory; when the user must pick one of several faces, only the analysis (embeddings, boxes,
verdicts and small face crops) waits in a signed, short-lived file under MEDIA_ROOT/tmp that is
deleted when the search runs or when it expires.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core import signing
from django.db.models import F, Window
from django.db.models.functions import RowNumber

from gallery.access import AnyUser, visible_gallery_ids, visible_people
from gallery.models import Face, Person
from recognition.core.backends.dlib import DlibBackend
from recognition.core.images import decode_image, jpeg_bytes
from recognition.core.matching import Verdict, verdict
from recognition.core.pipeline import analyse_image, embed_detected
from recognition.core.trust import LEARNING_PHASE, match_thresholds
from recognition.index.search import library_limits, search_people
from recognition.runtime import assess_probe, backend

PROBE_TTL_SECONDS = 15 * 60
PROBE_SALT = "faceweb.face-search.probe"
OOD_MESSAGE = "This image is out-of-distribution, please choose another one."


@dataclass(frozen=True)
class ProbeFace:
    index: int
    left: int
    top: int
    width: int
    height: int
    embedding: np.ndarray  # (D,) float32
    rejected: bool
    score: float | None
    reasons: list[str]
    crop_jpeg: bytes  # the aligned face chip, for display only

    @property
    def area(self) -> int:
        return self.width * self.height

    def box_percent(self, image_width: int, image_height: int) -> dict[str, float]:
        return {
            "left": 100 * self.left / image_width,
            "top": 100 * self.top / image_height,
            "width": 100 * self.width / image_width,
            "height": 100 * self.height / image_height,
        }


@dataclass
class ProbeAnalysis:
    width: int
    height: int
    embedder_version: str
    faces: list[ProbeFace]
    times_ms: dict[str, float] = field(default_factory=dict)

    @property
    def largest(self) -> int:
        """Index of the face preselected for the user: the largest one."""
        return max(range(len(self.faces)), key=lambda i: self.faces[i].area)


@dataclass
class PersonHit:
    person: Person
    distance: float
    verdict: Verdict
    template_face_id: int
    photos: list[Face]  # one face per photo, newest first, only in galleries the user can see
    photo_count: int


@dataclass
class SearchOutcome:
    face: ProbeFace
    rejected: bool
    hits: list[PersonHit]
    same: float
    possible: float
    times_ms: dict[str, float] = field(default_factory=dict)
    plan: str = ""  # the staged search's plan ("hnsw" or "exact"), for benchmarks
    learning: str = ""  # the model has no calibrated thresholds yet (recognition/core/trust.py)

    @property
    def answer(self) -> Verdict:
        """The verdict on the best candidate: unknown when nobody is near."""
        return self.hits[0].verdict if self.hits else Verdict.UNKNOWN

    @property
    def staff_lines(self) -> list[str]:
        """The numbers behind the answer, for staff (the page shows them in a disclosure)."""
        lines = [f"{h.person.name}: distance {h.distance:.3f}" for h in self.hits]
        lines.append(f"Same person at or below {self.same:.2f}, possible up to {self.possible:.2f}")
        if self.face.score is not None:
            lines.append(f"Filter score {self.face.score:.2f}")
        return lines


def analyse_probe(data: bytes) -> ProbeAnalysis:
    """Decode, detect, align, embed and filter every face of an uploaded image (in memory).

    Raises recognition.core.images.BadImage for a file that is not a usable image.
    """
    import torch

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    decoded = decode_image(data, max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS)
    t1 = time.perf_counter()
    times["decode"] = (t1 - t0) * 1e3
    embedder = backend()
    # One probe chip gains nothing from intra-op threads, and on a busy box torch's threads wait
    # on each other (0.1-1.5 s instead of 15-40 ms per chip measured on the 2-core dev box).
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    # A probe is a photo of the person being looked for, so the face is rarely small: with HOG,
    # a first pass without upsampling finds it in a quarter of the time (HOG's window is 80 px
    # there), and only a photo where it finds nothing pays for the gallery's upsampled pass.
    if isinstance(embedder, DlibBackend):
        config = embedder.detector
        first = replace(config, upsample=0) if config.model == "hog" else config
        analysed, stage = analyse_image(decoded.rgb, first, embedder.embedder)
        if not analysed and first != config:
            analysed, again = analyse_image(decoded.rgb, config, embedder.embedder)
            stage.detect += again.detect
            stage.align += again.align
            stage.embed += again.embed
        times.update(detect=stage.detect, align=stage.align, embed=stage.embed)
    else:
        detected = embedder.detect_and_align(decoded.rgb)
        found, embed_ms = embed_detected([detected], embedder)
        analysed = found[0]
        times.update(detect=detected.detect_ms, align=detected.align_ms, embed=embed_ms)
    t2 = time.perf_counter()
    faces = []
    for i, item in enumerate(analysed):
        det = item.detection
        verdict_ = assess_probe(item.chip, det, item.embedding, embedder.version)
        faces.append(
            ProbeFace(
                index=i,
                left=det.left,
                top=det.top,
                width=det.width,
                height=det.height,
                embedding=np.asarray(item.embedding, dtype=np.float32),
                rejected=bool(verdict_.rejected),
                score=None if verdict_.score is None else float(verdict_.score),
                reasons=list(verdict_.reasons),
                crop_jpeg=jpeg_bytes(item.chip, quality=85),
            )
        )
    times["ood"] = (time.perf_counter() - t2) * 1e3
    return ProbeAnalysis(
        width=decoded.width,
        height=decoded.height,
        embedder_version=embedder.version,
        faces=faces,
        times_ms=times,
    )


def preview_jpeg(data: bytes, max_side: int = 900) -> bytes:
    """A small copy of the probe to draw the face boxes on (kept in the response only)."""
    decoded = decode_image(data, max_pixels=settings.FACEWEB_MAX_IMAGE_PIXELS)
    return jpeg_bytes(decoded.rgb, max_side=max_side, quality=80)


def candidate_photos(
    person_ids: list[int], gallery_ids: list[int], per_person: int
) -> tuple[dict[int, list[Face]], dict[int, int]]:
    """Up to `per_person` faces (one per photo, newest photos first) of each person, and how many
    photos each has, in the given galleries only. Two queries whatever the number of people."""
    if not person_ids or not gallery_ids:
        return {}, {}
    scoped = Face.objects.filter(person_id__in=person_ids, photo__gallery_id__in=gallery_ids)
    ranked = (
        scoped.select_related("photo")
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("person_id")],
                order_by=[F("photo__created_at").desc(), F("photo_id").desc()],
            )
        )
        .filter(rank__lte=per_person)
        .order_by("person_id", "rank")
    )
    photos: dict[int, list[Face]] = defaultdict(list)
    for face in ranked:
        photos[face.person_id].append(face)
    counts: dict[int, int] = defaultdict(int)
    for person_id in scoped.values_list("person_id", flat=True):
        counts[person_id] += 1
    return dict(photos), dict(counts)


def search_face(
    user: AnyUser,
    face: ProbeFace,
    embedder_version: str,
    *,
    top_n: int = 5,
    photos_per_person: int = 8,
) -> SearchOutcome:
    """The people nearest to `face` in the galleries `user` can see, with their photos there.

    A face the filter rejected is not searched: the outcome says so with its reasons.
    """

    gallery_ids = visible_gallery_ids(user)
    # The verdicts use the matcher's limits for the people this user can see. An uncalibrated
    # version (a learning phase) still answers, nearest first, but calls no one the same person:
    # every hit is at most "possible".
    calibrated = match_thresholds(embedder_version) is not None
    library = library_limits(gallery_ids, embedder_version) if calibrated else None
    same = library.ceiling.same if library else 0.0
    possible = library.ceiling.possible if library else 4.0  # beyond any distance of these
    outcome = SearchOutcome(
        face=face,
        rejected=face.rejected,
        hits=[],
        same=same,
        possible=possible,
        learning="" if calibrated else LEARNING_PHASE,
    )
    if face.rejected:
        return outcome
    t0 = time.perf_counter()
    result = search_people(
        face.embedding, gallery_ids=gallery_ids, embedder_version=embedder_version, top_n=top_n
    )
    t1 = time.perf_counter()
    if library is not None:
        limits = library.for_face([c.distance for c in result.candidates])
        same, possible = limits.same, limits.possible
        outcome.same, outcome.possible = same, possible
    ids = [c.person_id for c in result.candidates]
    # One definition of who may see whom (gallery/access.py), also for search results.
    people = visible_people(user).in_bulk(ids)
    photos, counts = candidate_photos(ids, gallery_ids, photos_per_person)
    outcome.times_ms = {"search": (t1 - t0) * 1e3, "photos": (time.perf_counter() - t1) * 1e3}
    outcome.plan = result.stats.plan
    for cand in result.candidates:
        person = people.get(cand.person_id)
        if person is None:
            continue
        outcome.hits.append(
            PersonHit(
                person=person,
                distance=cand.distance,
                verdict=verdict(cand.distance, same, possible),
                template_face_id=cand.face_id,
                photos=photos.get(cand.person_id, []),
                photo_count=counts.get(cand.person_id, 0),
            )
        )
    return outcome


# The short-lived probe file -----------------------------------------------------------------


def _tmp_dir() -> Path:
    path = Path(settings.MEDIA_ROOT) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def purge_expired_probes(now: float | None = None) -> int:
    """Delete probe files older than the time-to-live; returns how many went."""
    now = time.time() if now is None else now
    gone = 0
    for path in _tmp_dir().glob("probe-*.npz"):
        try:
            if now - path.stat().st_mtime > PROBE_TTL_SECONDS:
                path.unlink()
                gone += 1
        except FileNotFoundError:
            continue
    return gone


def save_probe(user: AnyUser, analysis: ProbeAnalysis) -> str:
    """Keep an analysis while the user picks a face; returns a signed token bound to the user."""
    purge_expired_probes()
    key = uuid.uuid4().hex
    meta = {
        "width": analysis.width,
        "height": analysis.height,
        "embedder_version": analysis.embedder_version,
        "faces": [
            {
                "left": f.left,
                "top": f.top,
                "width": f.width,
                "height": f.height,
                "rejected": f.rejected,
                "score": f.score,
                "reasons": f.reasons,
            }
            for f in analysis.faces
        ],
    }
    arrays: dict[str, np.ndarray] = {
        "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        "embeddings": np.stack([f.embedding for f in analysis.faces]),
    }
    for f in analysis.faces:
        arrays[f"crop{f.index}"] = np.frombuffer(f.crop_jpeg, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (_tmp_dir() / f"probe-{key}.npz").write_bytes(buffer.getvalue())
    return signing.dumps({"k": key, "u": user.pk}, salt=PROBE_SALT)


class ProbeExpired(LookupError):
    """The signed token is invalid, belongs to someone else, or its file is gone."""


def _probe_path(user: AnyUser, token: str) -> Path:
    try:
        payload = signing.loads(token, salt=PROBE_SALT, max_age=PROBE_TTL_SECONDS)
    except signing.BadSignature as exc:
        raise ProbeExpired("This search has expired; please upload the photo again.") from exc
    if payload.get("u") != user.pk or not str(payload.get("k", "")).isalnum():
        raise ProbeExpired("This search has expired; please upload the photo again.")
    return _tmp_dir() / f"probe-{payload['k']}.npz"


def load_probe(user: AnyUser, token: str, *, delete: bool) -> ProbeAnalysis:
    """The analysis behind a token; with `delete`, the file is removed (used once)."""
    path = _probe_path(user, token)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ProbeExpired("This search has expired; please upload the photo again.") from exc
    if delete:
        path.unlink(missing_ok=True)
    with np.load(io.BytesIO(raw)) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        embeddings = data["embeddings"]
        crops = {k: data[k].tobytes() for k in data.files if k.startswith("crop")}
    faces = [
        ProbeFace(
            index=i,
            left=row["left"],
            top=row["top"],
            width=row["width"],
            height=row["height"],
            embedding=embeddings[i].astype(np.float32),
            rejected=row["rejected"],
            score=row["score"],
            reasons=row["reasons"],
            crop_jpeg=crops.get(f"crop{i}", b""),
        )
        for i, row in enumerate(meta["faces"])
    ]
    return ProbeAnalysis(
        width=meta["width"],
        height=meta["height"],
        embedder_version=meta["embedder_version"],
        faces=faces,
    )
