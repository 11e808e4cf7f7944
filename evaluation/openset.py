"""Open-set decisions by library size, made by the app's own decision code.

The matcher (`recognition/actions/identity.py: do_match_faces`) takes the people nearest to a
face (`matching.MATCH_TOP_N`, nearest template each), sizes its limits to the number of people
the searcher can see (`calibration.StrangerModel.limits`, per-person limits from
`calibration.person_cap`) and decides with `matching.assign_photo`. This module runs exactly
those functions on labelled embeddings, with the search done exactly in numpy instead of the
staged PostgreSQL search (which agrees with exact search on nearly every probe, BENCHMARKS.md
"search").

Everything here is drawn from the labels, never from what a pipeline detected, so pipelines are
compared on one split: an image where a pipeline found no face is a miss when it is a mated
probe, is never wrongly tagged when it is a stranger, and gives no template in the gallery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.folder import LabeledEmbeddings
from evaluation.metrics import Split, closed_set_split, gallery_index, search_identities
from recognition.core import calibration, matching
from recognition.core.calibration import Limits, Score, StrangerModel, Thresholds
from recognition.core.geometry import euclidean_distances

LIBRARY_SIZES: tuple[int | None, ...] = (10, 100, 1000, None)  # None: every enrolled identity
CALIBRATION_SIZES = (1, 3, 10, 30, 100, 300, 1000, 3000)


def label_split(
    labels: np.ndarray,
    *,
    unenrolled_share: float = 0.2,
    seed: int = 1,
    probe_every: int = 2,
) -> tuple[Split, np.ndarray]:
    """The open-set split from the labels alone: a seeded share of the identities with 2+
    images is never enrolled (their images are the strangers' searches), every
    `probe_every`-th image of the other multi-image identities is a mated probe, the rest and
    all single-image identities are the gallery. Returns the split and the unenrolled labels.

    The same labels give the same split whatever a pipeline detected.
    """
    labels = np.asarray(labels)
    everything = np.ones(len(labels), dtype=bool)
    counts = np.bincount(labels, minlength=int(labels.max(initial=-1)) + 1)
    multi = np.flatnonzero(counts >= 2)
    n_out = round(unenrolled_share * len(multi))
    out = np.sort(np.random.default_rng(seed).choice(multi, size=n_out, replace=False))
    split = closed_set_split(labels, everything, probe_every=probe_every, unenrolled=out.tolist())
    return split, out


# ---------------------------------------------------------------------------------------------
# Calibration: the stranger model


def identity_matrix(
    embeddings: np.ndarray, labels: np.ndarray, found: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For the images `rows` that have a face: (image rows, identities, (R, I) distance from
    each image to each identity's nearest *other* image). An identity's own column holds the
    distance to its nearest other image (inf for a single image)."""
    rows = np.asarray(rows)[found[np.asarray(rows)]]
    index = gallery_index(embeddings[rows], labels[rows])
    dist = search_identities(index, embeddings[rows])
    own = np.searchsorted(index.ids, labels[rows])
    # The identity's own column: the nearest *other* image (not the image itself, at 0).
    own_d = np.full(len(rows), np.inf)
    for label in np.unique(labels[rows]):
        members = np.flatnonzero(labels[rows] == label)
        if len(members) < 2:
            continue
        d = euclidean_distances(embeddings[rows[members]], embeddings[rows[members]])
        np.fill_diagonal(d, np.inf)
        own_d[members] = d.min(axis=1)
    dist[np.arange(len(rows)), own] = own_d
    return rows, index.ids, dist


def best_scores(sub: np.ndarray, score: Score, margin: float | None = None) -> np.ndarray:
    """The score of each row's best person (see `calibration.Score`) from an (R, N) matrix of
    person distances; with `margin`, inf where the runner-up is not that much further (the
    matcher never tags those automatically)."""
    k = min(max(score.cohort, 1) + 1, sub.shape[1])
    top = np.sort(np.partition(sub, k - 1, axis=1)[:, :k], axis=1)
    out: np.ndarray = top[:, 0] - score.offsets(top)
    if margin is not None and top.shape[1] > 1:
        out = np.where(top[:, 1] - top[:, 0] >= margin, out, np.inf)
    return out


def stranger_scores(
    dist: np.ndarray,
    own: np.ndarray,
    size: int,
    score: Score,
    *,
    rounds: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Best scores of simulated stranger searches against libraries of `size` identities, and
    the same with inf where the matcher could not tag automatically (`matching.DEFAULT_MARGIN`
    over the runner-up): each round draws one library at random; every image whose identity is
    not in it is a stranger's search. `own[r]` is the column of row r's identity."""
    rng = np.random.default_rng(seed)
    n_ids = dist.shape[1]
    out, auto = [], []
    for _ in range(rounds):
        if size >= n_ids - 1:
            # Every identity but the stranger's own: one deterministic library per stranger.
            sub = dist.copy()
            sub[np.arange(len(dist)), own] = np.inf
        else:
            library = rng.choice(n_ids, size=size, replace=False)
            inside = np.zeros(n_ids, dtype=bool)
            inside[library] = True
            sub = dist[np.ix_(~inside[own], library)]
        out.append(best_scores(sub, score))
        auto.append(best_scores(sub, score, matching.DEFAULT_MARGIN))
        if size >= n_ids - 1:
            break
    return np.concatenate(out), np.concatenate(auto)


def fit_model(
    embeddings: np.ndarray,
    labels: np.ndarray,
    found: np.ndarray,
    rows: np.ndarray,
    *,
    embedder_version: str,
    ceiling: Thresholds,
    score: Score = calibration.COHORT,
    sizes: Sequence[int] = CALIBRATION_SIZES,
    searches_per_size: int = 200_000,
    seed: int = 0,
    fitted_on: dict[str, object] | None = None,
) -> StrangerModel:
    """The stranger model of `manage.py calibrate`: every labelled face in `rows` plays the
    stranger against random libraries of each size drawn from the other identities. The
    cohort's `fill` (for libraries of fewer people than the cohort) is the median distance
    between different identities' faces."""
    rows, ids, dist = identity_matrix(embeddings, labels, found, rows)
    own = np.searchsorted(ids, labels[rows])
    if score.cohort:
        others = dist.copy()
        others[np.arange(len(rows)), own] = np.nan
        score = dataclasses.replace(score, fill=round(float(np.nanmedian(others)), 4))
    kept_sizes = sorted({n for n in sizes if n < len(ids) - 1} | {len(ids) - 1})
    pairs = [
        stranger_scores(
            dist,
            own,
            n,
            score,
            rounds=max(1, searches_per_size // max(len(rows), 1)),
            seed=seed + n,
        )
        for n in kept_sizes
    ]
    meta = {"images": len(rows), "identities": len(ids), **(fitted_on or {})}
    return calibration.fit_stranger_model(
        [p[0] for p in pairs],
        kept_sizes,
        nearest_auto=[p[1] for p in pairs],
        embedder_version=embedder_version,
        ceiling=ceiling,
        score=score,
        fitted_on=meta,
    )


# ---------------------------------------------------------------------------------------------
# Decisions by library size


@dataclass(frozen=True)
class LibraryRow:
    size: int  # people in the library
    libraries: int  # libraries drawn
    same: float  # auto-tag limit on the score (see `calibration.Score`)
    possible: float  # suggestion limit on the score
    stranger_searches: int
    stranger_auto: float  # share of strangers' faces tagged automatically
    stranger_suggested: float  # share of strangers' faces given a suggestion (or a tag)
    mated_searches: int
    mated_auto_correct: float  # share of mated faces tagged with the right person
    mated_found: float  # tagged right or suggested right first ("suggestion recall")
    auto_precision: float  # right tags / all tags, strangers and mated faces at the split's mix
    mated_auto_wrong: float  # share of mated faces tagged as somebody else
    fnir_at_fpir_1: float  # FNIR at the largest limit with FPIR <= 1%, this library size


def _person_caps(
    embeddings: np.ndarray, labels: np.ndarray, gallery: np.ndarray
) -> dict[int, float]:
    """`calibration.person_cap` of each identity with `PERSON_MIN_FACES` gallery faces (what the
    matcher reads from confirmed templates)."""
    out: dict[int, float] = {}
    ids, counts = np.unique(labels[gallery], return_counts=True)
    for label in ids[counts >= calibration.PERSON_MIN_FACES]:
        rows = gallery[labels[gallery] == label]
        d = euclidean_distances(embeddings[rows], embeddings[rows])
        np.fill_diagonal(d, np.inf)
        cap = calibration.person_cap(d.min(axis=1).tolist())
        if cap is not None:
            out[int(label)] = cap
    return out


def decide(
    dist: np.ndarray,
    ids: np.ndarray,
    limits: Limits,
    person_caps: dict[int, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The matcher's decision for each search row of an identity-distance matrix, one face per
    photo: (decision per row, chosen identity (-1: none), best score)."""
    k = min(matching.MATCH_TOP_N, dist.shape[1])
    decisions = np.empty(len(dist), dtype=object)
    chosen = np.full(len(dist), -1, dtype=np.int64)
    if k == 0:
        decisions[:] = matching.Decision.UNKNOWN
        return decisions, chosen, np.full(len(dist), np.inf)
    part = np.argpartition(dist, k - 1, axis=1)[:, :k]
    part_d = np.take_along_axis(dist, part, axis=1)
    order = np.argsort(part_d, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top_d = np.take_along_axis(part_d, order, axis=1)
    for r in range(len(dist)):
        cands = matching.usable_candidates(
            matching.Candidate(int(ids[c]), float(d), None)
            for c, d in zip(top[r], top_d[r], strict=True)
            if np.isfinite(d)
        )
        match = matching.assign_photo(
            {0: cands},
            same=limits.ceiling.same,
            possible=limits.ceiling.possible,
            face_limits={0: limits.for_face([c.distance for c in cands])},
            person_caps=person_caps,
        )[0]
        decisions[r] = match.decision
        chosen[r] = match.person_id if match.person_id is not None else -1
    scores = top_d[:, 0] - limits.score.offsets(top_d)
    return decisions, chosen, np.where(np.isfinite(top_d[:, 0]), scores, np.inf)


def library_rows(
    embeddings: np.ndarray,
    labels: np.ndarray,
    found: np.ndarray,
    split: Split,
    model: StrangerModel | Limits,
    *,
    sizes: Sequence[int | None] = LIBRARY_SIZES,
    auto_rate: float = calibration.DEFAULT_AUTO_RATE,
    suggest_rate: float = calibration.DEFAULT_SUGGEST_RATE,
    per_person: bool = True,
    seed: int = 0,
    min_mated: int = 400,
) -> list[LibraryRow]:
    """Stranger auto-tag rate, auto-tag precision, suggestion recall and FNIR @ FPIR 1% for
    libraries of each size drawn from the enrolled identities (None: all of them).

    A library is a random set of enrolled identities with all their gallery images as
    templates; its mated searches are the probes of those identities, its strangers' searches
    every unenrolled image. Small libraries are drawn again until `min_mated` mated searches
    are pooled.
    """
    gallery = split.gallery[found[split.gallery]]
    index = gallery_index(embeddings[gallery], labels[gallery])
    enrolled = index.ids
    strangers = split.nonmated[found[split.nonmated]]
    n_strangers_all = len(split.nonmated)
    stranger_d = search_identities(index, embeddings[strangers])
    probes = split.probes
    probe_d = search_identities(index, embeddings[probes])
    probe_d[~found[probes]] = np.inf
    caps = _person_caps(embeddings, labels, gallery) if per_person else {}
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        n = len(enrolled) if size is None or size >= len(enrolled) else size
        # Fixed `Limits`: the matcher before limits were sized to the library.
        limits = model if isinstance(model, Limits) else model.limits(n, auto_rate, suggest_rate)
        s_dec, m_dec, m_ok, s_d1, m_d1, m_hit = [], [], [], [], [], []
        libraries = 0
        mated_count = 0
        while True:
            cols = (
                np.arange(len(enrolled))
                if n == len(enrolled)
                else rng.choice(len(enrolled), size=n, replace=False)
            )
            cols = np.sort(cols)
            ids = enrolled[cols]
            dec, chosen, d1 = decide(stranger_d[:, cols], ids, limits, caps)
            s_dec.append(dec)
            s_d1.append(d1)
            mine = np.isin(labels[probes], ids)
            dec, chosen, d1 = decide(probe_d[np.ix_(mine, cols)], ids, limits, caps)
            truth = labels[probes][mine]
            m_dec.append(dec)
            m_ok.append(chosen == truth)
            # Rank-1 identity right, for the FNIR sweep.
            first = ids[np.argmin(probe_d[np.ix_(mine, cols)], axis=1)]
            m_hit.append(first == truth)
            m_d1.append(d1)
            libraries += 1
            mated_count += int(mine.sum())
            if n == len(enrolled) or (mated_count >= min_mated and libraries >= 5):
                break
            if libraries >= 2000:
                break
        sd = np.concatenate(s_dec)
        md = np.concatenate(m_dec)
        mok = np.concatenate(m_ok)
        # Strangers whose face was not found are never tagged: they count in the denominator.
        n_s = libraries * n_strangers_all
        s_auto = int((sd == matching.Decision.AUTO).sum())
        s_any = int(((sd == matching.Decision.AUTO) | (sd == matching.Decision.SUGGEST)).sum())
        m_auto_ok = int(((md == matching.Decision.AUTO) & mok).sum())
        m_auto = int((md == matching.Decision.AUTO).sum())
        offered = (md == matching.Decision.AUTO) | (md == matching.Decision.SUGGEST)
        m_found = int((offered & mok).sum())
        n_m = len(md)
        # Precision at the split's own mix of strangers' and mated faces: every stranger is
        # searched in every library drawn, so pooling the raw counts would weigh strangers
        # (libraries x strangers) far above the mated faces of small libraries.
        mix = len(split.nonmated) / max(len(split.probes), 1)
        wrong = (m_auto - m_auto_ok) + (s_auto / max(n_s, 1)) * mix * n_m
        tags = m_auto_ok + wrong
        fnir = fnir_at_fpir(
            np.concatenate(s_d1), n_s, np.concatenate(m_d1), np.concatenate(m_hit), 0.01
        )
        rows.append(
            LibraryRow(
                size=n,
                libraries=libraries,
                same=limits.same,
                possible=limits.possible,
                stranger_searches=n_s,
                stranger_auto=s_auto / max(n_s, 1),
                stranger_suggested=s_any / max(n_s, 1),
                mated_searches=n_m,
                mated_auto_correct=m_auto_ok / max(n_m, 1),
                mated_found=m_found / max(n_m, 1),
                auto_precision=m_auto_ok / tags if tags else float("nan"),
                mated_auto_wrong=(m_auto - m_auto_ok) / max(n_m, 1),
                fnir_at_fpir_1=fnir,
            )
        )
    return rows


def fnir_at_fpir(
    stranger_d1: np.ndarray,
    n_strangers: int,
    mated_d1: np.ndarray,
    mated_hit: np.ndarray,
    target: float,
) -> float:
    """FNIR at the largest limit whose FPIR (strangers with any candidate within it, out of
    `n_strangers`) is at most `target`; rank-1 mated hits within the limit count as found."""
    nonmated = np.sort(stranger_d1[np.isfinite(stranger_d1)])
    k = int(np.floor(target * n_strangers + 1e-9))
    limit = float(nonmated[k]) if k < len(nonmated) else float("inf")
    hits = mated_hit & (mated_d1 < limit)
    return 1.0 - float(hits.sum()) / max(len(mated_d1), 1)


# ---------------------------------------------------------------------------------------------
# Scores tried for fewer misses (BENCHMARKS.md, "trust-fnir")


def _identity_scores(
    data: LabeledEmbeddings, split: Split, fuse: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(identities, (P, I) mated, (S, I) strangers) person distances over the split's gallery:
    the nearest template, or with `fuse` > 0 `(1 - fuse) * nearest + fuse * second nearest`
    for people with 2+ templates (score fusion over templates)."""
    gallery = split.gallery[data.found[split.gallery]]
    order = np.argsort(data.labels[gallery], kind="stable")
    gallery = gallery[order]
    ids, starts = np.unique(data.labels[gallery], return_index=True)
    ends = np.append(starts[1:], len(gallery))

    def score(rows: np.ndarray) -> np.ndarray:
        if not fuse:
            index = gallery_index(data.embeddings[gallery], data.labels[gallery])
            out = search_identities(index, data.embeddings[rows])
        else:
            d = euclidean_distances(data.embeddings[rows], data.embeddings[gallery])
            out = np.empty((len(rows), len(ids)))
            for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
                block = np.sort(d[:, a:b], axis=1)
                out[:, j] = (
                    block[:, 0] if b - a < 2 else (1 - fuse) * block[:, 0] + fuse * block[:, 1]
                )
        out[~data.found[rows]] = np.inf
        return out

    return ids, score(split.probes), score(split.nonmated)


def variant_fnir(
    data: LabeledEmbeddings,
    split: Split,
    score: Score,
    *,
    flip: bool = False,
    fuse: float = 0.0,
    target: float = 0.01,
) -> float:
    """FNIR at FPIR `target` with every enrolled identity in the library, for one way of
    scoring (plain or cohort-normalised, flip-averaged embeddings, fused templates)."""
    if flip:
        data = data.with_flip_tta()
    ids, mated, strangers = _identity_scores(data, split, fuse)
    m_best = best_scores(mated, score)
    s_best = best_scores(strangers, score)
    hit = (ids[np.argmin(mated, axis=1)] == data.labels[split.probes]) & np.isfinite(m_best)
    return fnir_at_fpir(s_best, len(split.nonmated), m_best, hit, target)


SCORE_VARIANTS: dict[str, dict[str, Any]] = {
    "nearest template, plain distance (the matcher before)": {"score": calibration.PLAIN},
    "+ flip-averaged embeddings": {"score": calibration.PLAIN, "flip": True},
    "+ score fusion, 0.75 nearest + 0.25 second nearest template": {
        "score": calibration.PLAIN,
        "fuse": 0.25,
    },
    "cohort-normalised, 3 next people, beta 0.5": {"score": Score(cohort=3, beta=0.5, fill=0.82)},
    "cohort-normalised, 3 next people, beta 0.75 (app)": {"score": calibration.COHORT},
    "cohort-normalised, 3 next people, beta 1.0": {"score": Score(cohort=3, beta=1.0, fill=0.82)},
    "cohort-normalised, 10 next people, beta 0.75": {
        "score": Score(cohort=10, beta=0.75, fill=0.82)
    },
    "cohort-normalised (app) + flip-averaged embeddings": {
        "score": calibration.COHORT,
        "flip": True,
    },
}
