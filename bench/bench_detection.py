"""Detection recall by face size and condition, false positives and speed: CenterFace against
dlib's HOG on the annotated set `evaluation.detection_set` builds from ../shared/faces.

Run: .venv/bin/python -m bench.bench_detection [--set var/detection-set] [--seed 0]
Builds the set when the folder has no boxes.json, runs `manage.py evaluate_detection` on it
(every detector in one process, one after the other) and writes the `detection` section of
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pathlib

import django

REPO = pathlib.Path(__file__).resolve().parent.parent
FACES = pathlib.Path(os.environ.get("FACEWEB_FACES_DIR", REPO.parent / "shared" / "faces"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", type=pathlib.Path, default=REPO / "var" / "detection-set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--detector", nargs="+", default=["centerface", "hog"])
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "faceweb.settings")
    django.setup()
    from django.core.management import call_command

    from evaluation.detection_set import build

    if not (args.set / "boxes.json").exists():
        boxes = build(FACES, args.set, seed=args.seed)
        print(f"built {args.set}: {len(boxes)} images")
    boxes = json.loads((args.set / "boxes.json").read_text())
    n_faces = sum(len(b) for b in boxes.values())
    counts = {
        source: sum(1 for name in boxes if name.startswith(f"{source}-"))
        for source in ("photo", "composite", "nonface")
    }
    out = io.StringIO()
    json_path = args.set / "results.json"
    load_before = os.getloadavg()[0]
    call_command(
        "evaluate_detection",
        str(args.set),
        "--detector",
        *args.detector,
        "--json",
        str(json_path),
        stdout=out,
    )
    load_after = os.getloadavg()[0]
    text = out.getvalue()
    tables = text.split("\n\n", 2)
    markdown = "\n\n".join(tables[:2])
    print(text)
    report = json.loads(json_path.read_text())["detectors"]
    missed_photos = {
        name: [m for m in row["missed"] if m.startswith("photo-")] for name, row in report.items()
    }
    missed = "\n".join(f"- {name}: {', '.join(m) or 'none'}" for name, m in missed_photos.items())
    from bench._report import write_section

    write_section(
        "detection",
        f"""## Face detection (`python -m bench.bench_detection`)

`manage.py evaluate_detection var/detection-set --detector {" ".join(args.detector)}` on the
set `python -m evaluation.detection_set var/detection-set --seed {args.seed}` builds:
{counts["photo"]} gallery photos of `../shared/faces/photos` with hand-checked boxes
(`evaluation/detection_photos.json`), {counts["composite"]} composites of LFW faces pasted on the
non-face images (1.2-12 MP; plain, rotated 20-45 degrees, dark, blurred, and turned 35 degrees or
more), and the {counts["nonface"]} images of `../shared/faces/nonface`; {n_faces} true faces. A face
is found when a detection's centre lies inside its box and the widths agree within a factor of
2.5. Detector settings are the app's (`FACEWEB_MIN_FACE_PX` 40, so CenterFace reads each photo
at 0.8 of its size plus a whole-photo pass at 448 px; HOG with upsample 1 on a copy at most
1600 px); faces under 32 px are below the minimum face size the app is configured for. Times
exclude decoding, with every core for onnxruntime; 1-minute load average {load_before:.2f}
before and {load_after:.2f} after on this shared 2-core machine, so the times are slower than on
an idle one, for both detectors alike.

{markdown}

Gallery photo faces missed:
{missed}
""",
    )
    print("wrote the 'detection' section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
