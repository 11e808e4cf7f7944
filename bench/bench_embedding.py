"""Embedding speed: dlib's own per-face call against the torch port, and photos per second end to
end (decode -> detect -> align -> embed), on the real faces in ../shared/faces.

Run: .venv/bin/python -m bench.bench_embedding
Prints the numbers and writes the `embedding` section of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import pathlib
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import dlib
import numpy as np
import torch

from bench._report import write_section
from evaluation.folder import list_labeled_images
from recognition.core.detection import DetectorConfig, align_faces, detect_faces
from recognition.core.embedding import DlibReferenceEmbedder, Embedder, get_embedder
from recognition.core.images import DEFAULT_MAX_PIXELS, decode_image

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))
N_CHIPS = 64
N_LFW_PHOTOS = 200


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    torch: str
    dlib: str
    python: str

    def describe(self) -> str:
        return (
            f"{self.cpu}, {self.cores} cores; torch {self.torch} "
            f"({torch.get_num_threads()} threads), dlib {self.dlib}, Python {self.python}"
        )


def machine() -> Machine:
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return Machine(
        cpu=cpu,
        cores=len(os.sched_getaffinity(0)),
        torch=torch.__version__,
        dlib=dlib.__version__,
        python=platform.python_version(),
    )


def photo_paths() -> list[pathlib.Path]:
    return sorted(p for p in (FACES / "photos").rglob("*") if p.is_file())


def lfw_paths(n: int) -> list[pathlib.Path]:
    root = FACES / "lfw"
    items = list_labeled_images(root)
    step = max(len(items) // n, 1)
    return [root / name for name, _ in items[::step][:n]]


def collect_chips(n: int) -> np.ndarray:
    """Chips of every face in the gallery photos, topped up with LFW faces to n."""
    chips = []
    for path in photo_paths() + lfw_paths(n):
        rgb = decode_image(path, max_pixels=DEFAULT_MAX_PIXELS).rgb
        chips.extend(align_faces(rgb, detect_faces(rgb)))
        if len(chips) >= n:
            break
    return np.stack(chips[:n])


@dataclass(frozen=True)
class Timing:
    """Per-face times over several rounds. On a shared machine the wall clock also counts time
    spent waiting for a core; CPU time (all of this process's threads) does not."""

    best: float  # wall ms per face, fastest round
    median: float  # wall ms per face
    cpu: float  # CPU ms per face, median round
    rounds: int


def ms_per_face(
    embed: Callable[[np.ndarray], np.ndarray], chips: np.ndarray, batch: int, seconds: float = 6.0
) -> Timing:
    """Time per face embedding `chips` in batches of `batch`, over rounds within `seconds`."""
    embed(chips[:batch])  # warm-up: allocator and oneDNN kernel selection
    wall, cpu = [], []
    deadline = time.perf_counter() + seconds
    while len(wall) < 3 or (time.perf_counter() < deadline and len(wall) < 10):
        t0, c0 = time.perf_counter(), time.process_time()
        for start in range(0, len(chips), batch):
            embed(chips[start : start + batch])
        wall.append((time.perf_counter() - t0) * 1000 / len(chips))
        cpu.append((time.process_time() - c0) * 1000 / len(chips))
    return Timing(min(wall), statistics.median(wall), statistics.median(cpu), len(wall))


@dataclass(frozen=True)
class EndToEnd:
    photos: int
    faces: int
    seconds: float
    cpu_seconds: float
    stages_ms: dict[str, float]

    @property
    def photos_per_second(self) -> float:
        return self.photos / self.seconds

    @property
    def photos_per_cpu_second(self) -> float:
        return self.photos / self.cpu_seconds


def end_to_end(paths: list[pathlib.Path], embedder: Embedder) -> EndToEnd:
    """One photo at a time, as a worker processes an upload: all faces of a photo in one batch."""
    stages = dict.fromkeys(("decode", "detect", "align", "embed"), 0.0)
    faces = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for path in paths:
        t0 = time.perf_counter()
        rgb = decode_image(path, max_pixels=DEFAULT_MAX_PIXELS).rgb
        t1 = time.perf_counter()
        found = detect_faces(rgb, DetectorConfig(model="hog"))
        t2 = time.perf_counter()
        chips = align_faces(rgb, found)
        t3 = time.perf_counter()
        embedder.embed(chips)
        t4 = time.perf_counter()
        for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            stages[stage] += seconds
        faces += len(found)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    per_photo = {k: 1000 * v / len(paths) for k, v in stages.items()}
    return EndToEnd(len(paths), faces, seconds, cpu_seconds, per_photo)


def main() -> None:
    info = machine()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    torch_embedder = get_embedder("dlib-resnet-v1", "cpu")
    load_s = time.perf_counter() - t0
    reference = DlibReferenceEmbedder()
    chips = collect_chips(N_CHIPS)
    print(f"machine: {info.describe()}")
    print(f"{len(chips)} real face chips; weights read from .dat in {load_s * 1000:.0f} ms")

    parity = float(np.abs(torch_embedder.embed(chips) - reference.embed(chips)).max())
    print(f"parity: max |torch - dlib| = {parity:.2e}")
    dlib_t = ms_per_face(reference.embed, chips[:16], batch=1)
    print(
        f"dlib compute_face_descriptor, one face per call: {dlib_t.best:.1f} ms/face best, "
        f"{dlib_t.cpu:.1f} CPU ms/face"
    )
    threads = torch.get_num_threads()
    rows = []
    for label, batch, n_threads in (
        (f"torch, batch 1, {threads} threads", 1, threads),
        (f"torch, batch 32, {threads} threads", 32, threads),
        ("torch, batch 1, 1 thread", 1, 1),
        ("torch, batch 32, 1 thread", 32, 1),
    ):
        torch.set_num_threads(n_threads)
        t = ms_per_face(torch_embedder.embed, chips, batch=batch)
        rows.append((label, t))
        print(
            f"{label}: {t.best:.2f} ms/face best, {t.median:.2f} median, {t.cpu:.2f} CPU "
            f"({dlib_t.best / t.best:.1f}x dlib by wall clock, {dlib_t.cpu / t.cpu:.1f}x by CPU)"
        )
    torch.set_num_threads(threads)

    photos = end_to_end(photo_paths(), torch_embedder)
    lfw = end_to_end(lfw_paths(N_LFW_PHOTOS), torch_embedder)
    for label, run in (("gallery photos", photos), ("LFW 250x250", lfw)):
        stages = ", ".join(f"{k} {v:.1f}" for k, v in run.stages_ms.items())
        print(
            f"end to end, {label}: {run.photos} photos, {run.faces} faces, "
            f"{run.photos_per_second:.2f} photos/s, {run.photos_per_cpu_second:.2f} per CPU-s "
            f"(ms per photo: {stages})"
        )
    load_after = os.getloadavg()[0]
    print(f"1-minute load average: {load_before:.2f} before, {load_after:.2f} after")

    embed_rows = "\n".join(
        f"| {label} | {t.best:.2f} | {t.median:.2f} | {t.cpu:.2f} | "
        f"{dlib_t.best / t.best:.1f}x | {dlib_t.cpu / t.cpu:.1f}x |"
        for label, t in rows
    )
    slowest = max(photos.stages_ms, key=photos.stages_ms.__getitem__)

    def stage_row(label: str, run: EndToEnd) -> str:
        s = run.stages_ms
        return (
            f"| {label} | {run.photos} | {run.faces} | {run.photos_per_second:.2f} | "
            f"{run.photos_per_cpu_second:.2f} | "
            f"{s['decode']:.1f} | {s['detect']:.1f} | {s['align']:.1f} | {s['embed']:.1f} |"
        )

    write_section(
        "embedding",
        f"""## Face embedding (`python -m bench.bench_embedding`)

Machine: {info.describe()}. 1-minute load average {load_before:.2f} before the run and
{load_after:.2f} after: the machine is shared, and with more runnable processes than cores every
number here is slower, torch with 2 threads most of all (its threads wait for each other). So the
tables also give CPU time (summed over this process's threads), which waiting does not inflate;
for the single-threaded rows it is close to what the wall clock shows on an idle machine.

dlib's ResNet read from `dlib_face_recognition_resnet_model_v1.dat` ({load_s * 1000:.0f} ms) and
run in torch, against dlib's own `compute_face_descriptor` on {len(chips)} real face chips
(gallery photos and LFW). Max |torch - dlib| on these chips: {parity:.1e}.

| Embedder | Wall ms/face, best | Wall, median | CPU ms/face | Speed-up, wall | Speed-up, CPU |
|---|---|---|---|---|---|
| dlib `compute_face_descriptor`, one call per face | {dlib_t.best:.1f} | \
{dlib_t.median:.1f} | {dlib_t.cpu:.1f} | 1x | 1x |
{embed_rows}

End to end, one photo at a time (decode -> HOG detect, upsample 1 -> align -> torch embed of
the photo's faces in one batch); ms per photo by stage:

| Photos | Count | Faces | Photos/s | Photos per CPU-s | decode | detect | align | embed |
|---|---|---|---|---|---|---|---|---|
{stage_row("gallery photos (`photos/`, 0.1-4.7 MP)", photos)}
{stage_row("LFW crops, 250x250", lfw)}

Slowest stage on the gallery photos in this run: {slowest}.
""",
    )
    print("wrote the 'embedding' section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
