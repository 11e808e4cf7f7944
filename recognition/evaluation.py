"""Offline evaluation on a labeled folder `<Person>/<image>` (LFW layout): verification,
closed-set and open-set identification, timings, and the JSON / Markdown / PNG report.

Pure: no Django, no settings. Every protocol step is its own function so other experiments
(k-NN with exclusion, staged k-NN) can reuse the splits and metrics and add rows to the tables.
Distances are Euclidean on the raw (not normalised) embeddings, dlib's convention.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from recognition.detection import DetectedFace, DetectorConfig, align_faces, detect_faces
from recognition.embedding import Embedder, get_embedder
from recognition.imageio import BadImage, decode_image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
NO_FACE = "no face found"
MAX_PIXELS = 100_000_000
FPIR_TARGETS = (0.01, 0.05, 0.10)
DLIB_THRESHOLD = 0.6
CACHE_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Embedding a labeled folder


@dataclass(frozen=True)
class StageTimes:
    """Wall-clock seconds summed over a folder; embed is the plain chips, embed_flip the mirrors."""

    decode: float = 0.0
    detect: float = 0.0
    align: float = 0.0
    embed: float = 0.0
    embed_flip: float = 0.0
    images: int = 0

    def ms_per_image(self) -> dict[str, float]:
        n = max(self.images, 1)
        stages = {
            "decode": self.decode,
            "detect": self.detect,
            "align": self.align,
            "embed": self.embed,
        }
        per_image = {k: 1000 * v / n for k, v in stages.items()}
        per_image["total"] = sum(per_image.values())
        per_image["embed_flip"] = 1000 * self.embed_flip / n
        return per_image


@dataclass(frozen=True)
class LabeledEmbeddings:
    """One embedding per image (the face nearest the image centre).

    Rows where `found` is False are zeros and must not be used; `misses` says why
    ("no face found" or the decoder's message). `flipped` holds the embeddings of the mirrored
    chips, for flip test-time augmentation (see `with_flip_tta`).
    """

    root: str
    names: list[str]  # paths relative to root, "/"-separated
    labels: np.ndarray  # (N,) int, index into label_names
    label_names: list[str]
    embeddings: np.ndarray  # (N, D) float32
    flipped: np.ndarray  # (N, D) float32
    found: np.ndarray  # (N,) bool
    misses: dict[str, str]
    embedder_version: str
    times: StageTimes

    def with_flip_tta(self) -> LabeledEmbeddings:
        """The same images with each embedding averaged with its mirrored chip's embedding."""
        mean = ((self.embeddings + self.flipped) / 2).astype(np.float32)
        return dataclasses.replace(self, embeddings=mean)

    def index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}


def list_labeled_images(root: pathlib.Path) -> list[tuple[str, str]]:
    """(relative path, person) for every image in `root/<person>/`, sorted."""
    items = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(person.iterdir()):
            if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES:
                items.append((f"{person.name}/{image.name}", person.name))
    return items


def central_face(faces: Sequence[DetectedFace], width: int, height: int) -> DetectedFace | None:
    """The face whose box centre is nearest the image centre (LFW crops are centred)."""
    if not faces:
        return None

    def offset(face: DetectedFace) -> float:
        cx, cy = (face.left + face.right) / 2, (face.top + face.bottom) / 2
        return (cx - width / 2) ** 2 + (cy - height / 2) ** 2

    return min(faces, key=offset)


def _cache_path(
    cache_dir: pathlib.Path,
    root: pathlib.Path,
    items: Sequence[tuple[str, str]],
    version: str,
    detector: DetectorConfig,
) -> pathlib.Path:
    digest = hashlib.sha256()
    digest.update(f"{CACHE_FORMAT}|{version}|{detector!r}|{root.resolve()}".encode())
    for name, _ in items:
        stat = (root / name).stat()
        digest.update(f"|{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return cache_dir / f"{root.name}-{version}-{digest.hexdigest()[:16]}.npz"


def _save(path: pathlib.Path, data: LabeledEmbeddings) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    times = data.times
    np.savez(
        tmp,
        root=np.array(data.root),
        names=np.array(data.names),
        labels=data.labels,
        label_names=np.array(data.label_names),
        embeddings=data.embeddings,
        flipped=data.flipped,
        found=data.found,
        miss_names=np.array(list(data.misses), dtype=str),
        miss_reasons=np.array(list(data.misses.values()), dtype=str),
        embedder_version=np.array(data.embedder_version),
        times=np.array(
            [times.decode, times.detect, times.align, times.embed, times.embed_flip, times.images]
        ),
    )
    os.replace(tmp, path)


def _load(path: pathlib.Path) -> LabeledEmbeddings:
    with np.load(path, allow_pickle=False) as z:
        t = z["times"]
        return LabeledEmbeddings(
            root=str(z["root"]),
            names=[str(n) for n in z["names"]],
            labels=z["labels"].astype(np.int64),
            label_names=[str(n) for n in z["label_names"]],
            embeddings=z["embeddings"].astype(np.float32),
            flipped=z["flipped"].astype(np.float32),
            found=z["found"].astype(bool),
            misses=dict(zip(map(str, z["miss_names"]), map(str, z["miss_reasons"]), strict=True)),
            embedder_version=str(z["embedder_version"]),
            times=StageTimes(*map(float, t[:5]), images=int(t[5])),
        )


def embed_labeled_folder(
    root: pathlib.Path,
    cache_dir: pathlib.Path | None,
    *,
    embedder: Embedder | None = None,
    detector: DetectorConfig = DetectorConfig(),  # noqa: B008 (frozen)
    limit: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> LabeledEmbeddings:
    """Detect (face nearest the centre), align and embed every image of `root/<person>/`.

    With a cache_dir, the result is stored as .npz keyed by the file list (names, sizes,
    mtimes), the embedder version and the detector settings, and reused when they match.
    Chips are not stored. Unreadable images and images without a face are recorded in
    `misses`, never raised. `limit` keeps the first N images in sorted order.
    """
    root = pathlib.Path(root)
    items = list_labeled_images(root)[:limit]
    embedder = embedder or get_embedder()
    cache = None
    if cache_dir is not None:
        cache = _cache_path(pathlib.Path(cache_dir), root, items, embedder.version, detector)
        if cache.exists():
            return _load(cache)

    label_names = sorted({person for _, person in items})
    label_of = {name: i for i, name in enumerate(label_names)}
    n, dim = len(items), embedder.dimension
    embeddings = np.zeros((n, dim), dtype=np.float32)
    flipped = np.zeros((n, dim), dtype=np.float32)
    found = np.zeros(n, dtype=bool)
    misses: dict[str, str] = {}
    timer = dict.fromkeys(("decode", "detect", "align", "embed", "embed_flip"), 0.0)
    pending: list[tuple[int, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        rows = [i for i, _ in pending]
        chips = np.stack([chip for _, chip in pending])
        t0 = time.perf_counter()
        embeddings[rows] = embedder.embed(chips)
        t1 = time.perf_counter()
        flipped[rows] = embedder.embed(np.ascontiguousarray(chips[:, :, ::-1]))
        timer["embed"] += t1 - t0
        timer["embed_flip"] += time.perf_counter() - t1
        found[rows] = True
        pending.clear()

    for i, (name, _) in enumerate(tqdm(items, desc=root.name, unit="img", disable=not progress)):
        t0 = time.perf_counter()
        try:
            rgb = decode_image(root / name, max_pixels=MAX_PIXELS).rgb
        except BadImage as exc:
            misses[name] = f"unreadable image: {exc}"
            continue
        t1 = time.perf_counter()
        face = central_face(detect_faces(rgb, detector), rgb.shape[1], rgb.shape[0])
        t2 = time.perf_counter()
        timer["decode"] += t1 - t0
        timer["detect"] += t2 - t1
        if face is None:
            misses[name] = NO_FACE
            continue
        pending.append((i, align_faces(rgb, [face])[0]))
        timer["align"] += time.perf_counter() - t2
        if len(pending) >= batch_size:
            flush()
    flush()

    result = LabeledEmbeddings(
        root=str(root),
        names=[name for name, _ in items],
        labels=np.array([label_of[person] for _, person in items], dtype=np.int64),
        label_names=label_names,
        embeddings=embeddings,
        flipped=flipped,
        found=found,
        misses=misses,
        embedder_version=embedder.version,
        times=StageTimes(**timer, images=n),
    )
    if cache is not None:
        _save(cache, result)
    return result


# ---------------------------------------------------------------------------------------------
# Distances


def euclidean_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances, in float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


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


def identity_distances(
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(identities, (P, I) distance from each probe to each identity's nearest gallery image)."""
    order = np.argsort(gallery_labels, kind="stable")
    sorted_labels = gallery_labels[order]
    ids, starts = np.unique(sorted_labels, return_index=True)
    g = gallery[order]
    out = np.empty((len(probes), len(ids)), dtype=np.float64)
    for s in range(0, len(probes), chunk):
        d = euclidean_distances(probes[s : s + chunk], g)
        out[s : s + chunk] = np.minimum.reduceat(d, starts, axis=1)
    return ids, out


@dataclass(frozen=True)
class TopK:
    labels: np.ndarray  # (P, k) identity labels, nearest first; -1 where fewer identities
    distances: np.ndarray  # (P, k) distance to that identity's nearest gallery image


def knn_top_k(
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, k: int = 5
) -> TopK:
    """1-NN over all gallery images, ranked by identity: the k nearest distinct identities."""
    ids, dist = identity_distances(gallery, gallery_labels, probes)
    kk = min(k, len(ids))
    labels = np.full((len(probes), k), -1, dtype=np.int64)
    distances = np.full((len(probes), k), np.inf)
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
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, n: int = 200
) -> float:
    """Milliseconds for one probe searched alone (no batching), median of up to n probes."""
    if not len(probes) or not len(gallery):
        return float("nan")
    samples = []
    for probe in probes[:n]:
        t0 = time.perf_counter()
        knn_top_k(gallery, gallery_labels, probe[None, :], k=5)
        samples.append(time.perf_counter() - t0)
    return 1000 * float(np.median(samples))


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


def open_set_searches(embeddings: np.ndarray, labels: np.ndarray, split: Split) -> OpenSetSearches:
    gallery, gallery_labels = embeddings[split.gallery], labels[split.gallery]
    mated = knn_top_k(gallery, gallery_labels, embeddings[split.probes], k=1)
    nonmated = knn_top_k(gallery, gallery_labels, embeddings[split.nonmated], k=1)
    return OpenSetSearches(
        mated_distance=mated.distances[:, 0],
        mated_correct=mated.labels[:, 0] == labels[split.probes],
        nonmated_distance=nonmated.distances[:, 0],
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


# ---------------------------------------------------------------------------------------------
# The whole protocol and its report


@dataclass(frozen=True)
class VariantReport:
    name: str  # "plain" or "flip TTA"
    verification: VerificationResult | None
    closed_set: IdentificationResult
    open_set: OpenSetResult
    # Curves for the plots, not written to JSON in full.
    pair_distances: PairDistances | None
    searches: OpenSetSearches


@dataclass(frozen=True)
class EvaluationReport:
    dataset: str
    images: int
    identities: int
    faces_found: int
    misses: dict[str, str]
    embedder_version: str
    detector: DetectorConfig
    pairs_file: str | None
    seed: int
    ms_per_image: dict[str, float]
    variants: tuple[VariantReport, ...]


def evaluate_variant(
    name: str,
    data: LabeledEmbeddings,
    pairs: Pairs | None,
    closed: Split,
    open_split: Split,
    unenrolled: np.ndarray,
) -> VariantReport:
    verification = distances = None
    if pairs is not None:
        distances = pair_distances(data, pairs)
        verification = verification_10fold(
            distances.distances,
            distances.same,
            distances.fold,
            missing_face=distances.missing_face,
            missing_file=distances.missing_file,
        )
    searches = open_set_searches(data.embeddings, data.labels, open_split)
    open_gallery_labels = data.labels[open_split.gallery]
    return VariantReport(
        name=name,
        verification=verification,
        closed_set=closed_set_identification(data.embeddings, data.labels, closed),
        open_set=OpenSetResult(
            points=open_set_fnir_at_fpir(searches),
            mated_searches=len(open_split.probes),
            nonmated_searches=len(open_split.nonmated),
            unenrolled_identities=len(unenrolled),
            gallery_images=len(open_split.gallery),
            gallery_identities=len(np.unique(open_gallery_labels)),
        ),
        pair_distances=distances,
        searches=searches,
    )


def evaluate(
    data: LabeledEmbeddings,
    pairs: Pairs | None,
    *,
    seed: int = 0,
    detector: DetectorConfig = DetectorConfig(),  # noqa: B008 (frozen)
    pairs_file: str | None = None,
) -> EvaluationReport:
    """All protocols, on the plain embeddings and with flip test-time augmentation.

    Closed set: every second image of each multi-image identity in file order is a probe, as
    in ../shared/faces/README.md. Open set: `seed` picks the 20% of multi-image identities
    that are never enrolled.
    """
    closed = closed_set_split(data.labels, data.found)
    open_split, unenrolled = open_set_split(data.labels, data.found, seed=seed)
    variants = tuple(
        evaluate_variant(name, variant, pairs, closed, open_split, unenrolled)
        for name, variant in (("plain", data), ("flip TTA", data.with_flip_tta()))
    )
    return EvaluationReport(
        dataset=pathlib.Path(data.root).name,
        images=len(data.names),
        identities=len(data.label_names),
        faces_found=int(data.found.sum()),
        misses=data.misses,
        embedder_version=data.embedder_version,
        detector=detector,
        pairs_file=pairs_file,
        seed=seed,
        ms_per_image=data.times.ms_per_image(),
        variants=variants,
    )


def _finite_or_none(value: object) -> object:
    # JSON has no Infinity/NaN; an unreachable threshold is written as null.
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


def report_json(report: EvaluationReport) -> dict:
    """The report as JSON-ready data; non-finite numbers become null."""

    def variant(v: VariantReport) -> dict:
        return {
            "name": v.name,
            "verification": dataclasses.asdict(v.verification) if v.verification else None,
            "closed_set": dataclasses.asdict(v.closed_set),
            "open_set": dataclasses.asdict(v.open_set),
        }

    return _finite_or_none(
        {
            "dataset": report.dataset,
            "images": report.images,
            "identities": report.identities,
            "faces_found": report.faces_found,
            "misses": report.misses,
            "embedder_version": report.embedder_version,
            "detector": dataclasses.asdict(report.detector),
            "pairs_file": report.pairs_file,
            "seed": report.seed,
            "ms_per_image": report.ms_per_image,
            "variants": [variant(v) for v in report.variants],
        }
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def report_markdown(report: EvaluationReport) -> str:
    """Tables laid out like the seed papers': algorithm, accuracy (%), time of one query (ms)."""
    base = report.variants[0]
    cs, os_ = base.closed_set, base.open_set
    t = report.ms_per_image
    algo = "k-NN (1-NN), all gallery images"
    out = [
        f"Dataset `{report.dataset}`: {report.images:,} images of {report.identities:,} "
        f"identities; embedder `{report.embedder_version}`; detector {report.detector.model} "
        f"(upsample {report.detector.upsample}), face nearest the image centre. "
        f"No face found in {report.images - report.faces_found} images: a pair with such an "
        f"image counts as 'different'; the identification splits leave them out.",
        "",
    ]
    if base.verification is not None:
        v = base.verification
        out += [
            f"**Verification** (`{report.pairs_file}`: {v.pairs:,} pairs, {v.same_pairs:,} same; "
            f"10 folds, threshold chosen on 9 folds and tested on the 10th; "
            f"{v.missing_face} pairs with a missed face count as 'different'):",
            "",
            markdown_table(
                ["Algorithm", "Accuracy (%)", "Threshold", "Accuracy at 0.6 (%)"],
                [
                    [
                        f"Euclidean distance, {r.name}",
                        f"{_pct(r.verification.accuracy)} ± {_pct(r.verification.accuracy_std)}",
                        f"{np.mean(r.verification.thresholds):.3f}",
                        _pct(r.verification.accuracy_at_fixed),
                    ]
                    for r in report.variants
                    if r.verification is not None
                ],
            ),
            "",
        ]
    out += [
        f"**Closed-set identification** ({cs.probes:,} probes: every second image of each "
        f"identity with 2+ images; gallery {cs.gallery_images:,} images of "
        f"{cs.gallery_identities:,} identities):",
        "",
        markdown_table(
            ["Algorithm", "Top-1 (%)", "Top-5 (%)", "Time of one image classification (ms)"],
            [
                [
                    f"{algo}, {r.name}",
                    _pct(r.closed_set.top1),
                    _pct(r.closed_set.top5),
                    f"{r.closed_set.ms_per_query:.2f}",
                ]
                for r in report.variants
            ],
        ),
        "",
        f"**Open-set identification** ({os_.unenrolled_identities} of the multi-image identities "
        f"never enrolled, seed {report.seed}: {os_.nonmated_searches:,} non-mated and "
        f"{os_.mated_searches:,} mated searches against {os_.gallery_images:,} gallery images "
        f"of {os_.gallery_identities:,} identities; FNIR at FPIR, with the distance threshold):",
        "",
        markdown_table(
            ["Algorithm"] + [f"FNIR (%) @ FPIR {100 * p.fpir_target:g}%" for p in os_.points],
            [
                [f"1-NN + distance threshold, {r.name}"]
                + [f"{_pct(p.fnir)} (t = {p.threshold:.3f})" for p in r.open_set.points]
                for r in report.variants
            ],
        ),
        "",
        "**Time per image** (ms, this machine; embed is batched 64 chips per forward pass, "
        f"flip TTA adds {t['embed_flip']:.2f} ms):",
        "",
        markdown_table(
            ["decode", "detect", "align", "embed", "total"],
            [[f"{t[k]:.2f}" for k in ("decode", "detect", "align", "embed", "total")]],
        ),
    ]
    return "\n".join(out) + "\n"


def write_plots(report: EvaluationReport, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """cmc.png, det.png and distances.png for every variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for v in report.variants:
        ranks = np.arange(1, len(v.closed_set.cmc) + 1)
        ax.plot(ranks, 100 * np.array(v.closed_set.cmc), marker=".", label=v.name)
    ax.set(xlabel="rank", ylabel="identification rate (%)", title=f"CMC, {report.dataset}")
    ax.grid(alpha=0.3)
    ax.legend()
    paths.append(out_dir / "cmc.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for v in report.variants:
        _, fpir, fnir = det_curve(v.searches)
        keep = fpir > 0
        ax.plot(100 * fpir[keep], 100 * fnir[keep], label=v.name)
    ax.set(
        xscale="log",
        xlabel="FPIR (%)",
        ylabel="FNIR (%)",
        title=f"Open-set DET, {report.dataset}",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    paths.append(out_dir / "det.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)

    with_pairs = [v for v in report.variants if v.pair_distances is not None]
    fig, axes = plt.subplots(1, max(len(with_pairs), 1), figsize=(6 * max(len(with_pairs), 1), 4))
    for ax, v in zip(np.atleast_1d(axes), with_pairs, strict=False):
        pd = v.pair_distances
        finite = np.isfinite(pd.distances)
        bins = np.linspace(0, 1.2, 61)
        ax.hist(pd.distances[finite & pd.same], bins=bins, alpha=0.6, label="same person")
        ax.hist(pd.distances[finite & ~pd.same], bins=bins, alpha=0.6, label="different")
        ax.axvline(DLIB_THRESHOLD, color="k", linestyle="--", label="0.6")
        ax.set(xlabel="Euclidean distance", ylabel="pairs", title=f"Pair distances, {v.name}")
        ax.legend()
    paths.append(out_dir / "distances.png")
    fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def write_report(report: EvaluationReport, out_dir: pathlib.Path) -> list[pathlib.Path]:
    """results.json, results.md and the plots in out_dir; returns the paths written."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    json_path.write_text(json.dumps(report_json(report), indent=2, allow_nan=False) + "\n")
    md_path = out_dir / "results.md"
    md_path.write_text(report_markdown(report))
    return [json_path, md_path, *write_plots(report, out_dir)]
