"""Re-queue failed photos and photos stuck in processing (their worker died)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q
from django.utils import timezone

from gallery.actions.photos import do_requeue_photo
from gallery.models import Photo


class Command(BaseCommand):
    help = "Re-queue failed and stale photos (or all photos of a gallery) for processing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--gallery", type=int, help="only this gallery")
        parser.add_argument("--all", action="store_true", help="also photos that are done")
        parser.add_argument(
            "--stale-after",
            type=int,
            default=settings.FACEWEB_STALE_PROCESSING_SECONDS,
            help="seconds after which a photo in 'processing' counts as stale",
        )
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(seconds=options["stale_after"])
        stale = Q(status=Photo.Status.PROCESSING) & (
            Q(processing_started_at__lt=cutoff) | Q(processing_started_at__isnull=True)
        )
        # A photo queued that long ago lost its message (e.g. a broker without persistence).
        lost = Q(status=Photo.Status.QUEUED, created_at__lt=cutoff)
        wanted = Q(status=Photo.Status.FAILED) | stale | lost
        if options["all"]:
            wanted |= Q(status=Photo.Status.DONE)
        photos = Photo.objects.filter(wanted)
        if options["gallery"]:
            photos = photos.filter(gallery_id=options["gallery"])
        count = 0
        for photo in photos.only("pk", "status").iterator():
            if options["dry_run"] or do_requeue_photo(photo):
                count += 1
        verb = "would re-queue" if options["dry_run"] else "re-queued"
        self.stdout.write(f"{verb} {count} photo(s)")
