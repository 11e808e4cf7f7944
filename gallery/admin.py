"""Admin for the gallery models: read-mostly views for support, with raw id fields for FKs."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from gallery.models import (
    Face,
    FaceEvent,
    FaceNotPerson,
    Gallery,
    GalleryMember,
    Person,
    PersonMerge,
    Photo,
    UploadBatch,
)
from recognition.admin import approve_rejected_faces, confirm_face_rejection


class GalleryMemberInline(admin.TabularInline):
    model = GalleryMember
    raw_id_fields = ["user"]
    extra = 0


@admin.register(Gallery)
class GalleryAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "photo_count", "tags", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "description", "owner__username"]
    raw_id_fields = ["owner"]
    date_hierarchy = "created_at"
    inlines = [GalleryMemberInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Gallery]:
        return (
            super().get_queryset(request).select_related("owner").annotate(_photos=Count("photos"))
        )

    @admin.display(description="photos", ordering="_photos")
    def photo_count(self, obj: Gallery) -> int:
        return obj._photos  # type: ignore[attr-defined]


@admin.register(GalleryMember)
class GalleryMemberAdmin(admin.ModelAdmin):
    list_display = ["gallery", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["gallery__name", "user__username"]
    raw_id_fields = ["gallery", "user"]
    list_select_related = ["gallery", "user"]


@admin.register(UploadBatch)
class UploadBatchAdmin(admin.ModelAdmin):
    list_display = ["id", "gallery", "created_by", "created_at", "rejected_count"]
    search_fields = ["gallery__name", "created_by__username"]
    raw_id_fields = ["gallery", "created_by"]
    list_select_related = ["gallery", "created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="rejected")
    def rejected_count(self, obj: UploadBatch) -> int:
        return len(obj.rejected or [])


@admin.register(Photo)
class PhotoAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "original_name",
        "gallery",
        "status",
        "width",
        "height",
        "attempts",
        "created_at",
    ]
    list_filter = ["status", "content_type", "created_at"]
    search_fields = ["original_name", "sha256", "gallery__name", "error"]
    raw_id_fields = ["gallery", "batch", "uploaded_by"]
    list_select_related = ["gallery"]
    readonly_fields = [
        "sha256",
        "size_bytes",
        "created_at",
        "processing_started_at",
        "processed_at",
    ]
    date_hierarchy = "created_at"


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "hidden", "merged_into", "created_at"]
    list_filter = ["hidden", "created_at"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["owner", "merged_into"]
    list_select_related = ["owner", "merged_into"]


@admin.register(Face)
class FaceAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "photo",
        "person",
        "assignment",
        "ood_status",
        "ood_score",
        "review_status",
        "embedder_version",
    ]
    list_filter = ["ood_status", "review_status", "assignment", "too_small", "embedder_version"]
    search_fields = ["person__name", "photo__original_name"]
    raw_id_fields = [
        "photo",
        "person",
        "suggested_person",
        "reviewed_by",
        "assigned_by",
    ]
    list_select_related = ["photo", "person"]
    # The 128 floats are of no use in a form, and saving them back through one would lose precision.
    exclude = ["embedding"]
    actions = [approve_rejected_faces, confirm_face_rejection]


@admin.register(FaceNotPerson)
class FaceNotPersonAdmin(admin.ModelAdmin):
    list_display = ["face", "person", "via_face", "created_by", "created_at"]
    search_fields = ["person__name"]
    raw_id_fields = ["face", "person", "via_face", "created_by"]
    list_select_related = ["person", "created_by"]


@admin.register(PersonMerge)
class PersonMergeAdmin(admin.ModelAdmin):
    list_display = ["id", "source", "target", "created_by", "created_at", "undone_at"]
    list_filter = ["created_at", "undone_at"]
    search_fields = ["source__name", "target__name"]
    raw_id_fields = ["source", "target", "created_by", "undone_by"]
    list_select_related = ["source", "target", "created_by"]


@admin.register(FaceEvent)
class FaceEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "action", "user", "face", "person"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "user__username", "person__name"]
    raw_id_fields = ["user", "face", "person"]
    list_select_related = ["user", "person"]
    date_hierarchy = "created_at"
