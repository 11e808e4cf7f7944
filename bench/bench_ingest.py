"""Ingest speed: today's HOG pipeline against the CenterFace pipeline the worker runs, side by
side in one run, on the gallery photos of ../shared/faces and on 1-megapixel copies of them.

Run: .venv/bin/python -m bench.bench_ingest [--rounds 3]
Prints the numbers and writes the `ingest` section of BENCHMARKS.md.

Both pipelines decode, detect, align and embed every photo; neither stores anything (the
database side is the same for both). Threads are the worker's defaults (README:
FACEWEB_TORCH_THREADS=0, every core, for torch and onnxruntime; FACEWEB_WORKER_BATCH=4):
- HOG (before this change): one photo at a time, dlib's HOG with upsample 1 on a copy at most
  1600 px, the photo's faces embedded in one forward pass;
- CenterFace, worker: `recognition.core.pipeline` as `do_process_photos` uses it, the next photos
  decoded and detected in a background thread while the current batch of 4 is embedded in one
  forward pass;
- CenterFace, one photo at a time: the same detector without batching, to separate the two gains.
Rounds alternate between the pipelines so that a busy machine slows them alike; the table gives
the median round. Recall counts the hand-checked faces of evaluation/detection_photos.json found
under evaluate_detection's rule.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from PIL import Image

from bench._report import write_section
from evaluation.detection import Detection, TrueFace, match
from evaluation.detection_set import ANNOTATIONS
from recognition.core.detection import DetectedFace, DetectorConfig
from recognition.core.embedding import Embedder, get_embedder
from recognition.core.images import DEFAULT_MAX_PIXELS, decode_image
from recognition.core.pipeline import (
    Detected,
    batched,
    detect_and_align,
    embed_detected,
    prefetched,
)

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))
WORKER_BATCH = 4  # FACEWEB_WORKER_BATCH's default
ONE_MP = 1_000_000

Source = pathlib.Path | bytes


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    faces: list[list[DetectedFace]]


def sequential(sources: Sequence[Source], detector: DetectorConfig, model: Embedder) -> Run:
    start, cpu = time.perf_counter(), time.process_time()
    faces = []
    for source in sources:
        rgb = decode_image(source, max_pixels=DEFAULT_MAX_PIXELS).rgb
        detected = detect_and_align(rgb, detector)
        embed_detected([detected], model)
        faces.append(detected.faces)
    return Run(time.perf_counter() - start, time.process_time() - cpu, faces)


def worker(sources: Sequence[Source], detector: DetectorConfig, model: Embedder) -> Run:
    start, cpu = time.perf_counter(), time.process_time()

    def prepare(source: Source) -> Detected:
        return detect_and_align(decode_image(source, max_pixels=DEFAULT_MAX_PIXELS).rgb, detector)

    faces: list[list[DetectedFace]] = []
    for chunk in batched(prefetched(sources, prepare, ahead=WORKER_BATCH), WORKER_BATCH):
        embed_detected(chunk, model)
        faces.extend(d.faces for d in chunk)
    return Run(time.perf_counter() - start, time.process_time() - cpu, faces)


def one_megapixel(path: pathlib.Path) -> tuple[bytes, float]:
    """The photo resized to 1 MP (JPEG, quality 92) and the factor its boxes scale by."""
    rgb = decode_image(path, max_pixels=DEFAULT_MAX_PIXELS).rgb
    factor = (ONE_MP / (rgb.shape[0] * rgb.shape[1])) ** 0.5
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    out = io.BytesIO()
    Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=92)
    return out.getvalue(), factor


def true_face(box: Sequence[float], factor: float) -> TrueFace:
    x0, y0, x1, y1 = (float(v) * factor for v in box)
    return TrueFace((x0, y0, x1, y1))


def recall(found: list[list[DetectedFace]], truth: list[list[TrueFace]]) -> tuple[int, int]:
    hits = 0
    for faces, true in zip(found, truth, strict=True):
        dets = [Detection((f.left, f.top, f.right, f.bottom), f.score) for f in faces]
        hits += sum(match(true, dets)[0])
    return hits, sum(len(t) for t in truth)


Pipeline = Callable[[Sequence[Source], DetectorConfig, Embedder], Run]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    annotated = json.loads(ANNOTATIONS.read_text())["photos"]
    paths = [FACES / "photos" / rel for rel in sorted(annotated)]
    truth = [[true_face(b, 1.0) for b in annotated[rel]] for rel in sorted(annotated)]
    small = [one_megapixel(p) for p in paths]
    truth_1mp = [
        [true_face(b, factor) for b in annotated[rel]]
        for rel, (_, factor) in zip(sorted(annotated), small, strict=True)
    ]
    megapixels = []
    for p in paths:
        with Image.open(p) as img:
            megapixels.append(img.width * img.height / 1e6)

    model = get_embedder("dlib-resnet-v1", "cpu")  # every core, as the worker's default
    base = DetectorConfig()  # threads 0: every core, as the worker's default
    pipelines: list[tuple[str, DetectorConfig, Pipeline]] = [
        ("HOG, one photo at a time (before)", replace(base, model="hog"), sequential),
        ("CenterFace, worker (batches of 4, detection one batch ahead)", base, worker),
        ("CenterFace, one photo at a time", base, sequential),
    ]
    sets: list[tuple[str, Sequence[Source], list[list[TrueFace]]]] = [
        (f"`photos/` ({min(megapixels):.1f}-{max(megapixels):.1f} MP)", paths, truth),
        ("`photos/` resized to 1 MP", [b for b, _ in small], truth_1mp),
    ]
    for _, config, pipe in pipelines:  # load the models and warm up outside the timings
        pipe(paths[:2], config, model)

    load_before = os.getloadavg()[0]
    runs: dict[tuple[int, int], list[Run]] = {}
    for _ in range(args.rounds):
        for s, (_, sources, _) in enumerate(sets):
            for p, (_, config, pipe) in enumerate(pipelines):
                runs.setdefault((s, p), []).append(pipe(sources, config, model))
    load_after = os.getloadavg()[0]

    rows = []
    for s, (set_name, sources, true) in enumerate(sets):
        before = statistics.median(len(sources) / r.seconds for r in runs[(s, 0)])
        for p, (name, _, _) in enumerate(pipelines):
            rs = runs[(s, p)]
            rate = statistics.median(len(sources) / r.seconds for r in rs)
            cpu_rate = statistics.median(len(sources) / r.cpu_seconds for r in rs)
            hits, total = recall(rs[0].faces, true)
            extra = sum(len(f) for f in rs[0].faces) - hits
            rows.append(
                f"| {set_name} | {name} | {rate:.2f} | {rate / before:.2f}x | {cpu_rate:.2f} | "
                f"{hits}/{total} | {extra} |"
            )
            print(rows[-1])
    print(f"1-minute load average {load_before:.2f} before, {load_after:.2f} after")
    table = "\n".join(rows)
    write_section(
        "ingest",
        f"""## Ingest speed and recall (`python -m bench.bench_ingest --rounds {args.rounds}`)

Decode -> detect -> align -> embed per photo, nothing stored, with the worker's default
threads (every core for torch and onnxruntime) on this machine's {len(os.sched_getaffinity(0))}
cores; median of {args.rounds} rounds that alternate between the pipelines. 1-minute load average
{load_before:.2f} before and {load_after:.2f} after: the machine is shared, so absolute rates vary
from run to run; the ratios come from the same rounds. Faces found: the hand-checked faces of
`evaluation/detection_photos.json` found under `evaluate_detection`'s rule; other detections
are every box that matched none (a face left unannotated counts here too).

| Photos | Pipeline | Photos/s | vs HOG | Photos per CPU-s | Faces found | Other detections |
|---|---|---|---|---|---|---|
{table}
""",
    )
    print("wrote the 'ingest' section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
