"""Match decisions for faces against people: pure logic, no ORM, no settings.

A face is tagged automatically (person set, assignment "suggested") when its nearest person is
within the calibrated `same` distance and clearly nearer than the runner-up, offered as a
suggestion when it is within `possible`, and left unknown otherwise (limits inclusive, as in
recognition/core/calibration.py). The faces of one photo are
assigned together, one person at most once, by a minimum-cost assignment: two faces in one photo
are never the same person, so the matcher never proposes it (the database would refuse it anyway).

`recognition/actions/identity.py: do_match_faces` joins this to the database and the staged search.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from recognition.core.calibration import Thresholds
from recognition.core.geometry import euclidean_distances

# A look-alike relative is the classic wrong auto-tag: when the runner-up person is almost as
# near as the best one, the face is only suggested, so a person confirms it.
DEFAULT_MARGIN = 0.04

# People per face the matcher asks the search for: enough neighbours for the look-alike margin
# after "not this person" exclusions.
MATCH_TOP_N = 4


class Decision(enum.StrEnum):
    AUTO = "auto"
    SUGGEST = "suggest"
    UNKNOWN = "unknown"


class Verdict(enum.StrEnum):
    """What a search result says about one candidate."""

    SAME = "same"
    POSSIBLE = "possible"
    UNKNOWN = "unknown"

    @property
    def label(self) -> str:
        return {"same": "Same person", "possible": "Possibly", "unknown": "Unknown"}[self.value]


@dataclass(frozen=True)
class Candidate:
    """A person near a face, with the template face that made them near."""

    person_id: int
    distance: float
    via_face_id: int | None = None


@dataclass(frozen=True)
class FaceMatch:
    face_id: int
    decision: Decision
    person_id: int | None = None
    distance: float | None = None
    via_face_id: int | None = None


def verdict(distance: float, same: float, possible: float) -> Verdict:
    if distance <= same:
        return Verdict.SAME
    if distance <= possible:
        return Verdict.POSSIBLE
    return Verdict.UNKNOWN


def usable_candidates(
    candidates: Iterable[Candidate],
    *,
    banned_people: Iterable[int] = (),
    banned_faces: Iterable[int] = (),
) -> list[Candidate]:
    """The nearest usable template per person, nearest first.

    `banned_people`: "not this person" decisions for the face. `banned_faces`: template faces
    that once caused a wrong suggestion for it; they never count for it again, even under
    another person (after a merge or a re-tag).
    """
    people = set(banned_people)
    faces = set(banned_faces)
    best: dict[int, Candidate] = {}
    for cand in candidates:
        if cand.person_id in people or (cand.via_face_id is not None and cand.via_face_id in faces):
            continue
        held = best.get(cand.person_id)
        if held is None or cand.distance < held.distance:
            best[cand.person_id] = cand
    return sorted(best.values(), key=lambda c: (c.distance, c.person_id))


def assign_photo(
    faces: Mapping[int, Sequence[Candidate]],
    *,
    same: float,
    possible: float,
    taken_people: Iterable[int] = (),
    margin: float = DEFAULT_MARGIN,
    face_limits: Mapping[int, Thresholds] | None = None,
    person_caps: Mapping[int, float] | None = None,
) -> dict[int, FaceMatch]:
    """Decide every face of one photo at once.

    `faces`: face id -> usable candidates (see `usable_candidates`). `taken_people`: people
    already held by the photo's other faces (confirmed tags), never offered again.
    `face_limits`: per face, limits of its own instead of `same` / `possible` (the library's
    cohort-normalised limits, `calibration.Limits.for_face`). `person_caps`: people whose own
    spread caps the distance of an automatic tag (`calibration.person_cap`).
    Leaving a face unknown costs just over its `possible`, so a face takes any person within
    it, and the faces share the people so that the summed distance is least.
    """
    taken = set(taken_people)
    face_ids = list(faces)
    limits = face_limits or {}
    # (same, possible) per face.
    own = {
        fid: (limits[fid].same, limits[fid].possible) if fid in limits else (same, possible)
        for fid in face_ids
    }
    options = {
        fid: [c for c in faces[fid] if c.person_id not in taken and c.distance <= own[fid][1]]
        for fid in face_ids
    }
    people = sorted({c.person_id for cands in options.values() for c in cands})
    result = {fid: FaceMatch(face_id=fid, decision=Decision.UNKNOWN) for fid in face_ids}
    if not people:
        return result
    column = {pid: j for j, pid in enumerate(people)}
    n, m = len(face_ids), len(people)
    # Columns m.. are one private "unknown" per face; anything not offered costs more than it.
    worst = max(own[fid][1] for fid in face_ids) + 1e-6
    cost = np.full((n, m + n), worst + 1.0, dtype=np.float64)
    by_face: dict[int, dict[int, Candidate]] = {}
    for i, fid in enumerate(face_ids):
        cost[i, m + i] = own[fid][1] + 1e-6
        by_face[fid] = {}
        for cand in options[fid]:
            cost[i, column[cand.person_id]] = cand.distance
            by_face[fid][cand.person_id] = cand
    rows, cols = linear_sum_assignment(cost)
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        fid = face_ids[i]
        if j >= m:
            continue
        chosen = by_face[fid].get(people[j])
        if chosen is None:
            continue
        decision = Decision.SUGGEST
        limit = min(own[fid][0], (person_caps or {}).get(chosen.person_id, own[fid][0]))
        if chosen.distance <= limit:
            runner_up = next(
                (c.distance for c in faces[fid] if c.person_id != chosen.person_id), None
            )
            if runner_up is None or runner_up - chosen.distance >= margin:
                decision = Decision.AUTO
        result[fid] = FaceMatch(
            face_id=fid,
            decision=decision,
            person_id=chosen.person_id,
            distance=chosen.distance,
            via_face_id=chosen.via_face_id,
        )
    return result


def cluster_faces(
    embeddings: np.ndarray,
    threshold: float,
    *,
    photo_ids: Sequence[int] | None = None,
) -> list[list[int]]:
    """Groups of row indices whose faces are probably one person, largest group first.

    Average linkage, stopped at `threshold`: two groups join while the mean distance between
    their members is under it, which does not chain look-alikes the way single linkage does.
    With `photo_ids`, two groups holding faces of the same photo never join (two faces in one
    photo are two people). Rows in a group keep their input order.
    """
    n = len(embeddings)
    if n == 0:
        return []
    # Sums of member-to-member distances between groups (Lance-Williams for average linkage),
    # with each row's nearest group cached so a merge only recomputes the rows it touched.
    total = euclidean_distances(embeddings, embeddings)
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    blocked = np.eye(n, dtype=bool)
    if photo_ids is not None:
        arr = np.asarray(photo_ids)
        blocked |= arr[:, None] == arr[None, :]
    members: list[list[int]] = [[i] for i in range(n)]

    def avg_row(i: int) -> np.ndarray:
        row: np.ndarray = total[i] / (size[i] * size)
        row[blocked[i] | ~alive] = np.inf
        return row

    avg = np.stack([avg_row(i) for i in range(n)])
    best = avg.argmin(axis=1)
    best_d = avg[np.arange(n), best]
    while True:
        masked = np.where(alive, best_d, np.inf)
        a = int(masked.argmin())
        if not np.isfinite(masked[a]) or masked[a] >= threshold:
            break
        b = int(best[a])
        a, b = min(a, b), max(a, b)
        total[a] += total[b]
        total[:, a] = total[a]
        size[a] += size[b]
        alive[b] = False
        blocked[a] |= blocked[b]
        blocked[:, a] = blocked[a]
        members[a] = sorted(members[a] + members[b])
        avg[a] = avg_row(a)
        avg[:, a] = avg[a]
        avg[:, b] = np.inf
        avg[b] = np.inf
        best[a] = int(avg[a].argmin())
        best_d[a] = avg[a, best[a]]
        stale = np.flatnonzero(alive & ((best == a) | (best == b)))
        for i in stale:
            best[i] = int(avg[i].argmin())
            best_d[i] = avg[i, best[i]]
        closer = np.flatnonzero(alive & (avg[:, a] < best_d))
        best[closer] = a
        best_d[closer] = avg[closer, a]
    groups = [members[i] for i in range(n) if alive[i]]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return groups


def group_distances(embeddings: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Mean member-to-member distance between every two groups of rows (the average-linkage
    distance `cluster_faces` stops at); the diagonal is infinite."""
    k = len(groups)
    if k == 0:
        return np.zeros((0, 0))
    member = np.zeros((k, len(embeddings)))
    for g, rows in enumerate(groups):
        member[g, list(rows)] = 1.0
    sums = member @ euclidean_distances(embeddings, embeddings) @ member.T
    sizes = member.sum(1)
    mean: np.ndarray = sums / np.outer(sizes, sizes)
    np.fill_diagonal(mean, np.inf)
    return mean
