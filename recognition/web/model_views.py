"""The staff page of model versions: which one is active, how far each is trusted, the re-embed
job's progress (an htmx fragment that polls while the job runs), switch and drop buttons.

Like the review queue: anonymous visitors go to the login page, signed-in users who are not
staff get 404. Every change goes through recognition/actions/models.py.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from faceweb.http import AuthedRequest
from gallery.actions.common import ActionError
from recognition.actions.models import (
    do_cancel_reembed,
    do_drop_version,
    do_start_reembed,
    progress,
    running_job,
)
from recognition.core import ood
from recognition.core.trust import trust
from recognition.core.versions import BUILTIN, spec
from recognition.models import ModelVersion, ReembedJob
from recognition.runtime import active_version
from recognition.web.review_views import staff_only


def _job_context() -> dict[str, object]:
    job = ReembedJob.objects.first()
    done, total = progress(job) if job else (0, 0)
    return {
        "job": job,
        "done": done,
        "total": total,
        "percent": round(100 * done / total) if total else 0,
        "running": job is not None and job.state == ReembedJob.State.RUNNING,
    }


def _context() -> dict[str, object]:
    active = active_version()
    rows = {r.name: r for r in ModelVersion.objects.all()}
    shipped = ood.get_model()
    versions = []
    for name in sorted(set(BUILTIN) | set(rows)):
        t = trust(name, shipped)
        version = spec(name)
        row = rows.get(name)
        versions.append(
            {
                "name": name,
                "builtin": version.builtin,
                "dim": version.dim,
                "metric": version.metric,
                "licence": row.licence if row and row.licence else version.licence,
                "active": name == active,
                "trust": t,
            }
        )
    active_trust = trust(active, shipped)
    return {
        "versions": versions,
        "active": active,
        "learning": active_trust.notice,
        **_job_context(),
    }


@require_GET
@staff_only
def model_list(request: AuthedRequest) -> HttpResponse:
    if request.htmx and request.htmx.target == "reembed-job":
        return render(request, "recognition/_reembed_job.html", _job_context())
    return render(request, "recognition/models.html", _context())


@require_POST
@staff_only
def model_switch(request: AuthedRequest) -> HttpResponse:
    try:
        do_start_reembed(request.POST.get("name", ""), by=request.user)
        messages.success(request, "Re-embedding started; the current model serves until it ends.")
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect("models:model-list")


@require_POST
@staff_only
def model_cancel(request: AuthedRequest) -> HttpResponse:
    job = running_job()
    if job is not None:
        do_cancel_reembed(job)
        messages.success(request, "Re-embedding cancelled; nothing changed.")
    return redirect("models:model-list")


@require_POST
@staff_only
def model_drop(request: AuthedRequest) -> HttpResponse:
    try:
        do_drop_version(request.POST.get("name", ""))
        messages.success(request, "The model's stored vectors were removed.")
    except ActionError as exc:
        messages.error(request, str(exc))
    return redirect("models:model-list")
