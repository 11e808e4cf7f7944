"""Builds the annotated detection set that `manage.py evaluate_detection` reads.

    python -m evaluation.detection_set OUT_DIR [--faces ../shared/faces] [--seed 0]

OUT_DIR gets images, `boxes.json` and `conditions.json` (see evaluation/detection.py):
- `photo-*`: the photos of `faces/photos`, copied, with the hand-checked boxes of
  evaluation/detection_photos.json;
- `nonface-*`: the images of `faces/nonface`, copied, with no face;
- `composite-<condition>-NN.jpg`: LFW faces pasted on the non-face images, 1.2 to 12 megapixels,
  faces 16 to 400 px wide (two per size bucket, at most a sixth of the canvas height), plain or
  under one condition: rolled 20-45 degrees (`rotated`), under-exposed 4-8x with sensor noise
  (`dark`), Gaussian blur of 3-6% of the face width (`blurred`), or chosen among the LFW faces
  turned furthest from frontal (`profile`).

LFW's deep-funneled 250x250 crops put every face at nearly the same place, so one box
(`LFW_FACE_BOX`) is the true box of every pasted face, and the poses come from dlib's 5-point
predictor run inside that box: neither needs a face detector, so the set favours none of the
detectors it measures. Deterministic for a given seed and input folder; images are generated,
never committed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ANNOTATIONS = pathlib.Path(__file__).with_name("detection_photos.json")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# Median CenterFace box (forehead to chin) over the 6,360 images of ../shared/faces/lfw; the
# deep-funneled faces vary around it by about 10% in size.
LFW_FACE_BOX = (80.0, 67.0, 172.0, 189.0)
LFW_SIZE = 250
CANVASES = ((1280, 960), (2048, 1536), (1600, 1200), (4000, 3000))
FACE_WIDTHS = ((16, 31), (32, 63), (64, 127), (128, 400))
FACES_PER_BUCKET = 2
CONDITIONS = ("plain", "rotated", "dark", "blurred", "profile")
PROFILE_MIN_YAW = 35.0  # degrees, head_pose()'s proxy: 227 of the 6,360 LFW faces, 3/4 views


@dataclass(frozen=True)
class Pasted:
    box: tuple[float, float, float, float]
    condition: str


def _rgb(path: pathlib.Path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return img.convert("RGB")


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`image` scaled to cover `size` and centre-cropped to it."""
    scale = max(size[0] / image.width, size[1] / image.height)
    scaled = image.resize(
        (max(size[0], round(image.width * scale)), max(size[1], round(image.height * scale))),
        Image.Resampling.BICUBIC,
    )
    left, top = (scaled.width - size[0]) // 2, (scaled.height - size[1]) // 2
    return scaled.crop((left, top, left + size[0], top + size[1]))


def lfw_yaws(lfw: pathlib.Path, names: Sequence[str]) -> np.ndarray:
    """|yaw| in degrees of each LFW image, from dlib's 5 points inside LFW_FACE_BOX."""
    import dlib

    from recognition.core.detection import _landmark_predictor
    from recognition.core.ood import head_pose

    predictor = _landmark_predictor()
    x0, y0, x1, y1 = (round(v) for v in LFW_FACE_BOX)
    rect = dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
    yaws = np.zeros(len(names))
    for i, name in enumerate(names):
        shape = predictor(np.asarray(_rgb(lfw / name)), rect)
        yaws[i] = abs(head_pose([(p.x, p.y) for p in shape.parts()]).yaw)
    return yaws


def _face_patch(
    lfw_image: Image.Image, width: float, condition: str, rng: np.random.Generator
) -> tuple[Image.Image, Image.Image, float, float]:
    """(patch, alpha mask, true box width, true box height): the face scaled to `width` px,
    centred in the patch, under `condition` (the dark one is applied to the whole canvas)."""
    x0, y0, x1, y1 = LFW_FACE_BOX
    scale = width / (x1 - x0)
    face = lfw_image.resize(
        (round(LFW_SIZE * scale), round(LFW_SIZE * scale)), Image.Resampling.LANCZOS
    )
    cx, cy = (x0 + x1) / 2 * scale, (y0 + y1) / 2 * scale
    half = 0.8 * (y1 - y0) * scale  # the patch reaches past forehead and chin
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    patch = face.crop(box)
    mask = Image.new("L", patch.size, 0)
    fw, fh = (x1 - x0) * scale, (y1 - y0) * scale
    mx, my = patch.width / 2, patch.height / 2
    ImageDraw.Draw(mask).ellipse(
        (mx - 0.68 * fw, my - 0.62 * fh, mx + 0.68 * fw, my + 0.62 * fh), fill=255
    )
    mask = mask.filter(ImageFilter.GaussianBlur(radius=max(1.0, 0.06 * fw)))
    if condition == "blurred":
        patch = patch.filter(ImageFilter.GaussianBlur(radius=fw * rng.uniform(0.03, 0.06)))
    if condition == "rotated":
        angle = float(rng.uniform(20, 45) * rng.choice([-1, 1]))
        patch = patch.rotate(angle, Image.Resampling.BICUBIC, expand=True)
        mask = mask.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    return patch, mask, fw, fh


def _composite(
    background: Image.Image,
    size: tuple[int, int],
    faces: Sequence[Image.Image],
    condition: str,
    rng: np.random.Generator,
) -> tuple[Image.Image, list[Pasted]]:
    canvas = _cover(background, size)
    taken: list[tuple[float, float, float, float]] = []
    pasted: list[Pasted] = []
    # Largest first, so that the big faces still find room on a small canvas.
    widths = [
        float(rng.uniform(low, min(high, size[1] / 6) + 1))
        for low, high in reversed(FACE_WIDTHS)
        for _ in range(FACES_PER_BUCKET)
    ]
    for face, width in zip(faces, widths, strict=True):
        patch, mask, fw, fh = _face_patch(face, width, condition, rng)
        for _ in range(200):
            left = int(rng.integers(0, size[0] - patch.width + 1))
            top = int(rng.integers(0, size[1] - patch.height + 1))
            spot = (left, top, left + patch.width, top + patch.height)
            if not any(
                spot[0] < t[2] and t[0] < spot[2] and spot[1] < t[3] and t[1] < spot[3]
                for t in taken
            ):
                break
        else:
            continue  # no free spot left on this canvas: fewer faces, still truthful
        canvas.paste(patch, (left, top), mask)
        taken.append(spot)
        cx, cy = left + patch.width / 2, top + patch.height / 2
        box = (cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2)
        pasted.append(Pasted(tuple(round(v, 1) for v in box), condition))  # type: ignore[arg-type]
    if condition == "dark":
        pixels = np.asarray(canvas, dtype=np.float32) / rng.uniform(4, 8)
        pixels += rng.normal(0, 1.5, pixels.shape)
        canvas = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return canvas, pasted


def _flat_name(prefix: str, relative: str) -> str:
    return f"{prefix}-{relative.replace('/', '-')}"


def build(
    faces_dir: pathlib.Path,
    out_dir: pathlib.Path,
    seed: int = 0,
    per_condition: int = 8,
    max_lfw: int | None = None,
) -> dict[str, list[list[float]]]:
    """Write the set into out_dir (created; files of an earlier build are replaced).

    `max_lfw` draws the composites' faces from the first N LFW images only (for tests)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    boxes: dict[str, list[list[float]]] = {}
    conditions: dict[str, list[list[str]]] = {}
    annotated = json.loads(ANNOTATIONS.read_text())["photos"]
    for relative, face_boxes in annotated.items():
        name = _flat_name("photo", relative)
        shutil.copyfile(faces_dir / "photos" / relative, out_dir / name)
        boxes[name] = [[float(v) for v in b] for b in face_boxes]
    for path in sorted((faces_dir / "nonface").iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            name = _flat_name("nonface", path.name)
            shutil.copyfile(path, out_dir / name)
            boxes[name] = []

    rng = np.random.default_rng(seed)
    lfw = faces_dir / "lfw"
    names = sorted(
        f"{p.parent.name}/{p.name}" for p in lfw.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES
    )[:max_lfw]
    yaws = lfw_yaws(lfw, names)
    profile_pool = [n for n, yaw in zip(names, yaws, strict=True) if yaw >= PROFILE_MIN_YAW]
    frontal_pool = [n for n, yaw in zip(names, yaws, strict=True) if yaw < PROFILE_MIN_YAW]
    nonface = sorted((faces_dir / "nonface").iterdir())
    backgrounds = [_rgb(p) for p in nonface if p.suffix.lower() in IMAGE_SUFFIXES]
    n_faces = FACES_PER_BUCKET * len(FACE_WIDTHS)
    for condition in CONDITIONS:
        pool = profile_pool if condition == "profile" else frontal_pool
        for k in range(per_condition):
            chosen = rng.choice(len(pool), size=n_faces, replace=False)
            faces = [_rgb(lfw / pool[i]) for i in chosen]
            background = backgrounds[int(rng.integers(len(backgrounds)))]
            size = CANVASES[k % len(CANVASES)]
            image, pasted = _composite(background, size, faces, condition, rng)
            name = f"composite-{condition}-{k:02d}.jpg"
            image.save(out_dir / name, quality=92)
            boxes[name] = [list(p.box) for p in pasted]
            conditions[name] = [[] if p.condition == "plain" else [p.condition] for p in pasted]
    (out_dir / "boxes.json").write_text(json.dumps(boxes, indent=1) + "\n")
    (out_dir / "conditions.json").write_text(json.dumps(conditions, indent=1) + "\n")
    return boxes


def main(argv: Sequence[str] | None = None) -> None:
    repo = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=pathlib.Path)
    parser.add_argument("--faces", type=pathlib.Path, default=repo.parent / "shared" / "faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-condition", type=int, default=8)
    args = parser.parse_args(argv)
    boxes = build(args.faces, args.out_dir, args.seed, args.per_condition)
    faces = sum(len(b) for b in boxes.values())
    print(f"wrote {len(boxes)} images with {faces} true faces to {args.out_dir}")


if __name__ == "__main__":
    main()
