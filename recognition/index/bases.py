"""PCA bases per embedder version, and their refit while searches keep running.

Templates (recognition/index/enrolment.py) are stored rotated by the active basis of their
embedder version; the search (recognition/index/search.py) rotates its query the same way.

Refit protocol (the search stays correct throughout):
1. `do_start_refit` fits a new basis on trusted embeddings and stores it inactive, with a version
   above the active one: a "pending" basis.
2. `do_refit_batch` moves templates to the pending basis in batches (re-rotated from
   `Face.embedding`, the source of truth). Each template row names the basis it is rotated by.
3. `do_finish_refit` takes the exclusive advisory lock of the embedder version, moves what is left
   and flips `is_active` in the same transaction.
Meanwhile the search covers the active basis and every pending one (`search_bases`), querying the
pending one last, so a row moved while a search runs is seen at least once. Template writes from
`sync_face_templates` take the same advisory lock in shared mode, so no row can be written with the
old basis after the final move has committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.db.models import Max

from gallery.models import Face, trusted_q
from recognition.core.projection import Basis, basis_from_bytes, basis_to_bytes, fit_basis
from recognition.core.versions import embedding_dim
from recognition.models import ProjectionBasis, Template

logger = logging.getLogger(__name__)

# Fitting on more samples than this gains nothing measurable for a 128 x 128 covariance.
FIT_MAX_SAMPLES = 200_000

# Bases never change once written (only `is_active` moves), so they are cached by primary key.
_BASES: dict[int, Basis] = {}


def lock_version(embedder_version: str, *, exclusive: bool) -> None:
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {fn}(hashtext(%s))", [f"faceweb-basis:{embedder_version}"])


def basis_of(row: ProjectionBasis) -> Basis:
    cached = _BASES.get(row.pk)
    if cached is None:
        cached = basis_from_bytes(row.mean, row.rotation, row.eigenvalues, row.n_samples, row.dim)
        _BASES[row.pk] = cached
    return cached


def _load_basis(pk: int) -> Basis:
    cached = _BASES.get(pk)
    if cached is not None:
        return cached
    return basis_of(ProjectionBasis.objects.get(pk=pk))


def trusted_embeddings(embedder_version: str, limit: int = FIT_MAX_SAMPLES) -> np.ndarray:
    """Embeddings of trusted faces of one version (any assignment: the basis wants coverage)."""
    qs = Face.objects.filter(
        trusted_q(), embedder_version=embedder_version, embedding__isnull=False
    )
    total = qs.count()
    if total > limit:
        qs = qs.order_by("?")
    values = list(qs.values_list("embedding", flat=True)[:limit])
    if not values:
        return np.zeros((0, embedding_dim(embedder_version)), dtype=np.float32)
    return np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in values]))


def _save_basis(embedder_version: str, basis: Basis, *, active: bool) -> ProjectionBasis:
    latest = ProjectionBasis.objects.filter(embedder_version=embedder_version).aggregate(
        v=Max("version")
    )["v"]
    mean, rotation = basis_to_bytes(basis)
    row = ProjectionBasis.objects.create(
        embedder_version=embedder_version,
        version=(latest or 0) + 1,
        dim=basis.dim,
        mean=mean,
        rotation=rotation,
        eigenvalues=[float(v) for v in basis.eigenvalues],
        n_samples=basis.n_samples,
        is_active=active,
    )
    _BASES[row.pk] = basis
    return row


def active_basis(embedder_version: str) -> tuple[int, Basis]:
    """The active basis of a version, creating the first one if there is none yet.

    The first basis is fitted on whatever trusted embeddings exist (identity if none), so a
    search always has a basis to rotate its query by.
    """
    row = ProjectionBasis.objects.filter(embedder_version=embedder_version, is_active=True).first()
    if row is not None:
        return row.pk, basis_of(row)
    basis = fit_basis(trusted_embeddings(embedder_version), dim=embedding_dim(embedder_version))
    try:
        with transaction.atomic():
            row = _save_basis(embedder_version, basis, active=True)
    except IntegrityError:
        # Another process created it at the same moment.
        row = ProjectionBasis.objects.get(embedder_version=embedder_version, is_active=True)
    logger.info("created basis %s from %d trusted embeddings", row, basis.n_samples)
    return row.pk, basis_of(row)


def basis_rows(embedder_version: str) -> tuple[tuple[int, int, bool], ...]:
    """(pk, version, is_active) of every basis of a version; also the signature a search
    compares before and after its queries to notice a refit that started or finished meanwhile."""
    return tuple(
        ProjectionBasis.objects.filter(embedder_version=embedder_version)
        .order_by("version")
        .values_list("pk", "version", "is_active")
    )


def search_bases(
    embedder_version: str, rows: tuple[tuple[int, int, bool], ...] | None = None
) -> list[tuple[int, Basis]]:
    """The bases a search must cover: the active one, then pending refits (queried last).

    Read-only: with no basis yet there are no templates either (the first template creates the
    first basis, `active_basis`), so a search of an empty library covers nothing and writes
    nothing.
    """
    rows = basis_rows(embedder_version) if rows is None else rows
    active = [(pk, version) for pk, version, is_active in rows if is_active]
    if not active:
        return []
    active_pk, active_version = active[0]
    pending = [pk for pk, version, is_active in rows if not is_active and version > active_version]
    return [(pk, _load_basis(pk)) for pk in [active_pk, *pending]]


# ---------------------------------------------------------------------------------------------
# Refit


@dataclass(frozen=True)
class RefitProgress:
    target_id: int
    moved: int
    remaining: int
    finished: bool


def pending_basis(embedder_version: str) -> ProjectionBasis | None:
    active = ProjectionBasis.objects.filter(embedder_version=embedder_version, is_active=True)
    floor = active.values_list("version", flat=True).first() or 0
    return (
        ProjectionBasis.objects.filter(
            embedder_version=embedder_version, is_active=False, version__gt=floor
        )
        .order_by("-version")
        .first()
    )


def do_start_refit(embedder_version: str, *, resume: bool = True) -> ProjectionBasis:
    """Fit a basis on the trusted embeddings and store it as pending (inactive).

    With `resume`, an unfinished refit's pending basis is reused, so running the refit twice
    continues the first run instead of starting over.
    """
    active_basis(embedder_version)
    if resume:
        existing = pending_basis(embedder_version)
        if existing is not None:
            return existing
    basis = fit_basis(trusted_embeddings(embedder_version), dim=embedding_dim(embedder_version))
    with transaction.atomic():
        lock_version(embedder_version, exclusive=True)
        return _save_basis(embedder_version, basis, active=False)


def _move_batch(embedder_version: str, target: ProjectionBasis, limit: int | None) -> int:
    basis = basis_of(target)
    qs = (
        Template.objects.filter(embedder_version=embedder_version, face__embedding__isnull=False)
        .exclude(basis_id=target.pk)
        .order_by("pk")
        .values_list("pk", "face__embedding")
    )
    rows = list(qs[:limit] if limit else qs)
    if not rows:
        return 0
    vectors = basis.rotate(np.stack([np.asarray(e, dtype=np.float32) for _, e in rows]))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Template._meta.db_table} AS t SET basis_id = %s, vector = v.vec::vector, "
            "updated_at = now() FROM unnest(%s::bigint[], %s::text[]) AS v(id, vec) "
            "WHERE t.id = v.id",
            [
                target.pk,
                [pk for pk, _ in rows],
                ["[" + ",".join(f"{x:.8g}" for x in vec) + "]" for vec in vectors],
            ],
        )
    return len(rows)


def do_refit_batch(embedder_version: str, target: ProjectionBasis, batch_size: int) -> int:
    """Move up to batch_size templates to the pending basis; returns how many moved."""
    with transaction.atomic():
        return _move_batch(embedder_version, target, batch_size)


def do_finish_refit(embedder_version: str, target: ProjectionBasis) -> int:
    """Move the rest and make `target` the active basis, atomically. Returns rows moved here."""
    with transaction.atomic():
        lock_version(embedder_version, exclusive=True)
        moved = _move_batch(embedder_version, target, None)
        ProjectionBasis.objects.filter(embedder_version=embedder_version, is_active=True).update(
            is_active=False
        )
        ProjectionBasis.objects.filter(pk=target.pk).update(is_active=True)
    return moved


def do_refit_basis(
    embedder_version: str, *, batch_size: int = 5000, resume: bool = True
) -> RefitProgress:
    """The whole refit: fit, re-rotate in batches, switch. Safe to run twice."""
    target = do_start_refit(embedder_version, resume=resume)
    moved = 0
    while True:
        remaining = (
            Template.objects.filter(embedder_version=embedder_version)
            .exclude(basis_id=target.pk)
            .count()
        )
        if remaining <= batch_size:
            break
        moved += do_refit_batch(embedder_version, target, batch_size)
    moved += do_finish_refit(embedder_version, target)
    logger.info(
        "refit %s: basis v%s active, %d templates moved", embedder_version, target.version, moved
    )
    return RefitProgress(target_id=target.pk, moved=moved, remaining=0, finished=True)
