"""The embedding models the app knows and the size of their vectors (no heavy imports here: the
data layer sizes its vector columns from this).

Every stored embedding carries its version; search, templates, PCA bases and the filter never
mix two. Vector columns are dimensionless in PostgreSQL (a version fixes the length of its
vectors), so a 512-d ArcFace version lives in the same columns as the 128-d dlib ones; only one
version has templates at a time (`recognition/actions/models.py` switches them atomically).
"""

from __future__ import annotations

from dataclasses import dataclass

DLIB_RESNET_VERSION = "dlib-resnet-v1"
# dlib's ResNet on the chip and on its mirror image, the two descriptors averaged: a second real
# model (same detector, a slightly different embedding) to move a library between.
DLIB_RESNET_FLIP_VERSION = "dlib-resnet-flip-v1"
# Length of dlib's face descriptor: Face.embedding, templates, PCA bases and the filter's input.
EMBEDDING_DIM = 128
# ArcFace (InsightFace packs): L2-normalised, so Euclidean distance is a function of cosine
# similarity (d^2 = 2 - 2 cos) and the Euclidean search serves the cosine metric unchanged.
ARCFACE_DIM = 512
PACK_PREFIX = "insightface-"


@dataclass(frozen=True)
class VersionSpec:
    name: str
    dim: int
    metric: str  # "euclidean" (dlib) or "cosine" (unit vectors; compared by Euclidean distance)
    builtin: bool
    licence: str


BUILTIN: dict[str, VersionSpec] = {
    DLIB_RESNET_VERSION: VersionSpec(
        DLIB_RESNET_VERSION, EMBEDDING_DIM, "euclidean", True, "CC0 (dlib model, Davis King)"
    ),
    DLIB_RESNET_FLIP_VERSION: VersionSpec(
        DLIB_RESNET_FLIP_VERSION, EMBEDDING_DIM, "euclidean", True, "CC0 (dlib model, Davis King)"
    ),
}


def pack_version(pack: str) -> str:
    """The embedder version of an InsightFace pack installed under `pack` (e.g. buffalo_l)."""
    return f"{PACK_PREFIX}{pack}"


def spec(version: str) -> VersionSpec:
    """What a version's vectors are; an unknown version raises LookupError."""
    if version in BUILTIN:
        return BUILTIN[version]
    if version.startswith(PACK_PREFIX) and len(version) > len(PACK_PREFIX):
        return VersionSpec(
            version,
            ARCFACE_DIM,
            "cosine",
            False,
            "InsightFace pack: non-commercial research use only",
        )
    raise LookupError(f"unknown embedder version {version!r}")


def embedding_dim(version: str) -> int:
    return spec(version).dim
