"""Recognition state kept in PostgreSQL: PCA bases, person templates and review decisions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from gallery.models import Face, Gallery, Person
from recognition.core.versions import EMBEDDING_DIM


class ProjectionBasis(models.Model):
    """A full-rank orthonormal PCA rotation (with its mean) for one embedder version.

    Rows of `rotation` are components ordered by decreasing eigenvalue; both arrays are float32
    bytes. A rotation preserves Euclidean distance, so prefix distances are lower bounds.
    """

    embedder_version = models.CharField(max_length=64)
    version = models.PositiveIntegerField()
    dim = models.PositiveIntegerField(default=EMBEDDING_DIM)
    mean = models.BinaryField()
    rotation = models.BinaryField()
    eigenvalues = models.JSONField(default=list)
    n_samples = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["embedder_version", "version"], name="basis_version_unique"
            ),
            models.UniqueConstraint(
                fields=["embedder_version"],
                condition=Q(is_active=True),
                name="basis_one_active_per_embedder",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.embedder_version} basis v{self.version}"


class Template(models.Model):
    """A confirmed, trusted face of a person, stored rotated into its basis for staged search.

    `gallery` and `owner` are copied from the face so searches can filter without joins.
    """

    face = models.OneToOneField(Face, on_delete=models.CASCADE, related_name="template")
    person = models.ForeignKey(Person, on_delete=models.CASCADE, related_name="templates")
    gallery = models.ForeignKey(Gallery, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    embedder_version = models.CharField(max_length=64)
    basis = models.ForeignKey(ProjectionBasis, on_delete=models.PROTECT, related_name="templates")
    vector = VectorField(dimensions=EMBEDDING_DIM)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["embedder_version", "basis"]),
            models.Index(fields=["gallery"]),
            models.Index(fields=["person"]),
        ]

    def __str__(self) -> str:
        return f"template of {self.person_id} from face {self.face_id}"


class ReviewDecision(models.Model):
    """A person's decision on a face the filter judged (a reviewer's approve / reject of a
    rejected face, or the gallery owner's "not a face"); these are labels for `train_ood`."""

    class Decision(models.TextChoices):
        APPROVE = "approve", "Approve (in distribution)"
        REJECT = "reject", "Confirm rejection (out of distribution)"
        # The gallery's owner (or staff) said the box holds no face: a label as strong as REJECT.
        NOT_FACE = "not_face", "Not a face"

    face = models.ForeignKey(Face, on_delete=models.CASCADE, related_name="review_decisions")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    decision = models.CharField(max_length=10, choices=Decision.choices)
    ood_score = models.FloatField(null=True, blank=True)
    reasons = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.decision} of face {self.face_id}"
