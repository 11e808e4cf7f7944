"""Out-of-distribution filter: quality features, the learned classifier and readable reasons.

Pure: arrays and frozen dataclasses in, verdicts out; no ORM, no settings (the caller passes
`Rules`). A face is rejected by a hard rule (too small, extremely blurred) or when the classifier's
P(out-of-distribution) reaches the calibrated threshold stored next to the weights. Rejected faces
are never templates and never auto-tagged; recognition/actions/processing.py stores the verdicts.

Every rejection carries readable reasons: the hard rule, or the groups of inputs that pushed the
classifier's score up most (`contributions`: the log-odds minus the log-odds with that group at
its typical in-distribution value), as sentences ("face is small (34 px)", "strong blur",
"head turned ~50 degrees", "unlike the faces the model was trained on"); the bracketed numbers
and the pushes are for staff.

The classifier is a small MLP on the 128-D embedding plus z-scored quality features, trained by
`manage.py train_ood` (evaluation/ood_training.py) and shipped as recognition/weights/ood-vN.pt
with ood-vN.json (threshold, metrics, feature statistics). Weights load once per process.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from recognition.core.geometry import euclidean_distances
from recognition.core.versions import EMBEDDING_DIM

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# Order matters: it is the classifier's input layout, stored in the json as well.
FEATURES: tuple[str, ...] = (
    "log_size",
    "log_blur",
    "noise_excess",
    "brightness",
    "contrast",
    "dark_frac",
    "bright_frac",
    "det_score",
    "abs_yaw",
    "abs_roll",
    "pitch",
    "emb_norm",
    "mean_dist",
    "knn_dist",
)
# LFW faces are about 90-130 px; larger faces carry no more information about quality, and
# without the cap the classifier would extrapolate on the 600 px faces of phone photos.
SIZE_CAP_PX = 120
# Likewise sharpness: LFW's soft 250 px JPEGs put 95% of clean faces under a Laplacian variance
# of ~110, while a sharp phone photo reaches 1000+. Uncapped, "sharper than LFW" looked like the
# noise degradation to the classifier and clean phone photos were rejected; noise has its own
# feature (`noise`), so sharpness above the cap carries nothing the classifier needs.
BLUR_CAP = 100.0
# The noise estimate is ~0.7 grey levels on LFW chips and 1.5-5 on sharp phone photos (grain, fine
# texture), 6-13 under the noise degradation: only the excess over this floor is a feature, so a
# sharp photo is not "noisier than LFW" to the classifier.
NOISE_FLOOR = 5.0
KNN_K = 5
# The face part of a dlib chip (150 px, padding 0.25): the rest is background.
CHIP_FACE = slice(25, 125)


@dataclass(frozen=True)
class Quality:
    """The filter's readable inputs; stored in Face.quality."""

    size_px: int
    blur: float  # variance of the Laplacian over the face part of the chip
    noise: float  # robust noise sigma (median |diagonal detail| / 0.6745), grey levels
    brightness: float  # mean grey level, 0-255
    contrast: float  # standard deviation of the grey level
    dark_frac: float  # share of face pixels under 20
    bright_frac: float  # share of face pixels over 235
    det_score: float
    yaw: float  # degrees, a proxy from the nose's offset between the eyes
    roll: float  # degrees, the eye line's angle
    pitch: float  # nose-to-eye-line distance over the eye distance (about 0.7 when frontal)
    emb_norm: float
    mean_dist: float  # distance to the mean of the reference faces
    knn_dist: float  # mean distance to the KNN_K nearest reference faces

    def as_dict(self) -> dict[str, float]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def vector(self) -> np.ndarray:
        return np.array(
            [
                math.log(max(1, min(self.size_px, SIZE_CAP_PX))),
                math.log1p(min(max(self.blur, 0.0), BLUR_CAP)),
                max(self.noise - NOISE_FLOOR, 0.0),
                self.brightness,
                self.contrast,
                self.dark_frac,
                self.bright_frac,
                self.det_score,
                abs(self.yaw),
                abs(self.roll),
                self.pitch,
                self.emb_norm,
                self.mean_dist,
                self.knn_dist,
            ],
            dtype=np.float32,
        )


@dataclass(frozen=True)
class ChipStats:
    blur: float
    noise: float
    brightness: float
    contrast: float
    dark_frac: float
    bright_frac: float


@dataclass(frozen=True)
class Pose:
    yaw: float
    roll: float
    pitch: float


@dataclass(frozen=True)
class Rules:
    """Hard limits (reject on their own) and the soft limits that only explain a rejection."""

    min_face_px: int = 40
    # On clean LFW chips the variance's 1st percentile is ~10 and 5th ~16 (LFW is soft JPEG);
    # under 5 only 0.03% of clean faces but a third of the degraded ones.
    min_blur: float = 5.0  # extreme blur: rejected whatever the classifier says
    soft_blur: float = 16.0
    dark: float = 50.0
    bright: float = 205.0
    low_contrast: float = 18.0
    yaw: float = 40.0
    roll: float = 25.0
    mean_dist: float = 0.0  # 0: taken from the model's metadata (the 99th clean percentile)


@dataclass(frozen=True)
class OodVerdict:
    rejected: bool
    score: float | None  # the classifier's P(out-of-distribution); None without a model
    reasons: list[str] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    model_version: str = ""
    # Per reason group, how much it raised the classifier's log-odds (see `contributions`).
    contributions: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Features


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def laplacian_variance(grey_image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low on blurred images, high on sharp or noisy ones."""
    g = grey_image.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def noise_sigma(grey_image: np.ndarray) -> float:
    """Donoho's estimate: the finest diagonal wavelet detail is mostly noise; edges are sparse,
    so its median absolute value ignores them."""
    g = grey_image.astype(np.float32)
    h, w = (g.shape[0] // 2) * 2, (g.shape[1] // 2) * 2
    g = g[:h, :w]
    hh = (g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) / 2
    return float(np.median(np.abs(hh)) / 0.6745)


def face_grey(chip: np.ndarray) -> np.ndarray:
    """The face part of a dlib chip in grey levels (uint8, 100x100): what the stats look at."""
    face: np.ndarray = np.clip(np.rint(grey(chip)[CHIP_FACE, CHIP_FACE]), 0, 255)
    return face.astype(np.uint8)


def chip_stats(chip: np.ndarray) -> ChipStats:
    return grey_stats(face_grey(chip))


def grey_stats(face: np.ndarray) -> ChipStats:
    face = face.astype(np.float32)
    return ChipStats(
        blur=laplacian_variance(face),
        noise=noise_sigma(face),
        brightness=float(face.mean()),
        contrast=float(face.std()),
        dark_frac=float((face < 20).mean()),
        bright_frac=float((face > 235).mean()),
    )


# Depth of the nose base in front of the eye corners, in eye distances: turns the nose's
# sideways offset into an angle. A proxy: good to ~10 degrees up to about 45 degrees.
_NOSE_DEPTH = 0.35


def head_pose(landmarks: Sequence[Sequence[float]]) -> Pose:
    """Yaw/roll/pitch proxies from dlib's 5 points (two corners per eye, then the nose base)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if len(pts) != 5:
        return Pose(0.0, 0.0, 0.7)
    eye_a = pts[2:4].mean(axis=0)
    eye_b = pts[0:2].mean(axis=0)
    axis = eye_b - eye_a
    iod = float(np.hypot(*axis))
    if iod < 1e-6:
        return Pose(0.0, 0.0, 0.7)
    u = axis / iod
    v = np.array([-u[1], u[0]])
    offset = pts[4] - (eye_a + eye_b) / 2
    along = float(offset @ u) / iod
    down = float(offset @ v) / iod
    return Pose(
        yaw=math.degrees(math.atan2(along, _NOSE_DEPTH)),
        roll=math.degrees(math.atan2(axis[1], axis[0])),
        pitch=down,
    )


@dataclass(frozen=True)
class Reference:
    """A small sample of in-distribution embeddings shipped with the weights."""

    vectors: np.ndarray  # (M, D) float32
    mean: np.ndarray  # (D,)

    def distances(self, embeddings: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """(N, 2): distance to the mean, mean distance to the KNN_K nearest reference vectors
        (0 when no vectors are shipped).

        `exclude` (N, M) bool masks reference vectors that must not count for a row (the same
        identity, during training).
        """
        emb = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.mean.shape[0])
        to_mean = np.linalg.norm(emb - self.mean, axis=1)
        if not len(self.vectors):
            return np.stack([to_mean, np.zeros_like(to_mean)], axis=1).astype(np.float32)
        d = euclidean_distances(emb, self.vectors)
        if exclude is not None:
            d = np.where(exclude, np.inf, d)
        k = min(KNN_K, d.shape[1])
        nearest = np.partition(d, k - 1, axis=1)[:, :k]
        return np.stack([to_mean, nearest.mean(axis=1)], axis=1).astype(np.float32)


def quality_features(
    chip: np.ndarray,
    size_px: int,
    landmarks: Sequence[Sequence[float]],
    det_score: float,
    embedding: np.ndarray,
    reference: Reference | None,
) -> Quality:
    stats = chip_stats(chip)
    pose = head_pose(landmarks)
    emb = np.asarray(embedding, dtype=np.float32).ravel()
    if reference is not None:
        to_mean, knn = (float(x) for x in reference.distances(emb[None, :])[0])
    else:
        to_mean, knn = 0.0, 0.0
    return Quality(
        size_px=int(size_px),
        blur=stats.blur,
        noise=stats.noise,
        brightness=stats.brightness,
        contrast=stats.contrast,
        dark_frac=stats.dark_frac,
        bright_frac=stats.bright_frac,
        det_score=float(det_score),
        yaw=pose.yaw,
        roll=pose.roll,
        pitch=pose.pitch,
        emb_norm=float(np.linalg.norm(emb)),
        mean_dist=to_mean,
        knn_dist=knn,
    )


# ---------------------------------------------------------------------------------------------
# The classifier


class OodNet(nn.Module):
    """P(out-of-distribution) from [embedding, z-scored quality features]."""

    def __init__(self, n_inputs: int, hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_inputs, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(x)
        return logits.squeeze(-1)


@dataclass(frozen=True)
class FeatureSpec:
    """Which inputs the classifier sees and how they are normalised."""

    features: tuple[str, ...]
    mean: np.ndarray  # per feature in `features`
    std: np.ndarray
    use_embedding: bool = True
    embedding_scale: float = 1.0

    def columns(self) -> list[int]:
        return [FEATURES.index(name) for name in self.features]

    def inputs(self, embeddings: np.ndarray, quality: np.ndarray) -> np.ndarray:
        """(N, D) embeddings and (N, len(FEATURES)) quality vectors -> classifier inputs."""
        q = (quality[:, self.columns()] - self.mean) / self.std
        parts = [q.astype(np.float32)]
        if self.use_embedding:
            parts.insert(0, (embeddings * self.embedding_scale).astype(np.float32))
        return np.concatenate(parts, axis=1)

    @property
    def n_inputs(self) -> int:
        return len(self.features) + (EMBEDDING_DIM if self.use_embedding else 0)


@dataclass(frozen=True)
class OodModel:
    version: str
    embedder_version: str
    net: OodNet
    spec: FeatureSpec
    threshold: float
    reference: Reference | None
    far_soft: float  # mean_dist above which "unlike typical faces" is given as a reason
    meta: dict[str, Any]

    def scores(self, embeddings: np.ndarray, quality: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(self.spec.inputs(embeddings, quality))
        with torch.inference_mode():
            return torch.sigmoid(self.net.eval()(x)).numpy().astype(np.float64)


def save_model(
    base: Path,
    net: OodNet,
    spec: FeatureSpec,
    reference: Reference | None,
    meta: dict[str, Any],
) -> tuple[Path, Path]:
    """Write base.pt (weights, feature statistics, reference sample) and base.json (metadata)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "state_dict": net.state_dict(),
        "features": list(spec.features),
        "mean": torch.from_numpy(spec.mean.astype(np.float32)),
        "std": torch.from_numpy(spec.std.astype(np.float32)),
        "use_embedding": spec.use_embedding,
        "embedding_scale": spec.embedding_scale,
        "hidden": net.layers[0].out_features,
    }
    if reference is not None:
        payload["reference"] = torch.from_numpy(reference.vectors.astype(np.float16)).reshape(
            -1, reference.mean.shape[0]
        )
        payload["reference_mean"] = torch.from_numpy(reference.mean.astype(np.float32))
    pt, js = base.with_suffix(".pt"), base.with_suffix(".json")
    torch.save(payload, pt)
    js.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    return pt, js


def load_model(base: Path) -> OodModel:
    pt, js = base.with_suffix(".pt"), base.with_suffix(".json")
    meta = json.loads(js.read_text())
    payload = torch.load(pt, map_location="cpu", weights_only=True)
    spec = FeatureSpec(
        features=tuple(payload["features"]),
        mean=payload["mean"].numpy().astype(np.float32),
        std=payload["std"].numpy().astype(np.float32),
        use_embedding=bool(payload["use_embedding"]),
        embedding_scale=float(payload["embedding_scale"]),
    )
    net = OodNet(spec.n_inputs, hidden=int(payload["hidden"]))
    net.load_state_dict(payload["state_dict"])
    net.eval()
    reference = None
    if "reference" in payload:
        reference = Reference(
            vectors=payload["reference"].numpy().astype(np.float32),
            mean=payload["reference_mean"].numpy().astype(np.float32),
        )
    return OodModel(
        version=str(meta["version"]),
        embedder_version=str(meta["embedder_version"]),
        net=net,
        spec=spec,
        threshold=float(meta["threshold"]),
        reference=reference,
        far_soft=float(meta.get("feature_percentiles", {}).get("mean_dist_p99", 0.0)),
        meta=meta,
    )


def latest_version(
    weights_dir: Path = WEIGHTS_DIR, embedder_version: str | None = None
) -> str | None:
    """The highest ood-vN with both files present (committing ood-v2 makes it the model); with
    `embedder_version`, the highest one trained on that embedder's vectors."""
    found = []
    for js in weights_dir.glob("ood-v*.json"):
        number = js.stem.removeprefix("ood-v")
        if not (number.isdigit() and js.with_suffix(".pt").exists()):
            continue
        if embedder_version is not None:
            trained_on = json.loads(js.read_text()).get("embedder_version")
            if trained_on != embedder_version:
                continue
        found.append((int(number), js.stem))
    return max(found)[1] if found else None


@functools.cache
def get_model(version: str | None = None) -> OodModel | None:
    """The shipped model (the latest version unless named), loaded once per process; None when
    there is none."""
    version = version or latest_version()
    if version is None:
        return None
    base = WEIGHTS_DIR / version
    if not base.with_suffix(".pt").exists() or not base.with_suffix(".json").exists():
        return None
    return load_model(base)


@functools.cache
def model_for(embedder_version: str) -> OodModel | None:
    """The newest shipped filter trained on `embedder_version`'s vectors, or None (that version
    is judged by the quality rules only): a filter trained for another model version never
    takes this one's place."""
    version = latest_version(embedder_version=embedder_version)
    return get_model(version) if version else None


# ---------------------------------------------------------------------------------------------
# Verdicts


def blur_rule(blur: float, contrast: float, rules: Rules) -> bool:
    """Extreme blur, as a rule. A nearly black or flat face has no edges either: its low
    Laplacian variance says "dark", not "blurred", so the classifier judges it (and says why)."""
    return blur < rules.min_blur and contrast >= rules.low_contrast


def _hard_reasons(q: Quality, rules: Rules) -> list[str]:
    reasons = []
    if q.size_px < rules.min_face_px:
        reasons.append(f"face is small ({q.size_px} px, below the {rules.min_face_px} px minimum)")
    if blur_rule(q.blur, q.contrast, rules):
        reasons.append(f"strong blur (sharpness {q.blur:.1f}, below {rules.min_blur:g})")
    return reasons


def _same_reason(reason: str, given: list[str]) -> bool:
    """A hard rule already says it (the classifier agrees that a tiny face is small)."""
    head = reason.split(" (", 1)[0].split(";", 1)[0]
    return any(g.startswith(head) for g in given)


# Which readable reason each classifier input belongs to; the embedding and the distances derived
# from it are one reason ("unlike the faces the model was trained on").
GROUPS: dict[str, str] = {
    "log_size": "size",
    "log_blur": "blur",
    "noise_excess": "noise",
    "brightness": "light",
    "dark_frac": "light",
    "bright_frac": "light",
    "contrast": "contrast",
    "det_score": "detection",
    "abs_yaw": "yaw",
    "abs_roll": "roll",
    "pitch": "pitch",
    "emb_norm": "unlike",
    "mean_dist": "unlike",
    "knn_dist": "unlike",
}
EMBEDDING_GROUP = "unlike"
# A reason is given for every group that pushed the score up by at least this share of the
# strongest push (the strongest is always given).
REASON_SHARE = 0.4


def contributions(model: OodModel, embedding: np.ndarray, quality: np.ndarray) -> dict[str, float]:
    """How much each group of inputs raised the classifier's log-odds for one face: the log-odds
    minus the log-odds with that group at its typical in-distribution value (quality features at
    their clean training mean, the embedding at the reference mean). Positive = towards reject."""
    spec = model.spec
    emb = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
    x = spec.inputs(emb, np.asarray(quality, dtype=np.float32).reshape(1, -1))[0]
    n_emb = EMBEDDING_DIM if spec.use_embedding else 0
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(spec.features):
        groups.setdefault(GROUPS.get(name, name), []).append(n_emb + j)
    variants = [x]
    names = []
    for group, cols in groups.items():
        v = x.copy()
        v[cols] = 0.0  # z-scored: 0 is the clean mean
        if group == EMBEDDING_GROUP and n_emb and model.reference is not None:
            v[:n_emb] = model.reference.mean * spec.embedding_scale
        variants.append(v)
        names.append(group)
    if n_emb and EMBEDDING_GROUP not in groups and model.reference is not None:
        v = x.copy()
        v[:n_emb] = model.reference.mean * spec.embedding_scale
        variants.append(v)
        names.append(EMBEDDING_GROUP)
    with torch.inference_mode():
        logits = model.net.eval()(torch.from_numpy(np.stack(variants))).numpy()
    return {name: float(logits[0] - logits[i + 1]) for i, name in enumerate(names)}


def _sentence(group: str, q: Quality, rules: Rules, typical: dict[str, float]) -> str:
    """A reason a person can act on; the numbers in brackets are for staff."""
    if group == "size":
        return f"face is small ({q.size_px} px)"
    if group == "blur":
        if q.blur < rules.soft_blur:
            return f"strong blur (sharpness {q.blur:.0f})"
        if q.blur < typical.get("blur", 40.0):
            return f"blurred (sharpness {q.blur:.0f})"
        return f"grainy or over-sharpened (sharpness {q.blur:.0f})"
    if group == "noise":
        return f"grainy, noisy picture (noise {q.noise:.1f})"
    if group == "light":
        if q.dark_frac > 0.15 and q.brightness >= rules.dark:
            # Black pixels in an otherwise lit chip: the photo's edge (or a hard shadow) cuts
            # through the face; the aligner pads outside the photo with black.
            return f"part of the face is cut off or in deep shadow ({q.dark_frac:.0%} black)"
        if q.brightness < typical.get("brightness", 125.0):
            word = "very dark" if q.brightness < rules.dark or q.dark_frac > 0.4 else "dark"
        else:
            over = q.brightness > rules.bright or q.bright_frac > 0.4
            word = "very bright, washed out" if over else "bright"
        return f"{word} (brightness {q.brightness:.0f} of 255)"
    if group == "contrast":
        if q.contrast < typical.get("contrast", 36.0):
            return f"low contrast (contrast {q.contrast:.0f})"
        return f"harsh contrast (contrast {q.contrast:.0f})"
    if group == "detection":
        return f"barely recognisable as a face (detector {q.det_score:.2f})"
    if group == "yaw":
        return f"head turned ~{abs(q.yaw):.0f} degrees"
    if group == "roll":
        return f"head tilted ~{abs(q.roll):.0f} degrees"
    if group == "pitch":
        return f"head tilted up or down (pitch {q.pitch:.2f})"
    return f"unlike the faces the model was trained on (distance {q.mean_dist:.2f})"


def explain(
    model: OodModel, embedding: np.ndarray, q: Quality, rules: Rules
) -> tuple[list[str], dict[str, float]]:
    """The readable reasons for a classifier rejection (the groups that pushed the score up
    most), each with its push on the log-odds for staff, and every group's push."""
    pushes = contributions(model, embedding, q.vector())
    ranked = sorted(((v, g) for g, v in pushes.items() if v > 0), reverse=True)
    if not ranked:
        ranked = [(0.0, EMBEDDING_GROUP)]
    top = ranked[0][0]
    typical = model.meta.get("typical", {})
    reasons = [
        f"{_sentence(group, q, rules, typical)}; weight {push:+.1f}"
        for push, group in ranked
        if push >= REASON_SHARE * top
    ]
    return reasons, {g: round(v, 3) for g, v in pushes.items()}


def assess(
    chips: np.ndarray,
    sizes: Sequence[int],
    landmarks: Sequence[Sequence[Sequence[float]]],
    det_scores: Sequence[float],
    embeddings: np.ndarray,
    model: OodModel | None,
    rules: Rules,
    embedder_version: str = "",
) -> list[OodVerdict]:
    """One verdict per face. Without a model (or for another embedder) only the hard rules apply."""
    n = len(chips)
    if n == 0:
        return []
    # A model trained on another embedder's vectors says nothing about these: rules only.
    usable = model
    if model is not None and embedder_version and embedder_version != model.embedder_version:
        usable = None
    reference = usable.reference if usable else None
    emb = np.asarray(embeddings, dtype=np.float32).reshape(n, -1)
    qualities = [
        quality_features(chips[i], sizes[i], landmarks[i], det_scores[i], emb[i], reference)
        for i in range(n)
    ]
    scores: list[float | None] = [None] * n
    if usable is not None:
        matrix = np.stack([q.vector() for q in qualities])
        scores = [float(s) for s in usable.scores(emb, matrix)]
    verdicts = []
    for i, (q, score) in enumerate(zip(qualities, scores, strict=True)):
        reasons = _hard_reasons(q, rules)
        rejected = bool(reasons)
        pushes: dict[str, float] = {}
        if usable is not None and score is not None and score >= usable.threshold:
            rejected = True
            why, pushes = explain(usable, emb[i], q, rules)
            reasons = [*reasons, *(r for r in why if not _same_reason(r, reasons))]
        verdicts.append(
            OodVerdict(
                rejected=rejected,
                score=score,
                reasons=reasons,
                quality=q.as_dict(),
                model_version=usable.version if usable else "rules-only",
                contributions=pushes,
            )
        )
    return verdicts
