from __future__ import annotations

from django.apps import AppConfig


class RecognitionConfig(AppConfig):
    name = "recognition"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings
        from PIL import Image

        # Pillow's process-wide decompression-bomb guard follows the app's pixel limit (it warns
        # above it and refuses twice it); decode_image checks the limit itself first.
        Image.MAX_IMAGE_PIXELS = settings.FACEWEB_MAX_IMAGE_PIXELS
        # Registers the Celery tasks in every process, so actions can enqueue them by name
        # (faceweb/queue.py) without importing the module that imports the actions.
        from recognition import tasks  # noqa: F401
