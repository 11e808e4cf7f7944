"""Galleries, photos, people and the faces that link them.

Only the action modules write these rows: gallery/actions/ (galleries, photos, people) and
recognition/actions/ (face identity, processing, review); see README.md, "Architecture".
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import PurePosixPath

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q
from django.utils import timezone
from pgvector.django import VectorField

from recognition.core.images import IMAGE_SUFFIXES

# A gallery's tags are labels to filter by, not a data store: bounded so no client can make every
# member's gallery list megabytes long.
MAX_TAGS = 50


class Gallery(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="galleries"
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    tags = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "galleries"
        indexes = [models.Index(fields=["owner", "-created_at"])]

    def __str__(self) -> str:
        return self.name


class GalleryMember(models.Model):
    class Role(models.TextChoices):
        VIEWER = "viewer", "Viewer"
        EDITOR = "editor", "Editor"

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="gallery_memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["gallery", "user"], name="gallery_member_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.role}) in {self.gallery}"


class UploadBatch(models.Model):
    """One submission of many files; the progress fragment polls its photos."""

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    rejected = models.JSONField(default=list, blank=True)  # [{"name": ..., "error": ...}]

    class Meta:
        verbose_name_plural = "upload batches"

    def __str__(self) -> str:
        return f"batch {self.pk} in {self.gallery}"


def _storage_name(kind: str, instance: Photo | Face, filename: str) -> str:
    # The user's file name never reaches the file system: only a UUID and a known extension.
    # The gallery id is the second path part: gallery.views.media relies on it to check access.
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        suffix = ".bin"
    gallery_id = instance.photo.gallery_id if isinstance(instance, Face) else instance.gallery_id
    return f"{kind}/{gallery_id}/{uuid.uuid4().hex}{suffix}"


def original_upload_to(instance: Photo, filename: str) -> str:
    return _storage_name("originals", instance, filename)


def derived_upload_to(instance: Photo | Face, filename: str) -> str:
    return _storage_name("derived", instance, filename)


class Photo(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PROCESSING = "processing", "Processing"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="photos")
    batch = models.ForeignKey(
        UploadBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="photos"
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    original = models.FileField(upload_to=original_upload_to, max_length=255)
    original_name = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    thumbnail = models.FileField(upload_to=derived_upload_to, max_length=255, blank=True)
    preview = models.FileField(upload_to=derived_upload_to, max_length=255, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    # When the photo was last put in the queue (a message sent), and which task holds it while
    # processing: a message redelivered after its worker died has the same task id.
    queued_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=64, blank=True)
    # The processing version (gallery.actions.photos.processing_version) of the last run.
    processed_with = models.CharField(max_length=100, blank=True)
    taken_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    processing_started_at = models.DateTimeField(null=True, blank=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["gallery", "sha256"], name="photo_unique_in_gallery")
        ]
        indexes = [
            models.Index(fields=["gallery", "-created_at"]),
            models.Index(fields=["status", "processing_started_at"]),
            models.Index(fields=["status", "queued_at"]),
        ]

    def __str__(self) -> str:
        return self.original_name

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.DONE, self.Status.FAILED}

    @property
    def is_stuck(self) -> bool:
        """In `processing` for longer than any run may take: its worker died (the periodic
        check re-queues it; a person may ask at once)."""
        if self.status != self.Status.PROCESSING or self.processing_started_at is None:
            return self.status == self.Status.PROCESSING
        limit = timedelta(seconds=settings.FACEWEB_STALE_PROCESSING_SECONDS)
        return timezone.now() - self.processing_started_at > limit


class Person(models.Model):
    """A named person in one owner's library; visible to members of the owner's galleries."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="people"
    )
    name = models.CharField(max_length=200)
    hidden = models.BooleanField(default=False)
    # The face shown for the person on the people pages; None: the newest confirmed face.
    cover_face = models.ForeignKey(
        "Face", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    merged_into = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="merged_from"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["owner", "name"])]

    def __str__(self) -> str:
        return self.name


class Face(models.Model):
    class Quality(models.TextChoices):
        PENDING = "pending", "Not checked"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected (out of distribution)"

    class Review(models.TextChoices):
        NONE = "", "Not reviewed"
        APPROVED = "approved", "Approved by a reviewer"
        CONFIRMED = "confirmed", "Rejection confirmed by a reviewer"
        # A person said the box holds no face (a false detection): never matched, not shown.
        NOT_FACE = "not_face", "Not a face"

    class Assignment(models.TextChoices):
        NONE = "", "Unknown"
        SUGGESTED = "suggested", "Suggested"
        CONFIRMED = "confirmed", "Confirmed"
        # A stranger the user does not want to name: kept out of "Who is unknown?" and of
        # matching until un-ignored.
        IGNORED = "ignored", "Ignored"

    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="faces")
    # Box in pixels of the orientation-corrected original.
    left = models.IntegerField()
    top = models.IntegerField()
    width = models.IntegerField()
    height = models.IntegerField()
    landmarks = models.JSONField(default=list)  # five [x, y] points
    det_score = models.FloatField(default=0.0)
    too_small = models.BooleanField(default=False)
    # Drawn by hand where the detector found nothing; reprocessing keeps it.
    manual = models.BooleanField(default=False)
    crop = models.FileField(upload_to=derived_upload_to, max_length=255, blank=True)

    # Dimensionless: `embedder_version` fixes the length (recognition/core/versions.py).
    embedding = VectorField(null=True, blank=True)
    embedder_version = models.CharField(max_length=64, blank=True)

    quality = models.JSONField(default=dict, blank=True)  # the filter's input features
    ood_status = models.CharField(max_length=10, choices=Quality.choices, default=Quality.PENDING)
    ood_score = models.FloatField(null=True, blank=True)
    ood_reasons = models.JSONField(default=list, blank=True)
    ood_model_version = models.CharField(max_length=64, blank=True)
    review_status = models.CharField(
        max_length=10, choices=Review.choices, default=Review.NONE, blank=True
    )
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    person = models.ForeignKey(
        Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="faces"
    )
    assignment = models.CharField(
        max_length=10, choices=Assignment.choices, default=Assignment.NONE, blank=True
    )
    match_distance = models.FloatField(null=True, blank=True)
    # The person offered as a suggestion when the match was not confident enough to assign.
    suggested_person = models.ForeignKey(
        Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="suggested_faces"
    )
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["photo_id", "left"]
        constraints = [
            # Two faces in one photo are never the same person.
            models.UniqueConstraint(
                fields=["photo", "person"],
                condition=Q(person__isnull=False),
                name="face_one_person_per_photo",
            )
        ]
        indexes = [
            models.Index(fields=["ood_status", "review_status"]),
            models.Index(fields=["person", "assignment"]),
        ]

    def __str__(self) -> str:
        return f"face {self.pk} in photo {self.photo_id}"

    @property
    def is_trusted(self) -> bool:
        """Usable for matching and as a template: passed the filter, or approved by a reviewer."""
        if self.review_status == self.Review.APPROVED:
            return True
        if self.review_status in {self.Review.CONFIRMED, self.Review.NOT_FACE}:
            return False
        return self.ood_status == self.Quality.ACCEPTED


class FaceNotPerson(models.Model):
    """A "not this person" decision: never suggest `person` for `face` again."""

    face = models.ForeignKey(Face, on_delete=models.CASCADE, related_name="not_persons")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="+")
    # The template face whose similarity caused the wrong suggestion, if known.
    via_face = models.ForeignKey(
        Face, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["face", "person"], name="face_not_person_unique")
        ]

    def __str__(self) -> str:
        return f"face {self.face_id} is not person {self.person_id}"


class PersonMerge(models.Model):
    """A reversible merge of `source` into `target`."""

    source = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="+")
    # What an undo gives back, recorded by the merge itself: the faces moved to the target, the
    # suggestions moved to it, the suggestions dropped (the target was already in that photo) and
    # the "not this person" rows created for the target.
    face_ids = models.JSONField(default=list)
    suggested_face_ids = models.JSONField(default=list)
    dropped_suggestion_face_ids = models.JSONField(default=list)
    not_person_ids = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    undone_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"merge of person {self.source_id} into {self.target_id}"


class FaceEvent(models.Model):
    """Audit log: who changed what about a face or a person, and when."""

    class Action(models.TextChoices):
        FACE_TAGGED = "face_tagged", "Face tagged"
        FACE_UNTAGGED = "face_untagged", "Tag removed"
        FACE_AUTO_TAGGED = "face_auto_tagged", "Face tagged automatically"
        FACE_SUGGESTED = "face_suggested", "Person suggested"
        MATCH_CLEARED = "match_cleared", "Automatic tag or suggestion withdrawn"
        SUGGESTION_CONFIRMED = "suggestion_confirmed", "Suggestion confirmed"
        SUGGESTION_REJECTED = "suggestion_rejected", "Not this person"
        FACE_REVIEW_APPROVED = "face_review_approved", "Rejected face approved by a reviewer"
        FACE_REVIEW_CONFIRMED = "face_review_confirmed", "Rejection confirmed by a reviewer"
        PERSON_CREATED = "person_created", "Person created"
        PERSON_RENAMED = "person_renamed", "Person renamed"
        PERSON_HIDDEN = "person_hidden", "Person hidden"
        PERSON_SHOWN = "person_shown", "Person shown again"
        PEOPLE_MERGED = "people_merged", "People merged"
        MERGE_UNDONE = "merge_undone", "Merge undone"
        PHOTO_DELETED = "photo_deleted", "Photo deleted"
        GALLERY_DELETED = "gallery_deleted", "Gallery deleted"
        FACE_DRAWN = "face_drawn", "Face drawn by hand"
        FACE_NOT_A_FACE = "face_not_a_face", "Marked as not a face"
        FACE_IS_A_FACE = "face_is_a_face", "Marked as a face again"
        FACE_IGNORED = "face_ignored", "Face ignored as a stranger"
        FACE_UNIGNORED = "face_unignored", "Face no longer ignored"
        PERSON_COVER_SET = "person_cover_set", "Cover face chosen"
        PHOTO_MOVED = "photo_moved", "Photo moved to another gallery"
        PHOTO_REQUEUED = "photo_requeued", "Photo queued again"
        PERSON_DELETED = "person_deleted", "Person deleted"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    face = models.ForeignKey(
        Face, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    person = models.ForeignKey(
        Person, on_delete=models.SET_NULL, null=True, blank=True, related_name="events"
    )
    action = models.CharField(max_length=40, choices=Action.choices)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["action", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} at {self.created_at:%Y-%m-%d %H:%M}"


def trusted_q(prefix: str = "") -> Q:
    """SQL form of `Face.is_trusted` (keep the two in step)."""
    return Q(**{f"{prefix}review_status": Face.Review.APPROVED}) | (
        ~Q(**{f"{prefix}review_status__in": [Face.Review.CONFIRMED, Face.Review.NOT_FACE]})
        & Q(**{f"{prefix}ood_status": Face.Quality.ACCEPTED})
    )


class ApiKey(models.Model):
    """A key a script sends as `Authorization: Bearer <key>`, acting as its user.

    Only a SHA-256 of the key is stored (a key is 190 random bits, so a fast hash is enough; a
    password hash would cost every API call ~0.3 s of CPU). `prefix` finds the row and is shown
    in lists so the user can tell keys apart; the whole key is shown once, when it is made.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
