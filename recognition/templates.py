"""Person templates kept in sync with tags, reviews and deletions."""

from __future__ import annotations

from collections.abc import Iterable


def sync_face_templates(face_ids: Iterable[int]) -> None:
    """Create, update or delete the template row of each face (interim: staged search pending)."""
    del face_ids
