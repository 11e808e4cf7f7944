"""The installed model versions, which is active, how far they are trusted, and the re-embed job."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from recognition.actions.models import progress
from recognition.core import ood
from recognition.core.trust import trust
from recognition.core.versions import BUILTIN
from recognition.models import ModelVersion, ReembedJob
from recognition.runtime import active_version


class Command(BaseCommand):
    help = "Show the model versions, the active one, their trust and the re-embed job's progress."

    def handle(self, *args: Any, **options: Any) -> None:
        active = active_version()
        names = sorted(set(BUILTIN) | set(ModelVersion.objects.values_list("name", flat=True)))
        rows = {r.name: r for r in ModelVersion.objects.all()}
        shipped = ood.get_model()
        for name in names:
            row = rows.get(name)
            t = trust(name, shipped)
            kind = row.get_kind_display() if row else "Built in"
            marks = [
                "ACTIVE" if name == active else "",
                "thresholds calibrated" if t.calibrated else "thresholds not calibrated",
                "filter trained" if t.filter_trained else "filter not trained (quality rules)",
            ]
            self.stdout.write(f"{name:28} {kind:12} " + "; ".join(m for m in marks if m))
            if name == active and not t.calibrated:
                self.stdout.write("  automatic matching is in a learning phase for this model")
            elif name == active and not t.filter_trained:
                self.stdout.write(
                    "  faces are checked by the quality rules only until the filter is trained "
                    "for this model (manage.py train_ood)"
                )
        job = ReembedJob.objects.first()
        if job is not None:
            done, total = progress(job)
            self.stdout.write(
                f"re-embed {job.source_version} -> {job.target_version}: {job.get_state_display()}"
                f", {done}/{total} photos" + (f" ({job.error})" if job.error else "")
            )
