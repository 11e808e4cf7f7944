"""Synthetic degradations of face photos (the out-of-distribution examples `train_ood` learns
from) and benign shifts (grayscale, sepia, crops, small faces...: in distribution unless 1-NN gets
the face wrong).

Pure functions on HxWx3 uint8 RGB arrays. Strengths are relative to the face size (`face_px`, the
side of the detector box), so a degradation means the same thing for a 100 px LFW face and a 600 px
face in a phone photo. The ranges are chosen to hurt identification (see BENCHMARKS.md, "ood"):
a degradation that leaves the embedding as useful as the clean one is not out of distribution.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass(frozen=True)
class Box:
    """A face box in image pixels; right/bottom exclusive."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def side(self) -> int:
        return min(self.right - self.left, self.bottom - self.top)


@dataclass(frozen=True)
class Degraded:
    """A degraded photo; `landmark_shift` (dx, dy, scale, angle) misaligns the chip instead."""

    kind: str
    params: dict[str, float]
    rgb: np.ndarray
    landmark_shift: tuple[float, float, float, float] | None = None
    # Where the face is in `rgb` when the shift moved or resized it (crops, smaller copies).
    box: Box | None = None


def _pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(rgb))


def blur(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    sigma = box.side * rng.uniform(0.035, 0.09)
    out = np.asarray(_pil(rgb).filter(ImageFilter.GaussianBlur(radius=sigma)))
    return Degraded("blur", {"sigma_px": sigma}, out)


def motion_blur(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    length = max(3, round(box.side * rng.uniform(0.12, 0.25)))
    angle = rng.uniform(0, 180)
    # A line kernel rotated by `angle`, applied by sampling shifted copies (no scipy needed).
    steps = np.linspace(-length / 2, length / 2, length)
    dx, dy = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    acc = np.zeros(rgb.shape, dtype=np.float32)
    for s in steps:
        shifted = np.roll(rgb, (round(s * dy), round(s * dx)), axis=(0, 1))
        acc += shifted.astype(np.float32)
    out = np.clip(acc / len(steps), 0, 255).astype(np.uint8)
    return Degraded("motion_blur", {"length_px": float(length), "angle": angle}, out)


def downscale(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """Shrink until the face is 10-20 px wide, then enlarge back: a low-resolution source."""
    target = rng.uniform(10, 20)
    factor = min(1.0, target / max(box.side, 1))
    h, w = rgb.shape[:2]
    small = _pil(rgb).resize(
        (max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.BILINEAR
    )
    out = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))
    return Degraded("downscale", {"face_px": target}, out)


def noise(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    sigma = rng.uniform(35, 70)
    noisy = rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape).astype(np.float32)
    return Degraded("noise", {"sigma": sigma}, np.clip(noisy, 0, 255).astype(np.uint8))


def jpeg(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    quality = int(rng.integers(2, 6))
    buf = io.BytesIO()
    _pil(rgb).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        out = np.asarray(img.convert("RGB"))
    return Degraded("jpeg", {"quality": float(quality)}, out)


PLACES = ("eyes", "lower", "left", "right")


def occlusion(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """A solid patch over the eyes, the lower face or one side, covering 35-60% of the face."""
    out = rgb.copy()
    w, h = box.right - box.left, box.bottom - box.top
    frac = rng.uniform(0.35, 0.6)
    where = PLACES[int(rng.integers(0, len(PLACES)))]
    if where == "eyes":
        top = box.top + round(h * 0.1)
        region = (box.left - w // 10, top, box.right + w // 10, top + round(h * frac))
    elif where == "lower":
        region = (box.left - w // 10, box.bottom - round(h * frac), box.right + w // 10, box.bottom)
    elif where == "left":
        region = (box.left - w // 10, box.top, box.left + round(w * frac), box.bottom)
    else:
        region = (box.right - round(w * frac), box.top, box.right + w // 10, box.bottom)
    x0, y0, x1, y1 = (max(0, v) for v in region)
    colour = rng.integers(0, 256, 3) if rng.random() < 0.5 else np.full(3, rng.integers(0, 60))
    out[y0:y1, x0:x1] = colour.astype(np.uint8)
    return Degraded(
        "occlusion",
        {"fraction": frac, "where": float(PLACES.index(where))},
        out,
    )


def underexpose(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    gain = rng.uniform(0.02, 0.06)
    dark = rgb.astype(np.float32) * gain
    # Sensor noise shows up once an underexposed image is brightened; a dark photo is not clean.
    dark += rng.normal(0, 1.5, rgb.shape).astype(np.float32)
    return Degraded("underexpose", {"gain": gain}, np.clip(dark, 0, 255).astype(np.uint8))


def overexpose(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    gain = rng.uniform(2.6, 4.5)
    bright = rgb.astype(np.float32) * gain + rng.uniform(20, 60)
    return Degraded("overexpose", {"gain": gain}, np.clip(bright, 0, 255).astype(np.uint8))


def partial(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """Cut the photo through the face so that 30-45% of it is outside the frame (an edge crop)."""
    frac = rng.uniform(0.3, 0.45)
    w, h = box.right - box.left, box.bottom - box.top
    side = int(rng.integers(0, 4))
    dx = dy = 0
    if side == 0:
        dx = box.left + round(w * frac)
        out = rgb[:, dx:]
    elif side == 1:
        out = rgb[:, : box.right - round(w * frac)]
    elif side == 2:
        dy = box.top + round(h * frac)
        out = rgb[dy:, :]
    else:
        out = rgb[: box.bottom - round(h * frac), :]
    moved = Box(box.left - dx, box.top - dy, box.right - dx, box.bottom - dy)
    return Degraded(
        "partial",
        {"fraction": frac, "side": float(side)},
        np.ascontiguousarray(out),
        box=moved,
    )


def misalign(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """An off-centre chip: the landmarks the aligner uses are shifted, scaled and turned."""
    dx, dy = rng.uniform(0.2, 0.35, 2) * rng.choice([-1, 1], 2) * box.side
    scale = float(np.exp(rng.uniform(-0.35, 0.35)))
    angle = float(rng.uniform(-35, 35))
    return Degraded(
        "misalign",
        {"dx": float(dx), "dy": float(dy), "scale": scale, "angle": angle},
        rgb,
        landmark_shift=(float(dx), float(dy), scale, angle),
    )


DEGRADATIONS: dict[str, Callable[[np.ndarray, Box, np.random.Generator], Degraded]] = {
    "blur": blur,
    "motion_blur": motion_blur,
    "downscale": downscale,
    "noise": noise,
    "jpeg": jpeg,
    "occlusion": occlusion,
    "underexpose": underexpose,
    "overexpose": overexpose,
    "partial": partial,
    "misalign": misalign,
}


def degrade(rgb: np.ndarray, box: Box, kind: str, rng: np.random.Generator) -> Degraded:
    """Apply the named degradation; `rng` makes it reproducible."""
    try:
        fn = DEGRADATIONS[kind]
    except KeyError:
        raise ValueError(f"unknown degradation {kind!r}; known: {sorted(DEGRADATIONS)}") from None
    return fn(rgb, box, rng)


# ---------------------------------------------------------------------------------------------
# Benign shifts: ordinary photos that look unlike LFW but that recognition handles. The filter is
# trained to accept them (unless 1-NN misidentifies the face) and its table reports each one.


def _resized(rgb: np.ndarray, box: Box, factor: float) -> tuple[np.ndarray, Box]:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    out = np.asarray(_pil(rgb).resize(size, Image.Resampling.LANCZOS))
    return out, Box(*(round(v * factor) for v in (box.left, box.top, box.right, box.bottom)))


def _crop(rgb: np.ndarray, box: Box, margin: float) -> tuple[np.ndarray, Box]:
    """A square crop around the face, `margin` face sides beyond the box on each side, padded
    with the edge pixels where it leaves the photo."""
    cx, cy = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    half = box.side * (0.5 + margin)
    x0, y0 = round(cx - half), round(cy - half)
    side = round(2 * half)
    h, w = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
    padded = np.pad(rgb, ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else rgb
    out = np.ascontiguousarray(padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side])
    return out, Box(box.left - x0, box.top - y0, box.right - x0, box.bottom - y0)


def grayscale(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    grey = np.asarray(_pil(rgb).convert("L"))
    return Degraded("grayscale", {}, np.repeat(grey[..., None], 3, axis=2))


_SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def sepia(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    strength = rng.uniform(0.6, 1.0)
    matrix = strength * _SEPIA + (1 - strength) * np.eye(3)
    out = rgb.astype(np.float32) @ matrix.T.astype(np.float32)
    return Degraded("sepia", {"strength": strength}, np.clip(out, 0, 255).astype(np.uint8))


def faded_scan(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """An old print, scanned: washed out (contrast 55-80%, lifted blacks), yellowed, a little
    soft and grainy."""
    contrast = rng.uniform(0.55, 0.8)
    lift = rng.uniform(20, 50)
    out = rgb.astype(np.float32) * contrast + lift
    out *= np.array([1.0, 0.97, rng.uniform(0.8, 0.92)], dtype=np.float32)
    out = np.asarray(
        _pil(np.clip(out, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius=box.side * rng.uniform(0.0, 0.006))
        )
    ).astype(np.float32)
    out += rng.normal(0, rng.uniform(1.0, 3.0), out.shape).astype(np.float32)
    return Degraded(
        "faded_scan",
        {"contrast": contrast, "lift": lift},
        np.clip(out, 0, 255).astype(np.uint8),
    )


def tight_crop(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """An aligned-style face crop (little or no background), resized to 100-160 px."""
    cropped, inner = _crop(rgb, box, rng.uniform(0.05, 0.2))
    side = int(rng.integers(100, 161))
    out, moved = _resized(cropped, inner, side / cropped.shape[0])
    return Degraded("tight_crop", {"side": float(side)}, out, box=moved)


def loose_crop(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """A face cut out with a lot of background, the face 60-140 px wide."""
    cropped, inner = _crop(rgb, box, rng.uniform(0.6, 1.2))
    face = rng.uniform(60, 140)
    out, moved = _resized(cropped, inner, face / max(inner.side, 1))
    return Degraded("loose_crop", {"face_px": face}, out, box=moved)


def small(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """The whole photo smaller, the face 40-70 px (40 is the app's minimum face size)."""
    face = rng.uniform(40, 70)
    out, moved = _resized(rgb, box, min(1.0, face / max(box.side, 1)))
    return Degraded("small", {"face_px": face}, out, box=moved)


def recompress(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    quality = int(rng.integers(25, 71))
    buf = io.BytesIO()
    _pil(rgb).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as img:
        out = np.asarray(img.convert("RGB"))
    return Degraded("recompress", {"quality": float(quality)}, out)


def mild_noise(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    sigma = rng.uniform(3, 8)
    noisy = rgb.astype(np.float32) + rng.normal(0, sigma, rgb.shape).astype(np.float32)
    return Degraded("mild_noise", {"sigma": sigma}, np.clip(noisy, 0, 255).astype(np.uint8))


def sharpen(rgb: np.ndarray, box: Box, rng: np.random.Generator) -> Degraded:
    """Phone-style sharpening: an unsharp mask of 1-2.5 px, 80-200%."""
    radius = rng.uniform(1.0, 2.5)
    percent = int(rng.integers(80, 201))
    out = _pil(rgb).filter(ImageFilter.UnsharpMask(radius=radius, percent=percent, threshold=2))
    return Degraded("sharpen", {"radius": radius, "percent": float(percent)}, np.asarray(out))


BENIGN: dict[str, Callable[[np.ndarray, Box, np.random.Generator], Degraded]] = {
    "grayscale": grayscale,
    "sepia": sepia,
    "faded_scan": faded_scan,
    "tight_crop": tight_crop,
    "loose_crop": loose_crop,
    "small": small,
    "recompress": recompress,
    "mild_noise": mild_noise,
    "sharpen": sharpen,
}


def shift(rgb: np.ndarray, box: Box, kind: str, rng: np.random.Generator) -> Degraded:
    """A benign shift or a degradation by name."""
    if kind in BENIGN:
        return BENIGN[kind](rgb, box, rng)
    return degrade(rgb, box, kind, rng)


def shift_landmarks(landmarks: np.ndarray, shift: tuple[float, float, float, float]) -> np.ndarray:
    """Move (N, 2) landmarks by (dx, dy), scale and rotate them about their centre (degrees)."""
    dx, dy, scale, angle = shift
    centre = landmarks.mean(axis=0)
    theta = np.radians(angle)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return (landmarks - centre) @ rot.T * scale + centre + np.array([dx, dy])
