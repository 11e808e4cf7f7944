"""Admin for recognition state: PCA bases, person templates and review decisions."""

from __future__ import annotations

from django.contrib import admin

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
