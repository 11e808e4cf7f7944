from __future__ import annotations

from django.apps import AppConfig


class RecognitionConfig(AppConfig):
    name = "recognition"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the Celery tasks in every process, so actions can enqueue them by name
        # (faceweb/queue.py) without importing the module that imports the actions.
        from recognition import tasks  # noqa: F401
