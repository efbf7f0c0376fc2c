"""Laplace-Beltrami eigenbases: closed forms on the sphere, M-orthonormality, robust/point-cloud Laplacians, the
on-disk cache, eigensolver retries and bad meshes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geomot._core.errors import NumericalError, ValidationError
from geomot.ops import spectral
from geomot.ops.spectral import laplacian_and_mass, non_manifold_edges, spectral_basis
from tests.conftest import icosphere


@pytest.fixture(scope="module")
def sphere3():
    return icosphere(3)


def test_sphere_spectrum_closed_form(sphere3):
    v, f = sphere3
    b = spectral_basis(v, f, k=9)
    assert b.evals.dtype == torch.float64 and b.evecs.shape == (v.shape[0], 9) and b.mass.shape == (v.shape[0],)
    # unit sphere: lambda = l (l + 1) with multiplicity 2 l + 1
    assert abs(float(b.evals[0])) < 1e-8
    assert torch.allclose(b.evals[1:4], torch.full((3,), 2.0, dtype=torch.float64), rtol=0.02)
    assert torch.allclose(b.evals[4:9], torch.full((5,), 6.0, dtype=torch.float64), rtol=0.03)
    gram = b.evecs.T @ (b.mass[:, None] * b.evecs)
    assert torch.allclose(gram, torch.eye(9, dtype=torch.float64), atol=1e-8)
    assert torch.isclose(b.mass.sum(), torch.tensor(4 * np.pi, dtype=torch.float64), rtol=0.02)


def test_methods_agree_on_a_good_mesh(sphere3):
    v, f = sphere3
    cot = spectral_basis(v, f, k=9, method="cotan")
    rob = spectral_basis(v, f, k=9, method="robust")
    pc = spectral_basis(v, None, k=9)
    assert torch.allclose(cot.evals, rob.evals, rtol=1e-3, atol=1e-8)
    assert torch.allclose(pc.evals[1:4], torch.full((3,), 2.0, dtype=torch.float64), rtol=0.1)


def test_float32_input_gives_float64_and_device(sphere3):
    v, f = sphere3
    b = spectral_basis(v.float(), f, k=4)
    assert b.evals.dtype == torch.float64 and b.evecs.device == v.device


def test_cache_roundtrip_and_slicing(sphere3, tmp_path, monkeypatch):
    v, f = sphere3
    b = spectral_basis(v, f, k=12, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(spectral, "_solve_eigs", boom)
    again = spectral_basis(v, f, k=8, cache_dir=tmp_path)
    assert torch.equal(again.evals, b.evals[:8]) and torch.equal(again.evecs, b.evecs[:, :8])
    with pytest.raises(AssertionError, match="cache"):
        spectral_basis(v * 1.5, f, k=8, cache_dir=tmp_path)  # other geometry, other key


def test_no_cache_written_without_opt_in(sphere3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    v, f = sphere3
    spectral_basis(v, f, k=4)
    assert list(tmp_path.iterdir()) == []


def test_corrupted_cache_file_is_recomputed(sphere3, tmp_path):
    v, f = sphere3
    spectral_basis(v, f, k=5, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.npz")
    path.write_bytes(b"not a zip file")
    b = spectral_basis(v, f, k=5, cache_dir=tmp_path)
    assert b.evals.shape == (5,)


def test_eigensolver_failure_is_retried_with_another_shift(sphere3, monkeypatch):
    v, f = sphere3
    real = spectral._sparse_eigs
    sigmas = []

    def flaky(L, mass, k, sigma):
        sigmas.append(sigma)
        if len(sigmas) == 1:
            raise RuntimeError("Factor is exactly singular")
        return real(L, mass, k, sigma)

    monkeypatch.setattr(spectral, "_sparse_eigs", flaky)
    b = spectral_basis(v, f, k=6)
    assert len(sigmas) == 2 and sigmas[1] < sigmas[0] < 0
    assert torch.allclose(b.evals[1:4], torch.full((3,), 2.0, dtype=torch.float64), rtol=0.02)


def test_eigensolver_dense_fallback_then_clear_error(sphere3, monkeypatch):
    v, f = sphere3

    def fail(*a, **k):
        raise RuntimeError("ARPACK error -9999")

    monkeypatch.setattr(spectral, "_sparse_eigs", fail)
    b = spectral_basis(v, f, k=6)  # small mesh: dense fallback
    assert torch.allclose(b.evals[1:4], torch.full((3,), 2.0, dtype=torch.float64), rtol=0.02)
    monkeypatch.setattr(spectral, "_dense_eigs", fail)
    with pytest.raises(NumericalError, match="eigensolver failed for every shift"):
        spectral_basis(v, f, k=6)


def test_isolated_vertex_is_reported(sphere3):
    v, f = sphere3
    v2 = torch.cat([v, torch.tensor([[3.0, 0.0, 0.0]], dtype=v.dtype)])
    with pytest.raises(ValidationError, match="isolated"):
        spectral_basis(v2, f, k=4)


def test_several_components_have_several_zero_eigenvalues(sphere3):
    v, f = sphere3
    v2 = torch.cat([v, v + torch.tensor([5.0, 0.0, 0.0], dtype=v.dtype)])
    f2 = torch.cat([f, f + v.shape[0]])
    b = spectral_basis(v2, f2, k=4)
    assert float(b.evals[1]) < 1e-6 and float(b.evals[2]) > 1.0


def test_mesh_with_boundary(sphere3):
    v, f = sphere3
    keep = (v[f].mean(1)[:, 2] > 0.0)  # upper hemisphere, open boundary
    from geomot.ops.geometry import remove_unreferenced_vertices

    vh, fh, _ = remove_unreferenced_vertices(v, f[keep])
    b = spectral_basis(vh, fh, k=5)
    assert abs(float(b.evals[0])) < 1e-8 and bool((b.evals[1:] > 0).all())  # Neumann: constant is in the kernel


def test_non_manifold_mesh_uses_the_robust_laplacian(sphere3):
    v, f = sphere3
    a, b_ = int(f[0, 0]), int(f[0, 1])
    v2 = torch.cat([v, torch.tensor([[0.0, 0.0, 3.0]], dtype=v.dtype)])
    f2 = torch.cat([f, torch.tensor([[a, b_, v.shape[0]]])])  # a third face on edge (a, b)
    assert non_manifold_edges(f2) == 1 and non_manifold_edges(f) == 0
    b = spectral_basis(v2, f2, k=5)
    assert bool(torch.isfinite(b.evals).all()) and abs(float(b.evals[0])) < 1e-8


def test_bad_arguments(sphere3):
    v, f = sphere3
    with pytest.raises(ValidationError, match="k: expected an integer"):
        spectral_basis(v, f, k=0)
    with pytest.raises(ValidationError, match="k: expected an integer"):
        spectral_basis(v, f, k=v.shape[0] + 1)
    with pytest.raises(ValidationError, match="unknown laplacian"):
        spectral_basis(v, f, k=3, method="magic")
    with pytest.raises(ValidationError, match="'cotan' needs faces"):
        laplacian_and_mass(v, None, method="cotan")
    with pytest.raises(ValidationError, match="index"):
        spectral_basis(v, f + 10_000, k=3)
