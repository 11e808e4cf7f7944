"""Remove what an inactive model version left behind (its kept vectors, bases, templates)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gallery.actions.common import ActionError
from recognition.actions.models import do_drop_version


class Command(BaseCommand):
    help = (
        "Drop an inactive model version's stored data: the vectors a switch kept, its PCA bases "
        "and any template of it. The active version and one a running job uses are refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = do_drop_version(options["name"])
        except ActionError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(", ".join(f"{k}: {v}" for k, v in counts.items()))
