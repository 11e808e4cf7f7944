"""Move the library to another model version (a background re-embed job), resume or cancel it."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from gallery.actions.common import ActionError
from recognition.actions.models import (
    do_cancel_reembed,
    do_resume_reembed,
    do_start_reembed,
    progress,
    running_job,
)
from recognition.models import ReembedJob


class Command(BaseCommand):
    help = (
        "Switch the active model: every photo is re-detected and re-embedded in the background "
        "while the current model keeps serving; names and decisions carry over and the new "
        "model becomes active at the end, in one step. --resume continues a stopped job, "
        "--cancel drops a job that has not switched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", nargs="?", help="the model version, e.g. dlib-resnet-flip-v1")
        parser.add_argument("--resume", action="store_true", help="continue the latest job")
        parser.add_argument("--cancel", action="store_true", help="cancel the running job")
        parser.add_argument(
            "--here",
            action="store_true",
            help="run the job in this process instead of the workers (small libraries)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from recognition.tasks import reembed

        try:
            if options["cancel"]:
                job = (
                    running_job()
                    or ReembedJob.objects.filter(state=ReembedJob.State.FAILED).first()
                )
                if job is None:
                    raise CommandError("no re-embed job to cancel")
                do_cancel_reembed(job)
                self.stdout.write(f"cancelled {job}")
                return
            if options["resume"]:
                job = ReembedJob.objects.exclude(
                    state__in=[ReembedJob.State.SWITCHED, ReembedJob.State.CANCELLED]
                ).first()
                if job is None:
                    raise CommandError("no stopped re-embed job to resume")
                job = do_resume_reembed(job, enqueue=not options["here"])
            else:
                if not options["name"]:
                    raise CommandError("name the model version to switch to")
                job = do_start_reembed(options["name"], enqueue=not options["here"])
        except ActionError as exc:
            raise CommandError(str(exc)) from exc
        if options["here"]:
            while reembed.run(job.pk, 3600.0) == "continued":
                pass
            job.refresh_from_db()
        done, total = progress(job)
        self.stdout.write(f"{job}: {done}/{total} photos; follow it with manage.py model_status")
        if job.state == ReembedJob.State.FAILED:
            raise CommandError(f"the job stopped: {job.error}")
