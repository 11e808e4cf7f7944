"""Embedding a labeled folder `<Person>/<image>` for evaluation, cached as .npz."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from recognition.core.detection import DetectedFace, DetectorConfig, align_faces, detect_faces
from recognition.core.embedding import Embedder, get_embedder
from recognition.core.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, BadImage, decode_image

NO_FACE = "no face found"
CACHE_FORMAT = 1


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
            rgb = decode_image(root / name, max_pixels=DEFAULT_MAX_PIXELS).rgb
        except BadImage as exc:
            misses[name] = f"unreadable image: {exc}"
            continue
        t1 = time.perf_counter()
        # An InsightFace pack (`evaluate --model`) detects and aligns with its own networks.
        own = getattr(embedder, "detect_and_align", None)
        candidates = own(rgb).faces if own is not None else detect_faces(rgb, detector)
        face = central_face(candidates, rgb.shape[1], rgb.shape[0])
        t2 = time.perf_counter()
        timer["decode"] += t1 - t0
        timer["detect"] += t2 - t1
        if face is None:
            misses[name] = NO_FACE
            continue
        align = getattr(embedder, "align", None)
        pending.append((i, (align(rgb, [face]) if align else align_faces(rgb, [face]))[0]))
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
