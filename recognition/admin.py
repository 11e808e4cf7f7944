"""Admin for recognition state: PCA bases, person templates, review decisions and model versions
with their re-embed jobs (read-only: the index, the review actions and recognition/actions/models.py
keep them; switching models is the staff /models/ page), and the review actions offered on faces."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest

from gallery.models import Face
from recognition.actions.review import do_review_faces
from recognition.models import (
    ModelVersion,
    ProjectionBasis,
    ReembedJob,
    ReviewDecision,
    StagedPhoto,
    Template,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Looked at, never edited: rows whose writers are the action modules or the index."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ProjectionBasis)
class ProjectionBasisAdmin(ReadOnlyAdmin):
    list_display = ["embedder_version", "version", "dim", "n_samples", "is_active", "created_at"]
    list_filter = ["embedder_version", "is_active"]
    search_fields = ["embedder_version"]
    # The rotation and mean are raw float32 bytes: shown nowhere, edited only by the PCA job.
    exclude = ["mean", "rotation"]


@admin.register(Template)
class TemplateAdmin(ReadOnlyAdmin):
    list_display = ["id", "person", "face", "gallery", "owner", "embedder_version", "updated_at"]
    list_filter = ["embedder_version"]
    search_fields = ["person__name", "owner__username"]
    list_select_related = ["person", "gallery", "owner"]
    exclude = ["vector"]


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "face", "decision", "reviewer", "ood_score"]
    list_filter = ["decision", "created_at"]
    search_fields = ["reviewer__username"]
    list_select_related = ["reviewer"]
    date_hierarchy = "created_at"


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "dim", "metric", "is_active", "activated_at", "installed_at"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name"]
    exclude = ["licence"]  # long text; the /models/ page shows who accepted it and when


@admin.register(ReembedJob)
class ReembedJobAdmin(ReadOnlyAdmin):
    list_display = ["id", "source_version", "target_version", "state", "total", "created_at"]
    list_filter = ["state", "target_version"]
    search_fields = ["source_version", "target_version"]
    date_hierarchy = "created_at"


@admin.register(StagedPhoto)
class StagedPhotoAdmin(ReadOnlyAdmin):
    list_display = ["id", "job", "photo", "error", "created_at"]
    list_select_related = ["job", "photo"]
    # The staged vectors are the job's working data, not for reading here.
    exclude = ["faces"]


# Review actions on Face (attached to gallery.admin.FaceAdmin): the same path as the review queue.


@admin.action(description="Approve selected rejected faces (match them, allow templates)")
def approve_rejected_faces(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Face]
) -> None:
    _review(modeladmin, request, queryset, ReviewDecision.Decision.APPROVE)


@admin.action(description="Confirm rejection of selected faces")
def confirm_face_rejection(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Face]
) -> None:
    _review(modeladmin, request, queryset, ReviewDecision.Decision.REJECT)


def _review(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Face], decision: str
) -> None:
    assert isinstance(request.user, User)  # the admin requires a staff account
    selected = list(queryset)
    rejected = [f for f in selected if f.ood_status == Face.Quality.REJECTED]
    changed = do_review_faces(rejected, decision, by=request.user)
    skipped = len(selected) - len(rejected)
    verb = "Approved" if decision == ReviewDecision.Decision.APPROVE else "Confirmed rejection of"
    modeladmin.message_user(
        request,
        f"{verb} {len(changed)} face(s)"
        + (f"; skipped {skipped} the filter did not reject" if skipped else "")
        + ".",
        messages.SUCCESS if changed else messages.WARNING,
    )
