"""Real dlib embeddings of a few dozen LFW faces, computed once per test process (a few seconds).

Tests of the PCA basis and the staged search use these instead of random vectors: dlib embeddings
are not unit-norm and have a very uneven spectrum, which is what the prefix levels rely on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tests.conftest import FACES_DIR


@dataclass(frozen=True)
class LabelledEmbeddings:
    vectors: np.ndarray  # (N, 128) float32
    labels: np.ndarray  # (N,) int: index into names
    names: tuple[str, ...]


@functools.cache
def lfw_embeddings(people: int = 12, per_person: int = 4) -> LabelledEmbeddings:
    """`per_person` images of each of the first `people` LFW identities (sorted by name) that have
    at least that many images; the face nearest the image centre of each."""
    from recognition.core.detection import align_faces, detect_faces
    from recognition.core.embedding import get_embedder
    from recognition.core.images import decode_image

    root = FACES_DIR / "lfw"
    chips, labels, names = [], [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(folder.glob("*.jpg"))
        if len(images) < per_person:
            continue
        found = []
        for path in images[:per_person]:
            rgb = decode_image(path, max_pixels=50_000_000).rgb
            faces = detect_faces(rgb)
            if not faces:
                continue
            h, w = rgb.shape[:2]
            face = min(
                faces,
                key=lambda f: (
                    ((f.left + f.right) / 2 - w / 2) ** 2 + ((f.top + f.bottom) / 2 - h / 2) ** 2
                ),
            )
            found.append(align_faces(rgb, [face])[0])
        if len(found) < per_person:
            continue
        chips.extend(found)
        labels.extend([len(names)] * len(found))
        names.append(folder.name)
        if len(names) == people:
            break
    vectors = get_embedder().embed(np.stack(chips))
    return LabelledEmbeddings(
        vectors=vectors.astype(np.float32), labels=np.asarray(labels), names=tuple(names)
    )
