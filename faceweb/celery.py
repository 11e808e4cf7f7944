from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")

app = Celery("faceweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def requeue_stale_photos(**kwargs: object) -> None:
    """A worker that died left photos in `processing`; the next worker to start picks them up."""
    from django.core.management import call_command

    call_command("reprocess")
