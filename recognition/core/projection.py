"""PCA rotation of embeddings for the staged prefix search (pure numpy, no ORM).

A basis is a full-rank orthonormal rotation R (rows = components, ordered by decreasing
eigenvalue) and a mean m. Rotating `y = R (x - m)` preserves Euclidean distances exactly, so the
distance over the first d rotated components is a lower bound of the full distance and grows
monotonically with d. Embeddings are never re-normalised: dlib's are not unit-norm and the match
threshold is a Euclidean distance in the original space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPE = np.float32


@dataclass(frozen=True)
class Basis:
    """A rotation and its mean; `rotation[i]` is the i-th component (unit row)."""

    mean: np.ndarray  # (D,) float32
    rotation: np.ndarray  # (D, D) float32, orthonormal rows
    eigenvalues: np.ndarray  # (D,) float64, variance along each component (0 past the rank)
    n_samples: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def rotate(self, x: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) embeddings in original space -> the same in rotated space, float32."""
        x = np.asarray(x, dtype=np.float64)
        out = (x - self.mean.astype(np.float64)) @ self.rotation.astype(np.float64).T
        return out.astype(DTYPE)

    def unrotate(self, y: np.ndarray) -> np.ndarray:
        """Inverse of `rotate` (R is orthonormal, so R^-1 = R^T)."""
        y = np.asarray(y, dtype=np.float64)
        out = y @ self.rotation.astype(np.float64) + self.mean.astype(np.float64)
        return out.astype(DTYPE)

    def explained_variance(self, d: int) -> float:
        """Share of the fitted variance in the first d components (1.0 for an identity basis)."""
        total = float(np.sum(self.eigenvalues))
        if total <= 0:
            return d / self.dim
        return float(np.sum(self.eigenvalues[:d]) / total)


def identity_basis(dim: int) -> Basis:
    """The basis to use before any trusted embedding exists: no centring, no rotation."""
    return Basis(
        mean=np.zeros(dim, dtype=DTYPE),
        rotation=np.eye(dim, dtype=DTYPE),
        eigenvalues=np.zeros(dim, dtype=np.float64),
        n_samples=0,
    )


def _complete_orthonormal(rows: np.ndarray, dim: int) -> np.ndarray:
    """Extend k orthonormal rows (k <= dim) to a full (dim, dim) orthonormal matrix.

    QR of [rows^T | I] keeps the span of the given rows first, then adds the directions of the
    standard basis that are orthogonal to them; signs are fixed so the given rows are unchanged.
    """
    k = rows.shape[0]
    if k == dim:
        return rows
    stacked = np.concatenate([rows.T, np.eye(dim)], axis=1)
    q, r = np.linalg.qr(stacked)
    signs = np.sign(np.diag(r)[:dim])
    signs[signs == 0] = 1.0
    q = q[:, :dim] * signs
    return q.T


def fit_basis(embeddings: np.ndarray, dim: int | None = None) -> Basis:
    """PCA on raw embeddings; the result is always a full-rank rotation of `dim` components.

    With fewer samples than dimensions (or rank-deficient data) the components past the rank have
    eigenvalue 0 and are completed by QR, so distances are still preserved exactly. No samples
    gives the identity basis.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    dim = dim if dim is not None else x.shape[1]
    if x.shape[0] == 0:
        return identity_basis(dim)
    if x.shape[1] != dim:
        raise ValueError(f"embeddings have {x.shape[1]} dimensions, expected {dim}")
    mean = x.mean(axis=0)
    centred = x - mean
    # Eigen-decomposition of the covariance: D x D, cheap for D=128 whatever N is.
    cov = centred.T @ centred / max(x.shape[0] - 1, 1)
    eigenvalues, vectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    vectors = vectors[:, order]
    rank = int(np.sum(eigenvalues > eigenvalues[0] * 1e-9)) if eigenvalues[0] > 0 else 0
    rank = min(rank, x.shape[0] - 1) if x.shape[0] > 1 else 0
    rows = vectors[:, :rank].T
    # A deterministic sign per component (largest-magnitude entry positive) makes refits of the
    # same data give the same basis.
    if rank:
        flip = np.sign(rows[np.arange(rank), np.argmax(np.abs(rows), axis=1)])
        rows = rows * flip[:, None]
    rotation = _complete_orthonormal(rows, dim)
    eigenvalues = np.concatenate([eigenvalues[:rank], np.zeros(dim - rank)])
    return Basis(
        mean=mean.astype(DTYPE),
        rotation=rotation.astype(DTYPE),
        eigenvalues=eigenvalues,
        n_samples=int(x.shape[0]),
    )


def basis_to_bytes(basis: Basis) -> tuple[bytes, bytes]:
    """(mean, rotation) as little-endian float32 bytes for `ProjectionBasis`."""
    return (
        basis.mean.astype("<f4").tobytes(),
        basis.rotation.astype("<f4").tobytes(),
    )


def basis_from_bytes(
    mean: bytes, rotation: bytes, eigenvalues: list[float], n_samples: int, dim: int
) -> Basis:
    m = np.frombuffer(bytes(mean), dtype="<f4").astype(DTYPE)
    r = np.frombuffer(bytes(rotation), dtype="<f4").astype(DTYPE).reshape(dim, dim)
    ev = np.asarray(eigenvalues, dtype=np.float64) if eigenvalues else np.zeros(dim)
    return Basis(mean=m, rotation=r, eigenvalues=ev, n_samples=n_samples)


def prefix_sq_distances(query: np.ndarray, vectors: np.ndarray, d: int) -> np.ndarray:
    """Squared Euclidean distances over the first d rotated components."""
    diff = vectors[:, :d] - query[:d]
    sq: np.ndarray = np.einsum("ij,ij->i", diff, diff)
    return sq
