"""Recognition state kept in PostgreSQL: PCA bases, person templates, review decisions, the
installed model versions and the re-embed jobs that move a library between them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from gallery.models import Face, Gallery, Person, Photo
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
    # Dimensionless: the basis's version fixes the length (128 for dlib, 512 for ArcFace).
    vector = VectorField()
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


class ModelVersion(models.Model):
    """An embedder version this installation can run: a built-in one, or an InsightFace pack the
    operator installed (`manage.py install_model`). At most one is active: new photos are
    processed with it and searches use its templates. With no active row the setting
    FACEWEB_EMBEDDER is the active version."""

    class Kind(models.TextChoices):
        BUILTIN = "builtin", "Built in"
        PACK = "pack", "InsightFace pack supplied by the operator"

    name = models.CharField(max_length=64, unique=True)  # the embedder version string
    kind = models.CharField(max_length=10, choices=Kind.choices)
    dim = models.PositiveIntegerField()
    metric = models.CharField(max_length=12, default="euclidean")
    # Pack: its folder under FACEWEB_MODELS_DIR and its files (role -> name, name -> sha256).
    path = models.CharField(max_length=255, blank=True)
    files = models.JSONField(default=dict, blank=True)
    licence = models.TextField(blank=True)
    licence_accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    licence_accepted_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)
    installed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="model_one_active"
            )
        ]

    def __str__(self) -> str:
        return self.name


class ReembedJob(models.Model):
    """Moving the library from `source_version` to `target_version` (one job runs at a time).

    The job stages new boxes and vectors per photo (StagedPhoto) while the source version keeps
    serving; `do_finish_reembed` then swaps every face to the target version in one transaction.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Re-embedding"
        SWITCHED = "switched", "Switched"
        FAILED = "failed", "Stopped by an error"
        CANCELLED = "cancelled", "Cancelled"

    source_version = models.CharField(max_length=64)
    target_version = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["state"], condition=Q(state="running"), name="reembed_one_running"
            )
        ]

    def __str__(self) -> str:
        return f"re-embed {self.source_version} -> {self.target_version} ({self.state})"


class StagedPhoto(models.Model):
    """One photo re-embedded under a job's target version, waiting for the switch.

    `face_ids` are the photo's faces when it was staged (a photo whose faces changed since is
    staged again); `faces` holds, per face of the target version, the face it replaces (or
    None for a new one), its box, landmarks, filter verdict and embedding.
    """

    job = models.ForeignKey(ReembedJob, on_delete=models.CASCADE, related_name="staged")
    photo = models.ForeignKey(Photo, on_delete=models.CASCADE, related_name="+")
    face_ids = models.JSONField(default=list)
    faces = models.JSONField(default=list)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["job", "photo"], name="staged_photo_once_per_job")
        ]

    def __str__(self) -> str:
        return f"photo {self.photo_id} staged for job {self.job_id}"
