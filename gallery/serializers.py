"""API representations. Output serializers read; input serializers only validate (writes happen
in the action modules, called from gallery/api.py)."""

from __future__ import annotations

from typing import Any

from django.db.models.fields.files import FieldFile
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gallery.models import MAX_TAGS, Face, Gallery, GalleryMember, Person, Photo

# A file that is not there yet (a queued photo has no thumbnail) has no URL: null.
NULLABLE_URL = serializers.URLField(allow_null=True, read_only=True)


def _media_url(serializer: serializers.Serializer, stored: FieldFile | str | None) -> str | None:
    name = getattr(stored, "name", stored)
    if not name:
        return None
    url = reverse("gallery:media", kwargs={"path": str(name)})
    request = serializer.context.get("request")
    return request.build_absolute_uri(url) if request is not None else url


# Galleries ---------------------------------------------------------------------------------


class GallerySerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    role = serializers.SerializerMethodField()
    photo_count = serializers.SerializerMethodField()

    class Meta:
        model = Gallery
        fields = [
            "id",
            "name",
            "description",
            "tags",
            "owner",
            "role",
            "photo_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_role(self, gallery: Gallery) -> str:
        """owner, editor or viewer: what the requesting user may do here."""
        role = getattr(gallery, "role", None)
        if role is None:
            from gallery.access import gallery_role

            role = gallery_role(self.context["request"].user, gallery) or ""
        return role

    def get_photo_count(self, gallery: Gallery) -> int:
        count = getattr(gallery, "photo_count", None)
        return gallery.photos.count() if count is None else count


class GalleryWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(
        child=serializers.CharField(max_length=50),
        required=False,
        default=list,
        max_length=MAX_TAGS,
    )


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.get_username", read_only=True)
    user_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = GalleryMember
        fields = ["user_id", "username", "role", "created_at"]
        read_only_fields = fields


class ShareSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=GalleryMember.Role.choices)


# Photos and uploads ------------------------------------------------------------------------


class PhotoSerializer(serializers.ModelSerializer):
    original_url = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField()

    class Meta:
        model = Photo
        fields = [
            "id",
            "gallery",
            "batch",
            "original_name",
            "content_type",
            "size_bytes",
            "width",
            "height",
            "status",
            "error",
            "taken_at",
            "created_at",
            "processed_at",
            "original_url",
            "thumbnail_url",
            "preview_url",
        ]
        read_only_fields = fields

    @extend_schema_field(NULLABLE_URL)
    def get_original_url(self, photo: Photo) -> str | None:
        return _media_url(self, photo.original)

    @extend_schema_field(NULLABLE_URL)
    def get_thumbnail_url(self, photo: Photo) -> str | None:
        return _media_url(self, photo.thumbnail)

    @extend_schema_field(NULLABLE_URL)
    def get_preview_url(self, photo: Photo) -> str | None:
        return _media_url(self, photo.preview)


class UploadRequestSerializer(serializers.Serializer):
    files = serializers.ListField(
        child=serializers.FileField(allow_empty_file=True), help_text="One or more image files."
    )


class RejectedFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    error = serializers.CharField(help_text="Why the file was not accepted, for the user.")


class UploadResultSerializer(serializers.Serializer):
    batch = serializers.IntegerField(help_text="Poll /api/galleries/{id}/batches/{batch}/.")
    accepted = PhotoSerializer(many=True)
    rejected = RejectedFileSerializer(many=True)


class BatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    total = serializers.IntegerField()
    queued = serializers.IntegerField()
    processing = serializers.IntegerField()
    done = serializers.IntegerField()
    failed = serializers.IntegerField()
    finished = serializers.BooleanField()
    rejected = RejectedFileSerializer(many=True)


# People and faces --------------------------------------------------------------------------


class PersonBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Person
        fields = ["id", "name"]
        read_only_fields = fields


class PersonSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    face_count = serializers.SerializerMethodField()

    class Meta:
        model = Person
        fields = ["id", "name", "owner", "face_count", "created_at", "updated_at"]
        read_only_fields = fields

    def get_face_count(self, person: Person) -> int | None:
        """Faces of this person in galleries the requesting user can see."""
        return getattr(person, "face_count", None)


class PersonWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class BoxSerializer(serializers.Serializer):
    left = serializers.IntegerField()
    top = serializers.IntegerField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


class FaceSerializer(serializers.ModelSerializer):
    box = serializers.SerializerMethodField()
    crop_url = serializers.SerializerMethodField()
    person = PersonBriefSerializer(read_only=True, allow_null=True)
    suggested_person = PersonBriefSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Face
        fields = [
            "id",
            "photo",
            "box",
            "crop_url",
            "det_score",
            "too_small",
            "person",
            "assignment",
            "suggested_person",
            "match_distance",
            "ood_status",
            "ood_score",
            "ood_reasons",
            "review_status",
            "embedder_version",
        ]
        read_only_fields = fields

    @extend_schema_field(BoxSerializer)
    def get_box(self, face: Face) -> dict[str, Any]:
        """Pixels of the orientation-corrected original."""
        return {"left": face.left, "top": face.top, "width": face.width, "height": face.height}

    @extend_schema_field(NULLABLE_URL)
    def get_crop_url(self, face: Face) -> str | None:
        return _media_url(self, face.crop)


class TagSerializer(serializers.Serializer):
    person = serializers.IntegerField(
        required=False, help_text="An existing person of the gallery owner's library."
    )
    name = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Or a name: that person of the owner's library, created if there is none.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("person") and not (attrs.get("name") or "").strip():
            raise serializers.ValidationError("Give `person` (an id) or `name`.")
        return attrs
