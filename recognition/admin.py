"""Admin for recognition state: PCA bases, person templates and review decisions."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from gallery.models import Face
from recognition.models import ProjectionBasis, ReviewDecision, Template


@admin.register(ProjectionBasis)
class ProjectionBasisAdmin(admin.ModelAdmin):
    list_display = ["embedder_version", "version", "dim", "n_samples", "is_active", "created_at"]
    list_filter = ["embedder_version", "is_active"]
    search_fields = ["embedder_version"]
    # The rotation and mean are raw float32 bytes: shown nowhere, edited only by the PCA job.
    exclude = ["mean", "rotation"]
    readonly_fields = ["eigenvalues"]


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ["id", "person", "face", "gallery", "owner", "embedder_version", "updated_at"]
    list_filter = ["embedder_version"]
    search_fields = ["person__name", "owner__username"]
    raw_id_fields = ["face", "person", "gallery", "owner", "basis"]
    list_select_related = ["person", "gallery", "owner"]
    exclude = ["vector"]


@admin.register(ReviewDecision)
class ReviewDecisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "face", "decision", "reviewer", "ood_score"]
    list_filter = ["decision", "created_at"]
    search_fields = ["reviewer__username"]
    raw_id_fields = ["face", "reviewer"]
    list_select_related = ["reviewer"]
    date_hierarchy = "created_at"


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
    from recognition.actions.review import do_review_faces

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
