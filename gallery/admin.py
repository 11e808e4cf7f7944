"""Admin for the gallery models: a support tool that looks, and changes only through actions.

Identity and status columns (who a face is, whether it is trusted, where a photo stands) are
read-only here: their writers are the action modules, which keep templates, the audit log and the
matcher in step. Changes an operator may make go through admin actions and `save_model` /
`delete_model` hooks that call the same `do_*` functions as the site.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import Count, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from faceweb.http import AuthedRequest
from gallery.actions.galleries import do_delete_gallery, do_update_gallery
from gallery.actions.people import do_create_person, do_hide_person, do_rename_person
from gallery.actions.photos import do_delete_photo, do_delete_photos, do_requeue_photo
from gallery.models import (
    ApiKey,
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
from recognition.actions.identity import do_untag_face
from recognition.admin import ReadOnlyAdmin, approve_rejected_faces, confirm_face_rejection


class GalleryMemberInline(admin.TabularInline):
    """Who a gallery is shared with; sharing itself happens on the gallery's page."""

    model = GalleryMember
    raw_id_fields = ["user"]
    extra = 0
    can_delete = False
    readonly_fields = ["user", "role", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Gallery)
class GalleryAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "photo_count", "tags", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["name", "description", "owner__username"]
    fields = ["name", "description", "tags", "owner", "created_at", "updated_at"]
    readonly_fields = ["owner", "created_at", "updated_at"]
    date_hierarchy = "created_at"
    inlines = [GalleryMemberInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a gallery belongs to a user: they create it on the site

    def get_queryset(self, request: HttpRequest) -> QuerySet[Gallery]:
        return (
            super().get_queryset(request).select_related("owner").annotate(_photos=Count("photos"))
        )

    @admin.display(description="photos", ordering="_photos")
    def photo_count(self, obj: Gallery) -> int:
        return int(obj._photos)  # type: ignore[attr-defined]

    def save_model(
        self, request: HttpRequest, obj: Gallery, form: ModelForm[Gallery], change: bool
    ) -> None:
        data = form.cleaned_data
        do_update_gallery(
            obj, name=data["name"], description=data["description"], tags=data["tags"]
        )

    def delete_model(self, request: AuthedRequest, obj: Gallery) -> None:  # type: ignore[override]
        do_delete_gallery(obj, by=request.user)

    def delete_queryset(self, request: AuthedRequest, queryset: QuerySet[Gallery]) -> None:  # type: ignore[override]
        for gallery in queryset:
            do_delete_gallery(gallery, by=request.user)


@admin.register(GalleryMember)
class GalleryMemberAdmin(ReadOnlyAdmin):
    list_display = ["gallery", "user", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["gallery__name", "user__username"]
    list_select_related = ["gallery", "user"]


@admin.register(UploadBatch)
class UploadBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "gallery", "created_by", "created_at", "rejected_count"]
    search_fields = ["gallery__name", "created_by__username"]
    list_select_related = ["gallery", "created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="rejected")
    def rejected_count(self, obj: UploadBatch) -> int:
        return len(obj.rejected or [])


@admin.action(description="Process the selected photos again")
def process_again(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Photo]
) -> None:
    queued = sum(do_requeue_photo(photo) for photo in queryset)
    modeladmin.message_user(request, f"{queued} photo(s) queued for processing.", messages.SUCCESS)


@admin.register(Photo)
class PhotoAdmin(ReadOnlyAdmin):
    """Photos arrive by upload and change state in processing; here they are processed again or
    deleted (with their faces, templates and files)."""

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
    list_select_related = ["gallery"]
    date_hierarchy = "created_at"
    actions = [process_again]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.ModelAdmin.has_delete_permission(self, request, obj)

    def delete_model(self, request: AuthedRequest, obj: Photo) -> None:  # type: ignore[override]
        do_delete_photo(obj, by=request.user)

    def delete_queryset(self, request: AuthedRequest, queryset: QuerySet[Photo]) -> None:  # type: ignore[override]
        do_delete_photos(queryset, by=request.user)


@admin.register(Person)
class PersonAdmin(admin.ModelAdmin):
    """Name and visibility are edited through the same actions as on the site (logged); which
    faces a person has, and merges, are the site's."""

    list_display = ["name", "owner", "hidden", "merged_into", "created_at"]
    list_filter = ["hidden", "created_at"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["owner"]
    fields = ["name", "hidden", "owner", "merged_into", "created_at", "updated_at"]
    list_select_related = ["owner", "merged_into"]

    def get_readonly_fields(self, request: HttpRequest, obj: Person | None = None) -> list[str]:
        fixed = ["merged_into", "created_at", "updated_at"]
        return fixed if obj is None else ["owner", *fixed]

    def save_model(  # type: ignore[override]
        self, request: AuthedRequest, obj: Person, form: ModelForm[Person], change: bool
    ) -> None:
        data = form.cleaned_data
        if not change:
            created = do_create_person(data["owner"], data["name"], by=request.user)
            obj.pk = created.pk
            if data["hidden"]:
                do_hide_person(created, by=request.user)
            return
        current = Person.objects.get(pk=obj.pk)
        if data["name"] != current.name:
            do_rename_person(current, data["name"], by=request.user)
        if data["hidden"] != current.hidden:
            do_hide_person(current, by=request.user, hidden=data["hidden"])

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # merges (reversible) are the way to remove a duplicate


@admin.action(description="Remove the tag of the selected faces")
def untag_faces(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Face]
) -> None:
    assert isinstance(request.user, User)  # the admin requires a staff account
    tagged = [face for face in queryset.select_related("photo__gallery") if face.person_id]
    for face in tagged:
        do_untag_face(face, by=request.user)
    modeladmin.message_user(request, f"Removed the tag of {len(tagged)} face(s).", messages.SUCCESS)


@admin.register(Face)
class FaceAdmin(ReadOnlyAdmin):
    """Faces come from processing; who they are and whether they are trusted change through the
    actions (review, untag) and the site's tagging pages."""

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
    list_select_related = ["photo", "person"]
    # The 128 floats are of no use on a page.
    exclude = ["embedding"]
    actions = [approve_rejected_faces, confirm_face_rejection, untag_faces]


@admin.register(FaceNotPerson)
class FaceNotPersonAdmin(ReadOnlyAdmin):
    list_display = ["face", "person", "via_face", "created_by", "created_at"]
    search_fields = ["person__name"]
    list_select_related = ["person", "created_by"]


@admin.register(PersonMerge)
class PersonMergeAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "target", "created_by", "created_at", "undone_at"]
    list_filter = ["created_at", "undone_at"]
    search_fields = ["source__name", "target__name"]
    list_select_related = ["source", "target", "created_by"]


@admin.register(FaceEvent)
class FaceEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "action", "user", "face", "person"]
    list_filter = ["action", "created_at"]
    search_fields = ["action", "user__username", "person__name"]
    list_select_related = ["user", "person"]
    date_hierarchy = "created_at"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made and revoked on the user's account page; here they can only be looked at
    (and deleted, which revokes them)."""

    list_display = ["name", "user", "prefix", "read_only", "created_at", "expires_at", "revoked_at"]
    list_filter = ["read_only"]
    search_fields = ["name", "user__username", "prefix"]
    readonly_fields = [f.name for f in ApiKey._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
