"""Person templates kept in sync with tags, reviews and deletions.

A template is the embedding of a face that is CONFIRMED for a person and trusted
(`Face.is_trusted`), stored rotated by the active basis of its embedder version
(recognition/index/bases.py). The search (recognition/index/search.py) treats every template of a
person as a neighbour (k-NN over all of them).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from django.db import transaction

from gallery.models import Face
from recognition.index.bases import active_basis, lock_version
from recognition.models import Template


def _eligible(row: dict) -> bool:
    trust = Face(review_status=row["review_status"], ood_status=row["ood_status"])
    return (
        row["person_id"] is not None
        and row["assignment"] == Face.Assignment.CONFIRMED
        and row["embedding"] is not None
        and bool(row["embedder_version"])
        and trust.is_trusted
    )


def sync_face_templates(face_ids: Iterable[int]) -> None:
    """Create, update or delete the template row of each face so it matches the face.

    Idempotent, and a fixed number of queries whatever the number of faces (tag, untag, review,
    delete and merge all call it with the faces they touched; ids of deleted faces are fine).
    """
    ids = sorted({int(pk) for pk in face_ids})
    if not ids:
        return
    with transaction.atomic():
        rows = list(
            Face.objects.filter(pk__in=ids).values(
                "pk",
                "person_id",
                "assignment",
                "review_status",
                "ood_status",
                "embedding",
                "embedder_version",
                "photo__gallery_id",
                "photo__gallery__owner_id",
            )
        )
        wanted = [row for row in rows if _eligible(row)]
        Template.objects.filter(face_id__in=ids).exclude(
            face_id__in=[row["pk"] for row in wanted]
        ).delete()
        by_version: dict[str, list[dict]] = {}
        for row in wanted:
            by_version.setdefault(row["embedder_version"], []).append(row)
        for version, group in by_version.items():
            lock_version(version, exclusive=False)
            basis_id, basis = active_basis(version)
            rotated = basis.rotate(np.stack([np.asarray(r["embedding"]) for r in group]))
            Template.objects.bulk_create(
                [
                    Template(
                        face_id=row["pk"],
                        person_id=row["person_id"],
                        gallery_id=row["photo__gallery_id"],
                        owner_id=row["photo__gallery__owner_id"],
                        embedder_version=version,
                        basis_id=basis_id,
                        vector=vector,
                    )
                    for row, vector in zip(group, rotated, strict=True)
                ],
                update_conflicts=True,
                unique_fields=["face"],
                update_fields=[
                    "person",
                    "gallery",
                    "owner",
                    "embedder_version",
                    "basis",
                    "vector",
                    "updated_at",
                ],
            )
