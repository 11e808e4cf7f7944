"""Re-queue photos on request: failed ones, ones stuck in processing or in the queue."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q

from gallery.actions.photos import Requeue, do_requeue_photo, lost_in_queue, stale_processing
from gallery.models import Photo


class Command(BaseCommand):
    help = (
        "Process photos again: failed ones, ones stuck in processing (their worker died) and "
        "ones whose queue message was lost; --all also photos that are done. A failed photo is "
        "never re-queued automatically (except once after a processing version change)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--gallery", type=int, help="only this gallery")
        parser.add_argument("--all", action="store_true", help="also photos that are done")
        parser.add_argument("--dry-run", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        wanted = (
            Q(status=Photo.Status.FAILED)
            | Q(pk__in=stale_processing().values("pk"))
            | Q(pk__in=lost_in_queue().values("pk"))
        )
        if options["all"]:
            wanted |= Q(status=Photo.Status.DONE)
        photos = Photo.objects.filter(wanted)
        if options["gallery"]:
            photos = photos.filter(gallery_id=options["gallery"])
        count = 0
        for photo in photos.only("pk", "status").iterator():
            if options["dry_run"] or do_requeue_photo(photo, reason=Requeue.ASKED):
                count += 1
        verb = "would re-queue" if options["dry_run"] else "re-queued"
        self.stdout.write(f"{verb} {count} photo(s)")
