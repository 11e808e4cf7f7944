"""The embedding models the app knows and the size of their vectors (no heavy imports here: the
data layer sizes its vector columns from this)."""

from __future__ import annotations

DLIB_RESNET_VERSION = "dlib-resnet-v1"
# Length of dlib's face descriptor: Face.embedding, templates, PCA bases and the filter's input.
EMBEDDING_DIM = 128
