"""Celery tasks: thin, idempotent wrappers that take ids and call actions."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError

from gallery.actions.photos import do_claim_photo, do_fail_photo, do_release_photo
from recognition.actions.identity import do_rematch_near_faces
from recognition.actions.processing import do_process_photo
from recognition.index.bases import do_finish_refit, do_refit_batch, do_start_refit
from recognition.models import ProjectionBasis

logger = logging.getLogger(__name__)


@shared_task(
    bind=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
)
def process_photo(self: object, photo_id: int) -> str:
    """Claim a queued photo and process it; a second run finds nothing to claim."""
    photo = do_claim_photo(photo_id)
    if photo is None:
        return "skipped"
    try:
        do_process_photo(photo)
    except SoftTimeLimitExceeded:
        do_fail_photo(photo, "processing took too long and was stopped")
        return "failed"
    except OperationalError:
        # Transient: put the photo back so the retry can claim it again.
        do_release_photo(photo_id)
        raise
    except Exception as exc:
        logger.exception("processing photo %s failed", photo_id)
        do_fail_photo(photo, f"internal error while processing: {type(exc).__name__}: {exc}")
        return "failed"
    return "done"


@shared_task(autoretry_for=(OperationalError,), retry_backoff=True, max_retries=5, acks_late=True)
def rematch_near_faces(face_ids: list[int]) -> int:
    """After faces were confirmed: re-match the unconfirmed faces of the library near them.

    Matching is a recomputation from the current tags, so running it twice is harmless.
    """

    return do_rematch_near_faces(face_ids)


@shared_task(
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
    acks_late=True,
    soft_time_limit=600,
    time_limit=660,
)
def refit_basis(embedder_version: str, target_id: int | None = None, batch_size: int = 5000) -> str:
    """Fit a new PCA basis and move the templates to it in the background (see templates.py).

    Works for about a minute, then re-enqueues itself with the pending basis id, so a refit of
    millions of templates never meets the time limit. Running it twice continues the refit.
    """
    import time

    if target_id is None:
        target = do_start_refit(embedder_version)
    else:
        target = ProjectionBasis.objects.filter(pk=target_id).first()
        if target is None or target.is_active:
            return "gone" if target is None else "done"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if do_refit_batch(embedder_version, target, batch_size) < batch_size:
            do_finish_refit(embedder_version, target)
            return "done"
    refit_basis.delay(embedder_version, target.pk, batch_size)
    return "continued"
