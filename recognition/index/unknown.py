"""Unknown faces of a library grouped by likeness, for "Who is unknown?" and the people page.

A group is a cluster of unnamed, trusted, not ignored faces of one owner's galleries (average
linkage at the embedder's `same` distance, two faces of one photo never together). Each group
carries hints: the person its faces are suggested as, and another group it may be the same
person as (their average distance is within `possible`, so they would join under the looser
limit).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth.models import User
from django.db.models import QuerySet

from gallery.models import Face, Person, trusted_q
from recognition.core.calibration import thresholds
from recognition.core.matching import cluster_faces, group_distances

# At most this many faces (newest first) are grouped: a few hundred faces cluster in well under
# a second, and nobody names more groups than that in one sitting.
UNKNOWN_LIMIT = 600


@dataclass
class UnknownGroup:
    key: str  # stable while the group's newest face stays in it: "g<face id>"
    faces: list[Face]
    suggested_name: str = ""  # prefilled when most faces are suggested as one person
    near_person: Person | None = None  # some faces look like this person
    near_person_faces: int = 0  # how many of them
    near_group: UnknownGroup | None = field(default=None, repr=False)
    number: int = 0  # "group 3": its place in the list, biggest first, for hints to name it

    @property
    def size(self) -> int:
        return len(self.faces)

    @property
    def cover(self) -> Face:
        return self.faces[0]


def unknown_faces(owner: User) -> QuerySet[Face]:
    """Unnamed trusted faces of the owner's galleries that nobody ignored."""
    return Face.objects.filter(
        trusted_q(),
        photo__gallery__owner=owner,
        person__isnull=True,
        embedding__isnull=False,
    ).exclude(assignment=Face.Assignment.IGNORED)


def ignored_faces(owner: User) -> QuerySet[Face]:
    return Face.objects.filter(
        photo__gallery__owner=owner, assignment=Face.Assignment.IGNORED
    ).select_related("photo")


def unknown_groups(owner: User, limit: int = UNKNOWN_LIMIT) -> tuple[list[UnknownGroup], int]:
    """The owner's unknown faces grouped by likeness, largest group first, with hints.

    Returns the groups and how many unknown faces there are in all (only the newest `limit`
    are grouped).
    """
    unknown = unknown_faces(owner)
    total = unknown.count()
    faces = list(unknown.select_related("photo", "suggested_person").order_by("-id")[:limit])
    by_version: dict[str, list[Face]] = defaultdict(list)
    for face in faces:
        by_version[face.embedder_version].append(face)
    groups: list[UnknownGroup] = []
    for version, members in by_version.items():
        try:
            limits = thresholds(version)
        except LookupError:
            continue
        vectors = np.stack([np.asarray(f.embedding, dtype=np.float32) for f in members])
        rows = cluster_faces(vectors, limits.same, photo_ids=[f.photo_id for f in members])
        made = [_group([members[i] for i in r]) for r in rows]
        _link_near_groups(made, group_distances(vectors, rows), limits.possible)
        groups.extend(made)
    groups.sort(key=lambda g: (-g.size, -g.faces[0].pk))
    for number, group in enumerate(groups, start=1):
        group.number = number
    return groups, total


def _group(faces: list[Face]) -> UnknownGroup:
    names = Counter(f.suggested_person for f in faces if f.suggested_person_id is not None)
    top = names.most_common(1)
    person, count = top[0] if top else (None, 0)
    return UnknownGroup(
        key=f"g{faces[0].pk}",
        faces=faces,
        suggested_name=person.name if person is not None and count * 2 > len(faces) else "",
        near_person=person,
        near_person_faces=count,
    )


def _link_near_groups(groups: list[UnknownGroup], distances: np.ndarray, limit: float) -> None:
    """Point each group at the nearest other group within `limit`, if any. Two groups with
    faces in one photo are two people, so they are never hinted as one."""
    photos = [{f.photo_id for f in g.faces} for g in groups]
    for i, group in enumerate(groups):
        for j in np.argsort(distances[i]):
            if distances[i, j] > limit:
                break
            if j != i and not photos[i] & photos[j]:
                group.near_group = groups[int(j)]
                break
