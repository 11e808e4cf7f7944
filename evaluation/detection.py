"""Detection recall and false positives on a folder of annotated photos (pure: no Django).

The folder holds images and `boxes.json`, mapping each image's file name to its true face boxes
`[x0, y0, x1, y1]` in pixels (an empty list: an image without faces). An optional
`conditions.json` maps a file name to one list of condition names per box ("rotated", "dark",
"blurred", "profile"), parallel to its boxes. File names start with their source and a dash
("photo-", "composite-", "nonface-"), which the tables report separately.

The rule: a true face counts as found when a detection's centre lies inside its box and the two
widths agree within a factor of 2.5. Each detection finds at most one face and each face is found
by at most one detection (best score first, nearest centre); a detection that finds no face is a
false positive.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

WIDTH_FACTOR = 2.5
SIZE_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("<32", 0, 32),
    ("32-63", 32, 64),
    ("64-127", 64, 128),
    (">=128", 128, math.inf),
)
CONDITIONS = ("rotated", "dark", "blurred", "profile")
BOXES_FILE = "boxes.json"
CONDITIONS_FILE = "conditions.json"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrueFace:
    box: Box
    conditions: tuple[str, ...] = ()

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


@dataclass(frozen=True)
class AnnotatedImage:
    name: str
    faces: tuple[TrueFace, ...]

    @property
    def source(self) -> str:
        return self.name.split("-", 1)[0] if "-" in self.name else "other"


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float


@dataclass(frozen=True)
class ImageOutcome:
    """One detector on one image: which true faces it found, how many false positives."""

    image: AnnotatedImage
    found: tuple[bool, ...]  # parallel to image.faces
    false_positives: int
    seconds: float
    megapixels: float


def read_annotations(folder: pathlib.Path) -> list[AnnotatedImage]:
    """The annotated images of a folder, sorted by name; every listed file must exist."""
    boxes = json.loads((folder / BOXES_FILE).read_text())
    conditions_path = folder / CONDITIONS_FILE
    conditions = json.loads(conditions_path.read_text()) if conditions_path.exists() else {}
    images = []
    for name in sorted(boxes):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{name} is listed in {BOXES_FILE} but not in {folder}")
        per_box = conditions.get(name) or [[] for _ in boxes[name]]
        if len(per_box) != len(boxes[name]):
            raise ValueError(f"{name}: {len(per_box)} condition lists for {len(boxes[name])} boxes")
        faces = []
        for box, conds in zip(boxes[name], per_box, strict=True):
            x0, y0, x1, y1 = (float(v) for v in box)
            if not (x1 > x0 and y1 > y0):
                raise ValueError(f"{name}: box {box} is empty")
            unknown = set(conds) - set(CONDITIONS)
            if unknown:
                raise ValueError(f"{name}: unknown conditions {sorted(unknown)}")
            faces.append(TrueFace((x0, y0, x1, y1), tuple(conds)))
        images.append(AnnotatedImage(name, tuple(faces)))
    return images


def match(faces: Sequence[TrueFace], detections: Sequence[Detection]) -> tuple[list[bool], int]:
    """(found per true face, false positives) under the module's rule."""
    found = [False] * len(faces)
    false_positives = 0
    for det in sorted(detections, key=lambda d: -d.score):
        cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
        width = det.box[2] - det.box[0]
        best, best_dist = -1, math.inf
        for i, face in enumerate(faces):
            x0, y0, x1, y1 = face.box
            if found[i] or not (x0 <= cx <= x1 and y0 <= cy <= y1):
                continue
            if not (face.width / WIDTH_FACTOR <= width <= face.width * WIDTH_FACTOR):
                continue
            dist = math.hypot(cx - (x0 + x1) / 2, cy - (y0 + y1) / 2)
            if dist < best_dist:
                best, best_dist = i, dist
        if best >= 0:
            found[best] = True
        else:
            false_positives += 1
    return found, false_positives


DetectFn = Callable[[np.ndarray], list[Detection]]


def run_detector(
    folder: pathlib.Path,
    images: Sequence[AnnotatedImage],
    load: Callable[[pathlib.Path], np.ndarray],
    detect: DetectFn,
) -> list[ImageOutcome]:
    """Detect on every image (decoding is not timed) and match against its true faces."""
    outcomes = []
    for image in images:
        rgb = load(folder / image.name)
        start = time.perf_counter()
        detections = detect(rgb)
        seconds = time.perf_counter() - start
        found, false_positives = match(image.faces, detections)
        outcomes.append(
            ImageOutcome(
                image=image,
                found=tuple(found),
                false_positives=false_positives,
                seconds=seconds,
                megapixels=rgb.shape[0] * rgb.shape[1] / 1e6,
            )
        )
    return outcomes


def size_bucket(width: float) -> str:
    for name, low, high in SIZE_BUCKETS:
        if low <= width < high:
            return name
    raise ValueError(f"face width {width} fits no bucket")


@dataclass(frozen=True)
class Share:
    found: int
    total: int

    @property
    def recall(self) -> float | None:
        return self.found / self.total if self.total else None


@dataclass(frozen=True)
class DetectorSummary:
    name: str
    images: int
    faces: Share
    by_size: dict[str, Share]
    by_condition: dict[str, Share]  # "none" for faces with no condition
    by_source: dict[str, Share]
    false_positives: int
    face_free_images: int  # images without a true face (nonface/)
    face_free_false_positives: int
    ms_per_image: float
    ms_per_megapixel: float
    missed: tuple[str, ...] = field(default=())  # "file #box" of every missed face

    @property
    def false_positives_per_image(self) -> float:
        return self.false_positives / self.images if self.images else 0.0

    @property
    def false_positives_per_face_free_image(self) -> float | None:
        if not self.face_free_images:
            return None
        return self.face_free_false_positives / self.face_free_images

    @property
    def false_positives_per_image_with_faces(self) -> float | None:
        with_faces = self.images - self.face_free_images
        if not with_faces:
            return None
        return (self.false_positives - self.face_free_false_positives) / with_faces


def _tally(pairs: Iterable[tuple[str, bool]], keys: Sequence[str] = ()) -> dict[str, Share]:
    found: dict[str, int] = dict.fromkeys(keys, 0)
    total: dict[str, int] = dict.fromkeys(keys, 0)
    for key, hit in pairs:
        total[key] = total.get(key, 0) + 1
        found[key] = found.get(key, 0) + int(hit)
    return {key: Share(found[key], total[key]) for key in total}


def summarise(name: str, outcomes: Sequence[ImageOutcome]) -> DetectorSummary:
    faces = [
        (o.image, i, f, hit)
        for o in outcomes
        for i, (f, hit) in enumerate(zip(o.image.faces, o.found, strict=True))
    ]
    face_free = [o for o in outcomes if not o.image.faces]
    seconds = sum(o.seconds for o in outcomes)
    megapixels = sum(o.megapixels for o in outcomes)
    return DetectorSummary(
        name=name,
        images=len(outcomes),
        faces=Share(sum(hit for *_, hit in faces), len(faces)),
        by_size=_tally(
            ((size_bucket(f.width), hit) for _, _, f, hit in faces), [b[0] for b in SIZE_BUCKETS]
        ),
        by_condition=_tally(
            ((c, hit) for _, _, f, hit in faces for c in (f.conditions or ("none",))),
            ["none", *CONDITIONS],
        ),
        by_source=_tally((image.source, hit) for image, _, _, hit in faces),
        false_positives=sum(o.false_positives for o in outcomes),
        face_free_images=len(face_free),
        face_free_false_positives=sum(o.false_positives for o in face_free),
        ms_per_image=1000 * seconds / len(outcomes) if outcomes else 0.0,
        ms_per_megapixel=1000 * seconds / megapixels if megapixels else 0.0,
        missed=tuple(f"{image.name} #{i}" for image, i, _, hit in faces if not hit),
    )


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(x, digits)


def report_json(summaries: Sequence[DetectorSummary]) -> dict:
    """`{"detectors": {name: {"recall", "recall_by_size", "false_positives_per_image",
    "ms_per_image", ...}}}`; a bucket with no faces has recall null."""
    return {
        "detectors": {
            s.name: {
                "recall": _round(s.faces.recall),
                "recall_by_size": {k: _round(v.recall) for k, v in s.by_size.items()},
                "false_positives_per_image": _round(s.false_positives_per_image),
                "ms_per_image": round(s.ms_per_image, 1),
                "recall_by_condition": {k: _round(v.recall) for k, v in s.by_condition.items()},
                "recall_by_source": {k: _round(v.recall) for k, v in s.by_source.items()},
                "false_positives_per_face_free_image": _round(
                    s.false_positives_per_face_free_image
                ),
                "false_positives_per_image_with_faces": _round(
                    s.false_positives_per_image_with_faces
                ),
                "ms_per_megapixel": round(s.ms_per_megapixel, 1),
                "faces": s.faces.total,
                "images": s.images,
                "missed": list(s.missed),
            }
            for s in summaries
        }
    }


def _cell(share: Share) -> str:
    if not share.total:
        return "-"
    return f"{100 * share.found / share.total:.1f}% ({share.found}/{share.total})"


def _fp(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def markdown(summaries: Sequence[DetectorSummary]) -> str:
    """Two tables, one row per detector: recall by size and source; by condition, FPs, time."""
    sizes = [b[0] for b in SIZE_BUCKETS]
    sources = sorted({k for s in summaries for k in s.by_source})
    head = ["Detector", "Recall", *[f"{b} px" for b in sizes], *[f"{k} faces" for k in sources]]
    rows = [
        [
            s.name,
            _cell(s.faces),
            *[_cell(s.by_size[b]) for b in sizes],
            *[_cell(s.by_source.get(k, Share(0, 0))) for k in sources],
        ]
        for s in summaries
    ]
    conds = ["none", *CONDITIONS]
    head2 = [
        "Detector",
        *conds,
        "FP / face-free image",
        "FP / image with faces",
        "ms / photo",
        "ms / MP",
    ]
    rows2 = [
        [
            s.name,
            *[_cell(s.by_condition[c]) for c in conds],
            _fp(s.false_positives_per_face_free_image),
            _fp(s.false_positives_per_image_with_faces),
            f"{s.ms_per_image:.0f}",
            f"{s.ms_per_megapixel:.0f}",
        ]
        for s in summaries
    ]
    return "\n\n".join(_table(h, r) for h, r in ((head, rows), (head2, rows2)))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
