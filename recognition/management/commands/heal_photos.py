"""Re-queue stuck photos now (what Celery beat does every minute), with the reasons."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from gallery.actions.photos import do_heal_photos, do_requeue_failed_after_upgrade


class Command(BaseCommand):
    help = (
        "Re-queue photos stuck in processing (their worker died) or in the queue (a lost "
        "message); --after-upgrade also gives failed photos one more try when the processing "
        "version changed. Failed photos are otherwise left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--after-upgrade", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        counts = do_heal_photos()
        if options["after_upgrade"]:
            counts["new_version"] = do_requeue_failed_after_upgrade()
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
