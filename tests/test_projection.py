"""The PCA rotation: full rank, distance preserving, prefix distances are lower bounds."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recognition.core.projection import (
    Basis,
    basis_from_bytes,
    basis_to_bytes,
    fit_basis,
    identity_basis,
    prefix_sq_distances,
)
from tests.lfw_embeddings import lfw_embeddings


@pytest.fixture(scope="module")
def real() -> np.ndarray:
    return lfw_embeddings().vectors


@functools.cache
def real_basis() -> Basis:
    return fit_basis(lfw_embeddings().vectors)


def test_it_fits_a_full_rank_rotation_ordered_by_eigenvalue(real: np.ndarray) -> None:
    basis = fit_basis(real)
    r = basis.rotation.astype(np.float64)
    assert r.shape == (128, 128)
    assert np.abs(r @ r.T - np.eye(128)).max() < 1e-5
    assert np.all(np.diff(basis.eigenvalues) <= 1e-12)
    # 48 samples span at most 47 directions; the rest are completed with eigenvalue 0.
    assert np.count_nonzero(basis.eigenvalues) <= 47
    assert basis.explained_variance(32) > 0.9  # dlib's spectrum is steep: why prefixes work


def test_it_preserves_distances_without_normalising(real: np.ndarray) -> None:
    basis = fit_basis(real)
    rotated = basis.rotate(real)
    original = np.linalg.norm(real[:, None] - real[None], axis=2)
    after = np.linalg.norm(rotated[:, None] - rotated[None], axis=2)
    assert np.abs(original - after).max() < 1e-5
    # The data is centred, not re-normalised: norms of rotated vectors are not all 1.
    assert np.abs(rotated.mean(axis=0)).max() < 1e-5
    assert np.ptp(np.linalg.norm(rotated, axis=1)) > 0.05
    assert np.abs(basis.unrotate(rotated) - real).max() < 1e-5


def test_it_completes_the_basis_with_fewer_samples_than_dimensions(real: np.ndarray) -> None:
    for n in (1, 2, 5):
        basis = fit_basis(real[:n])
        r = basis.rotation.astype(np.float64)
        assert np.abs(r @ r.T - np.eye(128)).max() < 1e-5
        x, y = real[10], real[20]
        assert abs(np.linalg.norm(basis.rotate(x) - basis.rotate(y)) - np.linalg.norm(x - y)) < 1e-5


def test_it_uses_the_identity_when_there_is_nothing_to_fit() -> None:
    basis = fit_basis(np.zeros((0, 128), dtype=np.float32))
    assert np.array_equal(basis.rotation, np.eye(128, dtype=np.float32))
    assert basis.n_samples == 0
    assert identity_basis(128).rotate(np.ones(128)).tolist() == [1.0] * 128


def test_it_refits_the_same_data_to_the_same_basis(real: np.ndarray) -> None:
    a, b = fit_basis(real), fit_basis(real[::-1].copy())
    assert np.abs(a.rotation[:40] - b.rotation[:40]).max() < 1e-3


def test_it_round_trips_through_bytes(real: np.ndarray) -> None:
    basis = fit_basis(real)
    mean, rotation = basis_to_bytes(basis)
    back = basis_from_bytes(mean, rotation, list(basis.eigenvalues), basis.n_samples, 128)
    assert np.array_equal(back.rotation, basis.rotation)
    assert np.array_equal(back.mean, basis.mean)


@settings(max_examples=200, deadline=None)
@given(
    i=st.integers(0, 47),
    j=st.integers(0, 47),
    d=st.integers(1, 128),
    noise=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**31 - 1),
)
def test_it_never_lets_the_prefix_distance_exceed_the_full_distance(
    i: int, j: int, d: int, noise: float, seed: int
) -> None:
    real = lfw_embeddings().vectors
    basis = real_basis()
    rng = np.random.default_rng(seed)
    x = real[i] + rng.normal(0, noise, 128).astype(np.float32)
    y = real[j]
    qx, qy = basis.rotate(x), basis.rotate(y)
    prefix = np.sqrt(prefix_sq_distances(qx, qy[None], d)[0])
    full = np.linalg.norm(x.astype(np.float64) - y)
    assert prefix <= full + 1e-5
    # ... and grows with d.
    if d < 128:
        assert prefix <= np.sqrt(prefix_sq_distances(qx, qy[None], d + 1)[0]) + 1e-6
