"""Fit a new PCA basis on the trusted embeddings and move every template to it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from recognition.index.bases import do_refit_basis
from recognition.index.search import TemplateTable, search_params


class Command(BaseCommand):
    help = (
        "Refit the PCA basis of an embedder version and re-rotate its templates in batches; "
        "searches stay correct meanwhile. --ensure-index creates the level-1 HNSW index that "
        "FACEWEB_SEARCH_LEVELS / FACEWEB_SEARCH_HALFVEC ask for, if missing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--embedder", default=settings.FACEWEB_EMBEDDER)
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument(
            "--fresh", action="store_true", help="fit again even if a refit is unfinished"
        )
        parser.add_argument(
            "--background", action="store_true", help="enqueue the Celery task and return"
        )
        parser.add_argument("--ensure-index", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["ensure_index"]:
            params = search_params()
            # CONCURRENTLY keeps searches and writes going while it builds; it cannot run inside
            # a transaction (the tests run commands inside one).
            sql = TemplateTable().create_index_sql(
                params.levels[0],
                params.half,
                concurrently=not connection.in_atomic_block,
            )
            with connection.cursor() as cursor:
                cursor.execute(sql)
            self.stdout.write(
                f"index ready: {TemplateTable().index_name(params.levels[0], params.half)}"
            )
        version = options["embedder"]
        if options["background"]:
            from recognition.tasks import refit_basis

            refit_basis.delay(version, None, options["batch_size"])
            self.stdout.write(f"refit of {version} enqueued")
            return
        progress = do_refit_basis(
            version, batch_size=options["batch_size"], resume=not options["fresh"]
        )
        self.stdout.write(
            f"{version}: basis {progress.target_id} active, {progress.moved} templates re-rotated"
        )
