"""Celery tasks: thin, idempotent wrappers that take ids and call actions."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import OperationalError
from django.utils import timezone

from gallery.models import Photo
from recognition.actions import do_fail_photo, do_process_photo

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
    claimed = Photo.objects.filter(pk=photo_id, status=Photo.Status.QUEUED).update(
        status=Photo.Status.PROCESSING,
        processing_started_at=timezone.now(),
        error="",
    )
    if claimed == 0:
        return "skipped"
    photo = Photo.objects.filter(pk=photo_id).select_related("gallery").first()
    if photo is None:
        return "gone"
    Photo.objects.filter(pk=photo_id).update(attempts=photo.attempts + 1)
    try:
        do_process_photo(photo)
    except SoftTimeLimitExceeded:
        do_fail_photo(photo, "processing took too long and was stopped")
        return "failed"
    except OperationalError:
        # Transient: put the photo back so the retry can claim it again.
        Photo.objects.filter(pk=photo_id).update(status=Photo.Status.QUEUED)
        raise
    except Exception as exc:
        logger.exception("processing photo %s failed", photo_id)
        do_fail_photo(photo, f"internal error while processing: {type(exc).__name__}: {exc}")
        return "failed"
    return "done"
