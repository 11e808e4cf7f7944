"""Enqueueing background work by task name.

Actions enqueue tasks by their registered name, so actions never import `recognition.tasks`
(which imports the actions). The tasks are registered when the recognition app is ready
(recognition/apps.py), so in every process a name resolves to the task object and eager mode
(the tests) still runs it in-process.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from faceweb.celery import app

PROCESS_PHOTO = "recognition.tasks.process_photo"
REMATCH_NEAR_FACES = "recognition.tasks.rematch_near_faces"
REEMBED = "recognition.tasks.reembed"


def enqueue(task_name: str, *args: Any) -> None:
    """Send `task_name(*args)` now (JSON arguments only)."""
    app.tasks[task_name].delay(*args)


def enqueue_on_commit(task_name: str, *args: Any) -> None:
    """Send `task_name(*args)` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: enqueue(task_name, *args))
