"""What re-embedding a library costs: seconds per 1,000 photos on this machine, per kind of switch.

Run: .venv/bin/python -m bench.bench_reembed [--rounds 2] [--lfw 200]
Prints the numbers and writes the `reembed` section of BENCHMARKS.md.

The job's work per photo (recognition/actions/models.py, `stage_photo`) is measured with the
app's own steps, without the database:
- same detector (dlib-resnet-v1 <-> dlib-resnet-flip-v1): decode the original, align every face
  from its stored landmarks, embed (the flip version runs the network on each chip and on its
  mirror image), and the filter's verdict;
- another detector (an InsightFace pack): decode, detect and align again, embed, verdict. No pack
  is reachable here, so this row runs the default CenterFace + dlib pipeline as the stand-in: it
  has the same steps; SCRFD-10G and ArcFace-R50 are heavier networks than CenterFace and dlib's
  ResNet, so a real pack costs more per photo than this row says.
The photos are the gallery photos of ../shared/faces/photos (26 photos, 0.1-2 megapixels) and
`--lfw` LFW images (250x250, one face each). The switch itself (one transaction: bulk update,
templates, re-match) is not in these numbers; see the README.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import time

import numpy as np

from bench._report import write_section
from recognition.core import ood
from recognition.core.detection import DetectedFace, DetectorConfig, align_faces
from recognition.core.embedding import get_embedder
from recognition.core.images import DEFAULT_MAX_PIXELS, decode_image
from recognition.core.pipeline import detect_and_align
from recognition.core.versions import DLIB_RESNET_FLIP_VERSION, DLIB_RESNET_VERSION

FACES = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "faces"


def _photos(lfw: int) -> list[pathlib.Path]:
    gallery = sorted(p for p in (FACES / "photos").rglob("*") if p.is_file())
    people = sorted((FACES / "lfw").iterdir())[:lfw]
    return gallery + [sorted(d.iterdir())[0] for d in people]


def _rgb(path: pathlib.Path) -> np.ndarray:
    return decode_image(path, max_pixels=DEFAULT_MAX_PIXELS).rgb


def _assess(chips: np.ndarray, faces: list[DetectedFace], vectors: np.ndarray) -> None:
    if len(faces):
        ood.assess(
            chips,
            [min(f.width, f.height) for f in faces],
            [f.landmarks for f in faces],
            [f.score for f in faces],
            vectors,
            None,
            ood.Rules(),
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--lfw", type=int, default=200)
    args = parser.parse_args()
    config = DetectorConfig()
    photos = _photos(args.lfw)
    # The library as processing left it: the stored boxes and landmarks of every photo.
    stored = {p: detect_and_align(_rgb(p), config).faces for p in photos}
    n_faces = sum(len(f) for f in stored.values())
    plain = get_embedder(DLIB_RESNET_VERSION)
    flip = get_embedder(DLIB_RESNET_FLIP_VERSION)

    def same_detector(embedder: object) -> float:
        t0 = time.perf_counter()
        for p in photos:
            rgb = _rgb(p)
            faces = stored[p]
            chips = align_faces(rgb, faces)
            vectors = embedder.embed(chips) if len(faces) else np.zeros((0, 128))  # type: ignore[attr-defined]
            _assess(chips, faces, vectors)
        return time.perf_counter() - t0

    def new_detector() -> float:
        t0 = time.perf_counter()
        for p in photos:
            detected = detect_and_align(_rgb(p), config)
            vectors = plain.embed(detected.chips) if detected.faces else np.zeros((0, 128))
            _assess(detected.chips, detected.faces, vectors)
        return time.perf_counter() - t0

    rows = {
        "to dlib-resnet-flip-v1 (same detector, 2 passes per face)": lambda: same_detector(flip),
        "to dlib-resnet-v1 (same detector)": lambda: same_detector(plain),
        "to another detector (stand-in: CenterFace + dlib again)": new_detector,
    }
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name, run in rows.items():
            times[name].append(run())
    load = os.getloadavg()
    lines = [
        f"Re-embedding cost on this machine ({os.cpu_count()} cores, load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end; torch threads: all cores), "
        f"{len(photos)} photos ({len(photos) - args.lfw} gallery photos + {args.lfw} LFW images) "
        f"with {n_faces} faces, median of {args.rounds} rounds. `python -m bench.bench_reembed`.",
        "",
        "| switch | ms per photo | seconds per 1,000 photos |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        per_photo = statistics.median(values) / len(photos) * 1000
        lines.append(f"| {name} | {per_photo:.0f} | {per_photo:.0f} |")
    lines += [
        "",
        "Staging only (decode, align, embed, filter); the atomic switch at the end (bulk update "
        "of the faces, templates in the new basis, re-matching) is one transaction on top.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("reembed", text)


if __name__ == "__main__":
    main()
