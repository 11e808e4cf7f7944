"""Verification (LFW protocol), closed-set and open-set identification: pure numpy metrics.

Distances are Euclidean on the raw (not normalised) embeddings, dlib's convention.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from evaluation.folder import LabeledEmbeddings
from recognition.core.geometry import euclidean_distances

FPIR_TARGETS = (0.01, 0.05, 0.10)
DLIB_THRESHOLD = 0.6


# ---------------------------------------------------------------------------------------------
# Verification (LFW protocol)


@dataclass(frozen=True)
class Pairs:
    first: list[str]  # relative paths "<name>/<name>_<NNNN>.jpg"
    second: list[str]
    same: np.ndarray  # (P,) bool
    fold: np.ndarray  # (P,) int in 0..9


def read_pairs(path: pathlib.Path, n_folds: int = 10) -> Pairs:
    """Read an LFW pairs file: `name i j` (same) or `name1 i name2 j` (different), 1-based.

    LFW's pairs files list each fold as a block of same pairs followed by a block of different
    pairs; that structure gives the folds. A file without it is cut into n_folds equal blocks.
    """

    def image(name: str, number: str) -> str:
        return f"{name}/{name}_{int(number):04d}.jpg"

    first, second, same = [], [], []
    for line in pathlib.Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            first.append(image(parts[0], parts[1]))
            second.append(image(parts[0], parts[2]))
            same.append(True)
        elif len(parts) == 4:
            first.append(image(parts[0], parts[1]))
            second.append(image(parts[2], parts[3]))
            same.append(False)
        # Other lines (the "10 300" header of the full file, blanks) carry no pair.
    same_arr = np.array(same, dtype=bool)
    starts = np.flatnonzero(same_arr[1:] & ~same_arr[:-1]) + 1  # a same pair after a different
    fold = np.zeros(len(same_arr), dtype=np.int64)
    for start in starts:
        fold[start:] += 1
    if len(starts) + 1 != n_folds:
        fold = np.arange(len(same_arr)) * n_folds // max(len(same_arr), 1)
    return Pairs(first, second, same_arr, fold)


@dataclass(frozen=True)
class PairDistances:
    distances: np.ndarray  # (P,) float64; inf where either image has no face
    same: np.ndarray
    fold: np.ndarray
    missing_face: int  # pairs scored as "different" because a face was not found
    missing_file: int  # pairs dropped because an image is not in the folder


def pair_distances(data: LabeledEmbeddings, pairs: Pairs) -> PairDistances:
    """Distances for the pairs whose images are in `data`; a missed face gives distance inf."""
    index = data.index()
    keep = [
        k
        for k, (a, b) in enumerate(zip(pairs.first, pairs.second, strict=True))
        if a in index and b in index
    ]
    ia = np.array([index[pairs.first[k]] for k in keep], dtype=np.int64)
    ib = np.array([index[pairs.second[k]] for k in keep], dtype=np.int64)
    ok = data.found[ia] & data.found[ib]
    diff = data.embeddings[ia].astype(np.float64) - data.embeddings[ib].astype(np.float64)
    distances = np.where(ok, np.linalg.norm(diff, axis=1), np.inf)
    return PairDistances(
        distances=distances,
        same=pairs.same[keep],
        fold=pairs.fold[keep],
        missing_face=int((~ok).sum()),
        missing_file=len(pairs.same) - len(keep),
    )


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The threshold t maximising accuracy of "same person iff distance < t".

    Candidates are midpoints between consecutive finite distances (and just outside the
    range); the lowest of equally good candidates wins.
    """
    finite = np.sort(np.unique(distances[np.isfinite(distances)]))
    if finite.size == 0:
        return DLIB_THRESHOLD
    candidates = np.concatenate(
        [[finite[0] - 1e-6], (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1e-6]]
    )
    same_sorted = np.sort(distances[same])
    diff_sorted = np.sort(distances[~same])
    true_accepts = np.searchsorted(same_sorted, candidates, side="left")
    true_rejects = len(diff_sorted) - np.searchsorted(diff_sorted, candidates, side="left")
    return float(candidates[int(np.argmax(true_accepts + true_rejects))])


def accuracy_at(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((distances < threshold) == same)) if len(same) else float("nan")


@dataclass(frozen=True)
class VerificationResult:
    accuracy: float  # mean over folds, threshold chosen on the other folds
    accuracy_std: float  # standard deviation over folds
    fold_accuracies: tuple[float, ...]
    thresholds: tuple[float, ...]
    fixed_threshold: float
    accuracy_at_fixed: float  # over all pairs
    pairs: int
    same_pairs: int
    missing_face: int
    missing_file: int


def verification_10fold(
    distances: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    *,
    fixed_threshold: float = DLIB_THRESHOLD,
    missing_face: int = 0,
    missing_file: int = 0,
) -> VerificationResult:
    """LFW protocol: for each fold, pick the threshold on the other folds and test on it."""
    accuracies, thresholds = [], []
    for k in np.unique(folds):
        test = folds == k
        threshold = best_threshold(distances[~test], same[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(distances[test], same[test], threshold))
    return VerificationResult(
        accuracy=float(np.mean(accuracies)),
        accuracy_std=float(np.std(accuracies)),
        fold_accuracies=tuple(accuracies),
        thresholds=tuple(thresholds),
        fixed_threshold=fixed_threshold,
        accuracy_at_fixed=accuracy_at(distances, same, fixed_threshold),
        pairs=len(same),
        same_pairs=int(same.sum()),
        missing_face=missing_face,
        missing_file=missing_file,
    )


# ---------------------------------------------------------------------------------------------
# Identification


@dataclass(frozen=True)
class Split:
    gallery: np.ndarray  # indices into the dataset
    probes: np.ndarray  # mated searches: their identity is enrolled
    nonmated: np.ndarray  # searches of identities never enrolled (open set); empty if closed


def closed_set_split(
    labels: np.ndarray,
    found: np.ndarray,
    *,
    probe_every: int = 2,
    seed: int | None = None,
    unenrolled: Iterable[int] = (),
) -> Split:
    """Every `probe_every`-th image (the 2nd, 4th, ...) of each identity with 2+ usable images
    is a probe, the rest and all single-image identities form the gallery.

    Only images with a face take part. Images keep file order unless a seed shuffles them
    within each identity. Identities in `unenrolled` go entirely to `nonmated`.
    """
    rng = np.random.default_rng(seed) if seed is not None else None
    unenrolled_set = set(unenrolled)
    gallery, probes, nonmated = [], [], []
    usable = np.flatnonzero(found)
    order = np.argsort(labels[usable], kind="stable")
    usable = usable[order]
    ids, starts = np.unique(labels[usable], return_index=True)
    for label, members in zip(ids, np.split(usable, starts[1:]), strict=True):
        if int(label) in unenrolled_set:
            nonmated.extend(members)
            continue
        if rng is not None:
            members = rng.permutation(members)
        if len(members) < 2:
            gallery.extend(members)
            continue
        is_probe = np.arange(len(members)) % probe_every == probe_every - 1
        probes.extend(members[is_probe])
        gallery.extend(members[~is_probe])
    return Split(_indices(gallery), _indices(probes), _indices(nonmated))


def _indices(values: Sequence[int]) -> np.ndarray:
    return np.sort(np.array(values, dtype=np.int64))


def open_set_split(
    labels: np.ndarray,
    found: np.ndarray,
    *,
    unenrolled_share: float = 0.2,
    seed: int = 0,
    probe_every: int = 2,
) -> tuple[Split, np.ndarray]:
    """A closed-set split where a seeded share of the multi-image identities is never enrolled.

    Returns the split and the unenrolled labels.
    """
    counts = np.bincount(labels[found], minlength=int(labels.max(initial=-1)) + 1)
    multi = np.flatnonzero(counts >= 2)
    n_out = round(unenrolled_share * len(multi))
    out = np.sort(np.random.default_rng(seed).choice(multi, size=n_out, replace=False))
    split = closed_set_split(labels, found, probe_every=probe_every, unenrolled=out.tolist())
    return split, out


@dataclass(frozen=True)
class GalleryIndex:
    """A gallery prepared once for brute-force search: sorted by identity."""

    embeddings: np.ndarray  # (G, D) float64, grouped by identity
    ids: np.ndarray  # (I,) identity labels, ascending
    starts: np.ndarray  # (I,) first row of each identity


def gallery_index(gallery: np.ndarray, gallery_labels: np.ndarray) -> GalleryIndex:
    order = np.argsort(gallery_labels, kind="stable")
    ids, starts = np.unique(gallery_labels[order], return_index=True)
    g = np.ascontiguousarray(gallery[order], dtype=np.float64)
    return GalleryIndex(g, ids, starts)


def search_identities(index: GalleryIndex, probes: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(P, I) distance from each probe to each identity's nearest gallery image."""
    out = np.empty((len(probes), len(index.ids)), dtype=np.float64)
    if not len(index.ids):
        return out
    for s in range(0, len(probes), chunk):
        d = euclidean_distances(probes[s : s + chunk], index.embeddings)
        out[s : s + chunk] = np.minimum.reduceat(d, index.starts, axis=1)
    return out


def identity_distances(
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(identities, (P, I) distance from each probe to each identity's nearest gallery image)."""
    index = gallery_index(gallery, gallery_labels)
    return index.ids, search_identities(index, probes)


@dataclass(frozen=True)
class TopK:
    labels: np.ndarray  # (P, k) identity labels, nearest first; -1 where fewer identities
    distances: np.ndarray  # (P, k) distance to that identity's nearest gallery image


def knn_top_k(
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, k: int = 5
) -> TopK:
    """1-NN over all gallery images, ranked by identity: the k nearest distinct identities."""
    ids, dist = identity_distances(gallery, gallery_labels, probes)
    return top_k_identities(ids, dist, k)


def top_k_identities(ids: np.ndarray, dist: np.ndarray, k: int = 5) -> TopK:
    """The k nearest identities from a (P, I) identity distance matrix."""
    kk = min(k, len(ids))
    labels = np.full((len(dist), k), -1, dtype=np.int64)
    distances = np.full((len(dist), k), np.inf)
    if kk:
        part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
        part_d = np.take_along_axis(dist, part, axis=1)
        order = np.argsort(part_d, axis=1, kind="stable")
        labels[:, :kk] = ids[np.take_along_axis(part, order, axis=1)]
        distances[:, :kk] = np.take_along_axis(part_d, order, axis=1)
    return TopK(labels, distances)


def identity_ranks(
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, probe_labels: np.ndarray
) -> np.ndarray:
    """1-based rank of each probe's true identity among all gallery identities (0: absent)."""
    ids, dist = identity_distances(gallery, gallery_labels, probes)
    if not len(ids):
        return np.zeros(len(probes), dtype=np.int64)
    column = np.searchsorted(ids, probe_labels)
    present = (column < len(ids)) & (ids[np.minimum(column, len(ids) - 1)] == probe_labels)
    true_d = dist[np.arange(len(probes)), np.minimum(column, len(ids) - 1)]
    ranks = 1 + (dist < true_d[:, None]).sum(axis=1)
    return np.where(present, ranks, 0)


def cmc_curve(ranks: np.ndarray, max_rank: int = 20) -> np.ndarray:
    """Share of probes whose identity is within rank r, for r = 1..max_rank."""
    r = np.arange(1, max_rank + 1)
    hit = (ranks[:, None] >= 1) & (ranks[:, None] <= r[None, :])
    return hit.mean(axis=0) if len(ranks) else np.zeros(max_rank)


@dataclass(frozen=True)
class IdentificationResult:
    top1: float
    top5: float
    cmc: tuple[float, ...]  # ranks 1..len(cmc)
    probes: int
    gallery_images: int
    gallery_identities: int
    ms_per_query: float  # one probe at a time against the whole gallery


def time_per_query(
    gallery: np.ndarray,
    gallery_labels: np.ndarray,
    probes: np.ndarray,
    n: int = 50,
    rounds: int = 5,
) -> float:
    """Milliseconds to search one probe alone (no batching) for its top 5 identities in a
    prepared gallery: the median over n probes, in the fastest of `rounds` rounds. On a shared
    machine, whole rounds slow down when other processes hold the cores; the fastest round is
    the estimate least disturbed by them (as timeit does)."""
    if not len(probes) or not len(gallery):
        return float("nan")
    index = gallery_index(gallery, gallery_labels)
    medians = []
    for _ in range(rounds):
        samples = []
        for probe in probes[:n]:
            t0 = time.perf_counter()
            top_k_identities(index.ids, search_identities(index, probe[None, :]), k=5)
            samples.append(time.perf_counter() - t0)
        medians.append(float(np.median(samples)))
    return 1000 * min(medians)


def closed_set_identification(
    embeddings: np.ndarray, labels: np.ndarray, split: Split, max_rank: int = 20
) -> IdentificationResult:
    gallery, gallery_labels = embeddings[split.gallery], labels[split.gallery]
    ranks = identity_ranks(gallery, gallery_labels, embeddings[split.probes], labels[split.probes])
    cmc = cmc_curve(ranks, max_rank)
    return IdentificationResult(
        top1=float(cmc[0]),
        top5=float(cmc[min(4, max_rank - 1)]),
        cmc=tuple(float(c) for c in cmc),
        probes=len(split.probes),
        gallery_images=len(split.gallery),
        gallery_identities=len(np.unique(gallery_labels)),
        ms_per_query=time_per_query(gallery, gallery_labels, embeddings[split.probes]),
    )


# ---------------------------------------------------------------------------------------------
# Open-set identification (NIST FRVT definitions, rank 1)


@dataclass(frozen=True)
class OperatingPoint:
    fpir_target: float
    threshold: float  # a candidate is returned when its distance < threshold
    fpir: float  # share of non-mated searches returning any candidate below threshold
    fnir: float  # share of mated searches where the mate is not rank 1 below threshold


@dataclass(frozen=True)
class OpenSetSearches:
    mated_distance: np.ndarray  # rank-1 distance of each mated search
    mated_correct: np.ndarray  # rank-1 identity is the mate
    nonmated_distance: np.ndarray  # rank-1 distance of each non-mated search


def open_set_searches(
    embeddings: np.ndarray,
    labels: np.ndarray,
    split: Split,
    found: np.ndarray | None = None,
) -> OpenSetSearches:
    """Rank-1 answers of the split's searches. With `found` (a split drawn from the labels,
    `evaluation.openset.label_split`), an image without a face gives no template, a mated probe
    without one is a miss at every threshold and a stranger's without one is never a false
    alarm (its distance is inf)."""
    ok = np.ones(len(labels), dtype=bool) if found is None else np.asarray(found, dtype=bool)
    gallery_rows = split.gallery[ok[split.gallery]]
    gallery, gallery_labels = embeddings[gallery_rows], labels[gallery_rows]
    mated = knn_top_k(gallery, gallery_labels, embeddings[split.probes], k=1)
    nonmated = knn_top_k(gallery, gallery_labels, embeddings[split.nonmated], k=1)
    mated_ok = ok[split.probes]
    return OpenSetSearches(
        mated_distance=np.where(mated_ok, mated.distances[:, 0], np.inf),
        mated_correct=mated_ok & (mated.labels[:, 0] == labels[split.probes]),
        nonmated_distance=np.where(ok[split.nonmated], nonmated.distances[:, 0], np.inf),
    )


def fpir_fnir(searches: OpenSetSearches, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    thresholds = np.asarray(thresholds, dtype=np.float64)
    nonmated = np.sort(searches.nonmated_distance)
    hits = np.sort(searches.mated_distance[searches.mated_correct])
    n_nm = max(len(nonmated), 1)
    n_m = max(len(searches.mated_distance), 1)
    fpir = np.searchsorted(nonmated, thresholds, side="left") / n_nm
    fnir = 1.0 - np.searchsorted(hits, thresholds, side="left") / n_m
    return fpir, fnir


def open_set_fnir_at_fpir(
    searches: OpenSetSearches, targets: Sequence[float] = FPIR_TARGETS
) -> tuple[OperatingPoint, ...]:
    """For each FPIR target, the largest threshold whose FPIR does not exceed it, and its FNIR."""
    nonmated = np.sort(searches.nonmated_distance)
    points = []
    for target in targets:
        k = int(np.floor(target * len(nonmated) + 1e-9))
        threshold = float(nonmated[k]) if k < len(nonmated) else float("inf")
        fpir, fnir = fpir_fnir(searches, np.array([threshold]))
        points.append(OperatingPoint(target, threshold, float(fpir[0]), float(fnir[0])))
    return tuple(points)


def det_curve(searches: OpenSetSearches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FPIR, FNIR) at every distinct rank-1 distance."""
    thresholds = np.unique(
        np.concatenate([searches.mated_distance, searches.nonmated_distance, [np.inf]])
    )
    fpir, fnir = fpir_fnir(searches, thresholds)
    return thresholds, fpir, fnir


@dataclass(frozen=True)
class OpenSetResult:
    points: tuple[OperatingPoint, ...]
    mated_searches: int
    nonmated_searches: int
    unenrolled_identities: int
    gallery_images: int
    gallery_identities: int
