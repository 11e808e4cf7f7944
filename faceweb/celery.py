from __future__ import annotations

import os

from celery import Celery
from celery.signals import beat_init, worker_init, worker_ready
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")

# The default broker: a queue in the app's PostgreSQL that keeps a message until it is acked.
TRANSPORT_ALIASES["faceweb"] = "faceweb.broker:Transport"

app = Celery("faceweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
@beat_init.connect
def start_database(**kwargs: object) -> None:
    """The embedded PostgreSQL (when used) must run before the worker or beat connects."""
    from faceweb.db import ensure_embedded_server

    ensure_embedded_server()


@worker_ready.connect
def heal_on_start(**kwargs: object) -> None:
    """A worker that starts picks up what a dead one left: stuck photos go back to the queue.

    FAILED photos stay failed (bad input is final); only a new processing version gives them
    one more try.
    """
    # By command name: this module is imported by everything that enqueues, so it imports no
    # app code itself.
    from django.core.management import call_command

    call_command("heal_photos", after_upgrade=True, verbosity=0)
