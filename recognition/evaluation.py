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

    def ms_per_image(self, flip_tta: bool = False) -> dict[str, float]:
        """Milliseconds per image by stage; with flip_tta, embed includes the mirrored chips."""
        n = max(self.images, 1)
        stages = {
            "decode": self.decode,
            "detect": self.detect,
            "align": self.align,
            "embed": self.embed + (self.embed_flip if flip_tta else 0.0),
        }
        per_image = {k: 1000 * v / n for k, v in stages.items()}
        per_image["total"] = sum(per_image.values())
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
    detectors: Sequence[DetectorConfig],
) -> pathlib.Path:
    digest = hashlib.sha256()
    digest.update(f"{CACHE_FORMAT}|{version}|{list(detectors)!r}|{root.resolve()}".encode())
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


@dataclass(frozen=True)
class _Embedded:
    embeddings: np.ndarray
    flipped: np.ndarray
    found: np.ndarray
    misses: dict[str, str]
    times: StageTimes


def _embed_images(
    root: pathlib.Path,
    names: Sequence[str],
    detector: DetectorConfig,
    embedder: Embedder,
    batch_size: int,
    progress: bool,
) -> _Embedded:
    n, dim = len(names), embedder.dimension
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

    desc = f"{root.name} ({detector.model})"
    for i, name in enumerate(tqdm(names, desc=desc, unit="img", disable=not progress)):
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
    return _Embedded(embeddings, flipped, found, misses, StageTimes(**timer, images=n))


def _with_retries(data: LabeledEmbeddings, rows: list[int], retry: _Embedded) -> LabeledEmbeddings:
    embeddings, flipped, found = data.embeddings.copy(), data.flipped.copy(), data.found.copy()
    embeddings[rows], flipped[rows], found[rows] = retry.embeddings, retry.flipped, retry.found
    misses = {k: v for k, v in data.misses.items() if k not in {data.names[i] for i in rows}}
    misses.update(retry.misses)
    t, r = data.times, retry.times
    times = StageTimes(
        decode=t.decode + r.decode,
        detect=t.detect + r.detect,
        align=t.align + r.align,
        embed=t.embed + r.embed,
        embed_flip=t.embed_flip + r.embed_flip,
        images=t.images,
    )
    return dataclasses.replace(
        data, embeddings=embeddings, flipped=flipped, found=found, misses=misses, times=times
    )


def embed_labeled_folder(
    root: pathlib.Path,
    cache_dir: pathlib.Path | None,
    *,
    embedder: Embedder | None = None,
    detector: DetectorConfig = DetectorConfig(),  # noqa: B008 (frozen)
    fallback: DetectorConfig | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> LabeledEmbeddings:
    """Detect (face nearest the centre), align and embed every image of `root/<person>/`.

    Images where `detector` finds no face are retried with `fallback` when one is given (e.g.
    dlib's MMOD CNN, too slow to run on every image on a CPU); timings include the retries.
    With a cache_dir, results are stored as .npz keyed by the file list (names, sizes, mtimes),
    the embedder version and the detector settings, and reused when they match; the result
    without fallback is cached too, so adding one only costs the retries. Chips are not stored.
    Unreadable images and images without a face are recorded in `misses`, never raised.
    `limit` keeps the first N images in sorted order.
    """
    root = pathlib.Path(root)
    items = list_labeled_images(root)[:limit]
    embedder = embedder or get_embedder()

    def cached(detectors: Sequence[DetectorConfig]) -> pathlib.Path | None:
        if cache_dir is None:
            return None
        return _cache_path(pathlib.Path(cache_dir), root, items, embedder.version, detectors)

    final_cache = cached([detector] if fallback is None else [detector, fallback])
    if final_cache is not None and final_cache.exists():
        return _load(final_cache)
    primary_cache = cached([detector])
    if primary_cache is not None and primary_cache.exists():
        data = _load(primary_cache)
    else:
        names = [name for name, _ in items]
        done = _embed_images(root, names, detector, embedder, batch_size, progress)
        label_names = sorted({person for _, person in items})
        label_of = {name: i for i, name in enumerate(label_names)}
        data = LabeledEmbeddings(
            root=str(root),
            names=names,
            labels=np.array([label_of[person] for _, person in items], dtype=np.int64),
            label_names=label_names,
            embeddings=done.embeddings,
            flipped=done.flipped,
            found=done.found,
            misses=done.misses,
            embedder_version=embedder.version,
            times=done.times,
        )
        if primary_cache is not None:
            _save(primary_cache, data)
    if fallback is None:
        return data
    rows = [i for i, name in enumerate(data.names) if data.misses.get(name) == NO_FACE]
    retry = _embed_images(
        root, [data.names[i] for i in rows], fallback, embedder, batch_size, progress
    )
    data = _with_retries(data, rows, retry)
    if final_cache is not None:
        _save(final_cache, data)
    return data


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


@dataclass(frozen=True)
class GalleryIndex:
    """A gallery prepared once for brute-force search: sorted by identity, norms precomputed."""

    embeddings: np.ndarray  # (G, D) float64, grouped by identity
    sq_norms: np.ndarray  # (G,)
    ids: np.ndarray  # (I,) identity labels, ascending
    starts: np.ndarray  # (I,) first row of each identity


def gallery_index(gallery: np.ndarray, gallery_labels: np.ndarray) -> GalleryIndex:
    order = np.argsort(gallery_labels, kind="stable")
    ids, starts = np.unique(gallery_labels[order], return_index=True)
    g = np.ascontiguousarray(gallery[order], dtype=np.float64)
    return GalleryIndex(g, (g * g).sum(1), ids, starts)


def search_identities(index: GalleryIndex, probes: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """(P, I) distance from each probe to each identity's nearest gallery image."""
    out = np.empty((len(probes), len(index.ids)), dtype=np.float64)
    if not len(index.ids):
        return out
    for s in range(0, len(probes), chunk):
        p = np.asarray(probes[s : s + chunk], dtype=np.float64)
        sq = (p * p).sum(1)[:, None] + index.sq_norms[None, :] - 2.0 * (p @ index.embeddings.T)
        d = np.sqrt(np.maximum(sq, 0.0))
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
    gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, n: int = 200
) -> float:
    """Milliseconds to search one probe alone (no batching) for its top 5 identities in a
    prepared gallery; median over up to n probes."""
    if not len(probes) or not len(gallery):
        return float("nan")
    index = gallery_index(gallery, gallery_labels)
    samples = []
    for probe in probes[:n]:
        t0 = time.perf_counter()
        top_k_identities(index.ids, search_identities(index, probe[None, :]), k=5)
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
class Variant:
    """One pipeline's embeddings of the dataset, named for the tables."""

    name: str
    data: LabeledEmbeddings
    flip_tta: bool = False  # average each embedding with its mirrored chip's


@dataclass(frozen=True)
class VariantReport:
    name: str
    faces_found: int
    misses: dict[str, str]
    ms_per_image: dict[str, float]
    verification: VerificationResult | None
    closed_set: IdentificationResult  # every identity enrolled
    closed_set_enrolled: IdentificationResult  # mated searches of the open-set split
    open_set: OpenSetResult
    fnir_over_seeds: dict[str, tuple[float, ...]]  # FPIR target -> FNIR for each spread seed
    # Curves for the plots; not written to JSON.
    pair_distances: PairDistances | None
    searches: OpenSetSearches


@dataclass(frozen=True)
class EvaluationReport:
    dataset: str
    images: int
    identities: int
    embedder_version: str
    pairs_file: str | None
    seed: int
    spread_seeds: tuple[int, ...]
    variants: tuple[VariantReport, ...]


def evaluate_variant(
    variant: Variant,
    pairs: Pairs | None,
    *,
    seed: int,
    spread_seeds: Sequence[int] = (),
    unenrolled_share: float = 0.2,
) -> VariantReport:
    """Every protocol on one pipeline's embeddings; splits use the images it found a face in."""
    data = variant.data.with_flip_tta() if variant.flip_tta else variant.data
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
    closed = closed_set_split(data.labels, data.found)
    open_split, unenrolled = open_set_split(
        data.labels, data.found, unenrolled_share=unenrolled_share, seed=seed
    )
    searches = open_set_searches(data.embeddings, data.labels, open_split)
    spread: dict[str, list[float]] = {f"{t:g}": [] for t in FPIR_TARGETS}
    for other in spread_seeds:
        split, _ = open_set_split(
            data.labels, data.found, unenrolled_share=unenrolled_share, seed=other
        )
        points = open_set_fnir_at_fpir(open_set_searches(data.embeddings, data.labels, split))
        for point in points:
            spread[f"{point.fpir_target:g}"].append(point.fnir)
    return VariantReport(
        name=variant.name,
        faces_found=int(data.found.sum()),
        misses=data.misses,
        ms_per_image=data.times.ms_per_image(variant.flip_tta),
        verification=verification,
        closed_set=closed_set_identification(data.embeddings, data.labels, closed),
        closed_set_enrolled=closed_set_identification(data.embeddings, data.labels, open_split),
        open_set=OpenSetResult(
            points=open_set_fnir_at_fpir(searches),
            mated_searches=len(open_split.probes),
            nonmated_searches=len(open_split.nonmated),
            unenrolled_identities=len(unenrolled),
            gallery_images=len(open_split.gallery),
            gallery_identities=len(np.unique(data.labels[open_split.gallery])),
        ),
        fnir_over_seeds={k: tuple(v) for k, v in spread.items()},
        pair_distances=distances,
        searches=searches,
    )


def evaluate(
    variants: Sequence[Variant],
    pairs: Pairs | None,
    *,
    seed: int = 1,
    spread_seeds: Sequence[int] = range(5),
    pairs_file: str | None = None,
) -> EvaluationReport:
    """All protocols for each variant (e.g. plain, flip TTA, a detector retry).

    Closed set: every second image, in file order, of each identity with 2+ images is a probe,
    as in ../shared/faces/README.md; reported with every identity enrolled and, as the README
    does, on the open-set gallery. Open set: `seed` picks the 20% of multi-image identities that
    are never enrolled (seed 1 reproduces the README's split: 1,701 probes, 2,683 identities);
    FNIR is also given over `spread_seeds`, since 1% of ~700 non-mated searches is 7 searches.
    """
    first = variants[0].data
    return EvaluationReport(
        dataset=pathlib.Path(first.root).name,
        images=len(first.names),
        identities=len(first.label_names),
        embedder_version=first.embedder_version,
        pairs_file=pairs_file,
        seed=seed,
        spread_seeds=tuple(spread_seeds),
        variants=tuple(
            evaluate_variant(v, pairs, seed=seed, spread_seeds=spread_seeds) for v in variants
        ),
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
            "faces_found": v.faces_found,
            "misses": v.misses,
            "ms_per_image": v.ms_per_image,
            "verification": dataclasses.asdict(v.verification) if v.verification else None,
            "closed_set": dataclasses.asdict(v.closed_set),
            "closed_set_enrolled": dataclasses.asdict(v.closed_set_enrolled),
            "open_set": dataclasses.asdict(v.open_set),
            "fnir_over_seeds": v.fnir_over_seeds,
        }

    return _finite_or_none(
        {
            "dataset": report.dataset,
            "images": report.images,
            "identities": report.identities,
            "embedder_version": report.embedder_version,
            "pairs_file": report.pairs_file,
            "seed": report.seed,
            "spread_seeds": report.spread_seeds,
            "variants": [variant(v) for v in report.variants],
        }
    )


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _identification_table(results: Sequence[tuple[str, IdentificationResult]]) -> str:
    return markdown_table(
        ["Algorithm", "Top-1 (%)", "Top-5 (%)", "Time of one image classification (ms)"],
        [
            [
                f"k-NN (1-NN), all gallery images, {name}",
                _pct(r.top1),
                _pct(r.top5),
                f"{r.ms_per_query:.2f}",
            ]
            for name, r in results
        ],
    )


def report_markdown(report: EvaluationReport) -> str:
    """Tables laid out like the seed papers': algorithm, accuracy (%), time of one query (ms)."""
    variants = report.variants
    base = variants[0]
    cs, cse, os_ = base.closed_set, base.closed_set_enrolled, base.open_set
    stages = ("decode", "detect", "align", "embed")
    out = [
        f"Dataset `{report.dataset}`: {report.images:,} images of {report.identities:,} "
        f"identities; embedder `{report.embedder_version}`; one face per image, the one nearest "
        "the image centre. Images without a face take no part in identification; a verification "
        "pair with such an image counts as 'different'.",
        "",
        "**Detection and time per image** (ms on this machine; embed is batched, 64 chips per "
        "forward pass; flip TTA embeds the mirrored chip as well and averages the two):",
        "",
        markdown_table(
            ["Pipeline", "Faces found", "No face", *stages, "total"],
            [
                [v.name, f"{v.faces_found:,}", str(report.images - v.faces_found)]
                + [f"{v.ms_per_image[k]:.2f}" for k in (*stages, "total")]
                for v in variants
            ],
        ),
        "",
    ]
    if base.verification is not None:
        v = base.verification
        out += [
            f"**Verification** (`{report.pairs_file}`: {v.pairs:,} pairs, {v.same_pairs:,} same; "
            "LFW protocol: 10 folds, the threshold chosen on 9 folds and tested on the 10th; "
            "accuracy is the mean over folds ± standard deviation):",
            "",
            markdown_table(
                [
                    "Algorithm",
                    "Accuracy (%)",
                    "Mean threshold",
                    "Accuracy at 0.6 (%)",
                    "Pairs with a missed face",
                ],
                [
                    [
                        f"Euclidean distance, {r.name}",
                        f"{_pct(r.verification.accuracy)} ± {_pct(r.verification.accuracy_std)}",
                        f"{np.mean(r.verification.thresholds):.3f}",
                        _pct(r.verification.accuracy_at_fixed),
                        str(r.verification.missing_face),
                    ]
                    for r in variants
                    if r.verification is not None
                ],
            ),
            "",
        ]
    out += [
        f"**Closed-set identification, every identity enrolled** ({cs.probes:,} probes: every "
        f"second image of each identity with 2+ images; gallery: the other {cs.gallery_images:,} "
        f"images, {cs.gallery_identities:,} identities; first variant's counts):",
        "",
        _identification_table([(v.name, v.closed_set) for v in variants]),
        "",
        f"**Closed-set identification on the open-set gallery** (the README's layout: "
        f"{cse.probes:,} probes of enrolled identities; gallery {cse.gallery_images:,} images, "
        f"{cse.gallery_identities:,} identities):",
        "",
        _identification_table([(v.name, v.closed_set_enrolled) for v in variants]),
        "",
        f"**Open-set identification** ({os_.unenrolled_identities} of the multi-image identities "
        f"never enrolled, seed {report.seed}: {os_.nonmated_searches:,} non-mated and "
        f"{os_.mated_searches:,} mated searches. FPIR: share of non-mated searches whose nearest "
        "gallery image is below the threshold; FNIR: share of mated searches whose rank-1 "
        "identity is not the mate below the threshold; the threshold is the largest with FPIR "
        f"at most the target. Last column: FNIR @ FPIR 1% over seeds "
        f"{', '.join(map(str, report.spread_seeds))}, mean (min-max)):",
        "",
        markdown_table(
            ["Algorithm"]
            + [f"FNIR (%) @ FPIR {100 * p.fpir_target:g}%" for p in os_.points]
            + ["FNIR (%) @ FPIR 1%, seeds"],
            [
                [f"1-NN + distance threshold, {r.name}"]
                + [f"{_pct(p.fnir)} (t = {p.threshold:.3f})" for p in r.open_set.points]
                + [_spread(r.fnir_over_seeds.get("0.01", ()))]
                for r in variants
            ],
        ),
    ]
    return "\n".join(out) + "\n"


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{_pct(float(np.mean(values)))} ({_pct(min(values))}-{_pct(max(values))})"


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
    cols = min(max(len(with_pairs), 1), 2)
    rows = max((len(with_pairs) + 1) // 2, 1)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    for ax, v in zip(axes.ravel(), with_pairs, strict=False):
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
