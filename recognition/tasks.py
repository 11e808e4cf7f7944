"""Celery tasks: thin, idempotent wrappers that take ids and call actions.

A database outage must not cost a photo: a task that loses the database waits for it (with
backoff, inside its time limit) and starts over; if it does not come back in time the message's
redelivery or the periodic `heal_photos` (Celery beat) brings the photo back. Bad input is final.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError, close_old_connections, connection

from faceweb.queue import PROCESS_PHOTO, enqueue
from gallery.actions.photos import (
    do_claim_photo,
    do_claim_queued_photos,
    do_fail_photo,
    do_heal_photos,
    do_release_photo,
)
from gallery.models import Photo
from recognition.actions.identity import do_rematch_near_faces
from recognition.actions.models import do_fail_reembed, do_finish_reembed, do_reembed_batch
from recognition.actions.processing import do_process_photos
from recognition.index.bases import do_finish_refit, do_refit_batch, do_start_refit
from recognition.models import ProjectionBasis, ReembedJob

logger = logging.getLogger(__name__)

# Broker-level retries for the small tasks: backoff up to 5 minutes, 12 tries (about 30 minutes).
RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": 5,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 12,
    "acks_late": True,
}


def wait_for_database(budget_seconds: float) -> bool:
    """Wait (1, 2, 4 ... 15 s apart) until the database answers; False when the budget ran out."""
    deadline = time.monotonic() + budget_seconds
    delay = 1.0
    while True:
        close_old_connections()
        connection.close()
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except OperationalError:
            if time.monotonic() + delay > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 15.0)


def _process(token: str, photo_id: int) -> str:
    """Claim the photo and up to FACEWEB_WORKER_BATCH - 1 more queued ones (their own messages
    then find nothing to claim) and process them as one batch, this message's photo first.

    Bad input and internal errors end one photo as FAILED and the batch goes on; the time limit
    fails the photo being processed and puts the rest back in the queue. A database error is
    raised with the unfinished photos still claimed by this task: the retry (same token) takes
    them back.
    """
    photo = do_claim_photo(photo_id, token)
    if photo is None:
        return "skipped"
    more = do_claim_queued_photos(settings.FACEWEB_WORKER_BATCH - 1, token, besides=photo_id)
    batch = [photo, *more]
    unfinished = {p.pk: p for p in batch}
    outcome = "done"
    try:
        for done, error in do_process_photos(batch):
            del unfinished[done.pk]
            if isinstance(error, SoftTimeLimitExceeded):
                do_fail_photo(done, "processing took too long and was stopped")
                _requeue(unfinished.values())
                return "failed"
            if error is not None:
                logger.error("processing photo %s failed", done.pk, exc_info=error)
                do_fail_photo(
                    done, f"internal error while processing: {type(error).__name__}: {error}"
                )
                outcome = "failed" if done.pk == photo_id else outcome
    except SoftTimeLimitExceeded:
        current = next(iter(unfinished.values()))
        do_fail_photo(current, "processing took too long and was stopped")
        del unfinished[current.pk]
        _requeue(unfinished.values())
        return "failed"
    return outcome


def _requeue(photos: Iterable[Photo]) -> None:
    """Put claimed, unfinished photos back in the queue and send them again: their own messages
    may have been consumed while this task held them (a duplicate message is harmless)."""
    for photo in photos:
        do_release_photo(photo.pk)
        enqueue(PROCESS_PHOTO, photo.pk)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def process_photo(self: object, photo_id: int) -> str:
    """Claim a queued photo and process it; a second message for it finds nothing to claim.

    The message is acknowledged only when the task ends (acks_late); a worker killed mid-photo
    hands it back (reject_on_worker_lost) and the redelivered message, with the same task id,
    takes its photo back (do_claim_photo counts the attempt).
    """
    token = str(getattr(self.request, "id", "") or "")  # type: ignore[attr-defined]
    budget = settings.FACEWEB_DATABASE_WAIT_SECONDS
    while True:
        try:
            return _process(token, photo_id)
        except OperationalError:
            logger.warning("photo %s: the database went away; waiting for it", photo_id)
            if not wait_for_database(budget):
                # Still down: leave the photo to the periodic check (stale or lost in queue).
                raise
            try:
                do_release_photo(photo_id)
            except OperationalError:
                continue  # gone again: the next claim fails and waits once more
            logger.info("photo %s: the database is back; processing it again", photo_id)


@shared_task(**RETRY)
def rematch_near_faces(face_ids: list[int]) -> int:
    """After faces were confirmed: re-match the unconfirmed faces of the library near them.

    Matching is a recomputation from the current tags, so running it twice is harmless.
    """

    return do_rematch_near_faces(face_ids)


@shared_task(**RETRY)
def heal_photos() -> dict[str, int]:
    """Celery beat runs this every minute: stuck photos back to the queue, with the reason."""
    counts = do_heal_photos()
    if any(counts.values()):
        logger.warning("healed stuck photos: %s", counts)
    return counts


@shared_task(**{**RETRY, "soft_time_limit": 600, "time_limit": 660})
def refit_basis(embedder_version: str, target_id: int | None = None, batch_size: int = 5000) -> str:
    """Fit a new PCA basis and move the templates to it in the background (see templates.py).

    Works for about a minute, then re-enqueues itself with the pending basis id, so a refit of
    millions of templates never meets the time limit. Running it twice continues the refit.
    """
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


@shared_task(**{**RETRY, "soft_time_limit": 600, "time_limit": 660})
def reembed(job_id: int, seconds: float = 60.0) -> str:
    """Stage photos of a re-embed job for about a minute, then hand over to a new message; when
    none is left, switch (recognition/actions/models.py). Running it twice, or after a crash,
    continues the job: staged photos are not staged again. An error other than the database's
    stops the job (state "failed", with the error); `switch_model --resume` goes on from there.
    """
    job = ReembedJob.objects.filter(pk=job_id).first()
    if job is None or job.state != ReembedJob.State.RUNNING:
        return "gone" if job is None else str(job.state)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if do_reembed_batch(job, settings.FACEWEB_REEMBED_BATCH) == 0:
                do_finish_reembed(job)
                return "switched"
    except OperationalError:
        raise
    except Exception as exc:
        logger.exception("re-embed job %s stopped", job_id)
        do_fail_reembed(job, f"{type(exc).__name__}: {exc}")
        return "failed"
    reembed.delay(job_id, seconds)
    return "continued"
