"""Descriptors, functional maps, p2p conversion, ZoomOut variants and Sinkhorn refinement: closed forms,
properties (sign invariance, orientation reversal), gradcheck, and recovery of a known permutation."""

from __future__ import annotations

import pytest
import torch

from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot.correspondence import (
    bijective_zoomout,
    descriptor_operators,
    fixed_size_iterations,
    fmap_energy,
    fmap_from_descriptors,
    fmap_from_p2p,
    hks,
    knn_indices,
    orientation_operators,
    p2p_from_fmap,
    project,
    regularized_fmap,
    resolvent_mask,
    sinkhorn_zoomout,
    soft_fmap,
    wks,
    zoomout,
)
from geomot.correspondence.fmaps import laplacian_mask
from geomot.io.synthetic import bumpy_sphere
from geomot.ops.spectral import spectral_basis


@pytest.fixture(scope="module")
def shape():
    m = bumpy_sphere(500)
    b = spectral_basis(m.verts, m.faces, k=40)
    return m.verts, m.faces, b


@pytest.fixture(scope="module")
def permuted(shape):
    """The same shape with its vertices permuted: exact ground truth ``perm`` (vertex j of copy = perm[j])."""
    v, f, _b = shape
    perm = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0])
    v2, f2 = v[perm], inv[f]
    b2 = spectral_basis(v2, f2, k=40)
    return v2, f2, b2, perm


def _true_fmap(b1, b2, perm, k):
    # copy (shape 2) vertex j is original (shape 1) vertex perm[j]: p2p_21 = perm
    return fmap_from_p2p(perm, b1.evecs[:, :k], b2.evecs[:, :k], mass2=b2.mass)


# -- descriptors ------------------------------------------------------------------------------------------
def test_descriptors_shapes_signs_and_batching(shape):
    _, _, b = shape
    h, w = hks(b.evals, b.evecs, n_scales=6), wks(b.evals, b.evecs, n_scales=12)
    assert h.shape == (b.evecs.shape[0], 6) and w.shape == (b.evecs.shape[0], 12)
    assert bool((h > 0).all()) and bool((w >= 0).all())
    flip = torch.ones(b.evals.shape[0], dtype=torch.float64)
    flip[1::2] = -1  # eigenvector signs are arbitrary; signatures depend on phi^2 only
    assert torch.allclose(wks(b.evals, b.evecs * flip, n_scales=12), w)
    assert torch.allclose(hks(b.evals, b.evecs * flip, n_scales=6), h)
    wb = wks(b.evals[None].expand(2, -1), b.evecs[None].expand(2, -1, -1), n_scales=12)
    assert wb.shape == (2, b.evecs.shape[0], 12) and torch.allclose(wb[1], w)
    lm = wks(b.evals, b.evecs, n_scales=12, landmarks=torch.tensor([0, 5]))
    assert lm.shape == (b.evecs.shape[0], 24)


def test_hks_closed_form_at_explicit_times(shape):
    _, _, b = shape
    t = torch.tensor([0.1], dtype=torch.float64)
    ref = (torch.exp(-b.evals * 0.1) * b.evecs**2).sum(1, keepdim=True)
    assert torch.allclose(hks(b.evals, b.evecs, times=t, scale_invariant=False), ref)


def test_descriptor_errors(shape):
    _, _, b = shape
    with pytest.raises(ShapeError, match="evecs"):
        wks(b.evals, b.evecs[:, :5])
    with pytest.raises(ValidationError, match="n_scales"):
        hks(b.evals, b.evecs, n_scales=0)
    with pytest.raises(ValidationError, match="times"):
        hks(b.evals, b.evecs, times=torch.tensor([-1.0], dtype=torch.float64))
    with pytest.raises(ValidationError, match="positive eigenvalue"):
        wks(torch.zeros(3, dtype=torch.float64), b.evecs[:, :3])


# -- functional maps --------------------------------------------------------------------------------------
def test_resolvent_and_laplacian_masks():
    e = torch.tensor([0.0, 1.0, 2.5, 4.0], dtype=torch.float64)
    for m in (resolvent_mask(e, e), laplacian_mask(e, e)):
        assert m.shape == (4, 4) and torch.allclose(m.diagonal(), torch.zeros(4, dtype=torch.float64))
        assert torch.allclose(m, m.T) and bool((m >= 0).all())
    assert resolvent_mask(e, e)[0, 3] > resolvent_mask(e, e)[2, 3]  # far frequencies are penalised more


def test_regularized_fmap_recovers_exact_map_and_batches():
    g = torch.Generator().manual_seed(1)
    k, d = 6, 10
    A = torch.randn(k, d, generator=g, dtype=torch.float64)
    C = torch.randn(k, k, generator=g, dtype=torch.float64)
    e = torch.linspace(0, 5, k, dtype=torch.float64)
    assert torch.allclose(regularized_fmap(A, C @ A, e, e, lambda_=0.0), C, atol=1e-9)
    Ab, Bb = torch.stack([A, 2 * A]), torch.stack([C @ A, C @ A])
    out = regularized_fmap(Ab, Bb, e.expand(2, -1), e.expand(2, -1), lambda_=0.1)
    assert torch.allclose(out[1], regularized_fmap(2 * A, C @ A, e, e, lambda_=0.1))


def test_regularized_fmap_gradcheck():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    B = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    e = torch.linspace(0, 3, 3, dtype=torch.float64).expand(2, -1)
    assert torch.autograd.gradcheck(lambda a, b: regularized_fmap(a, b, e, e, lambda_=0.5), (A, B))


def test_regularized_fmap_errors():
    e = torch.linspace(0, 1, 3, dtype=torch.float64)
    A = torch.randn(3, 5, dtype=torch.float64)
    with pytest.raises(ShapeError, match="feat2"):
        regularized_fmap(A, torch.randn(3, 4, dtype=torch.float64), e, e)
    with pytest.raises(ShapeError, match="evals1/evals2"):
        regularized_fmap(A, A, e[:2], e)
    with pytest.raises(ValidationError, match="unknown mask"):
        regularized_fmap(A, A, e, e, mask="other")
    with pytest.raises(ValidationError, match="lambda_"):
        regularized_fmap(A, A, e, e, lambda_=-1.0)


def test_orientation_operators_antisymmetric_and_reversed_by_a_mirror(shape):
    v, f, b = shape
    desc = wks(b.evals, b.evecs, n_scales=8)
    O = orientation_operators(v, f, b.evecs[:, :12], desc)
    assert O.shape == (8, 12, 12)
    assert torch.allclose(O, -O.transpose(1, 2), atol=1e-8 * float(O.abs().max()))
    flipped = f[:, [0, 2, 1]]  # inward normals: orientation reversed
    assert torch.allclose(orientation_operators(v, flipped, b.evecs[:, :12], desc), -O, atol=1e-10)
    mirror = v * torch.tensor([-1.0, 1.0, 1.0], dtype=v.dtype)  # the mirror image, outward normals restored
    assert torch.allclose(orientation_operators(mirror, flipped, b.evecs[:, :12], desc), -O, atol=1e-10)
    assert torch.allclose(orientation_operators(mirror, f, b.evecs[:, :12], desc), O, atol=1e-10)
    R = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=v.dtype))[0]
    R = R * torch.sign(torch.linalg.det(R))  # proper rotation
    assert torch.allclose(orientation_operators(v @ R.T + 2.0, f, b.evecs[:, :12], desc), O, atol=1e-10)


def test_axiomatic_fmap_is_the_minimiser(shape, permuted):
    v, f, b = shape
    v2, f2, b2, _perm = permuted
    k = 10
    d1, d2 = wks(b.evals, b.evecs, n_scales=10), wks(b2.evals, b2.evecs, n_scales=10)
    kw = dict(verts1=v, faces1=f, verts2=v2, faces2=f2)
    res = fmap_from_descriptors(d1, d2, b.evals[:k], b.evecs[:, :k], b.mass, b2.evals[:k], b2.evecs[:, :k],
                                b2.mass, w_orient=0.5, **kw)
    # recompute the energy with the documented normalisation and check stationarity
    dt = torch.float64
    nrm = ((b.mass[:, None] * d1**2).sum(0).sqrt() + (b2.mass[:, None] * d2**2).sum(0).sqrt()) / 2
    A, B = project(d1 / nrm, b.evecs[:, :k], b.mass), project(d2 / nrm, b2.evecs[:, :k], b2.mass)

    def unit(X):
        return X / X.flatten(1).norm(dim=1)[:, None, None]

    ops1 = [unit(descriptor_operators(d1 / nrm, b.evecs[:, :k], b.mass)),
            unit(orientation_operators(v, f, b.evecs[:, :k], d1 / nrm))]
    ops2 = [unit(descriptor_operators(d2 / nrm, b2.evecs[:, :k], b2.mass)),
            unit(orientation_operators(v2, f2, b2.evecs[:, :k], d2 / nrm))]
    C = res.fmap_12.clone().requires_grad_(True)
    E = fmap_energy(C, A, B, laplacian_mask(b.evals[:k], b2.evals[:k]), ops1, ops2, [0.1, 0.5], w_desc=1.0,
                    w_lap=1e-2)
    (grad,) = torch.autograd.grad(E, C)
    assert float(grad.abs().max()) < 1e-8
    assert abs(float(E.detach()) - res.energy) < 1e-8 * max(1.0, abs(res.energy))
    assert res.fmap_12.dtype == dt and res.fmap_21.shape == (k, k)
    bij = fmap_from_descriptors(d1, d2, b.evals[:k], b.evecs[:, :k], b.mass, b2.evals[:k], b2.evecs[:, :k],
                                b2.mass, w_bij=1e3)
    assert torch.allclose(bij.fmap_12, bij.fmap_21.T, atol=1e-2)


def test_axiomatic_fmap_errors(shape):
    _v, _f, b = shape
    d = wks(b.evals, b.evecs, n_scales=4)
    args = (d, d, b.evals[:5], b.evecs[:, :5], b.mass, b.evals[:5], b.evecs[:, :5], b.mass)
    with pytest.raises(ValidationError, match="orientation term needs"):
        fmap_from_descriptors(*args, w_orient=1.0)
    with pytest.raises(ValidationError, match="w_lap"):
        fmap_from_descriptors(*args, w_lap=-1.0)
    with pytest.raises(ShapeError, match="desc1/desc2"):
        fmap_from_descriptors(d, d[:, :2], *args[2:])


# -- point maps and ZoomOut -------------------------------------------------------------------------------
def test_knn_and_p2p_fmap_roundtrip(shape, permuted):
    _, _, b = shape
    _, _, b2, perm = permuted
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert torch.equal(knn_indices(x[perm[:50] % 50], x), perm[:50] % 50)
    C = _true_fmap(b, b2, perm, 20)
    assert torch.allclose(C @ C.T, torch.eye(20, dtype=torch.float64), atol=0.05)  # isometry: orthogonal
    assert torch.equal(p2p_from_fmap(C, b.evecs[:, :20], b2.evecs[:, :20]), perm)
    assert torch.equal(p2p_from_fmap(C, b.evecs[:, :20], b2.evecs[:, :20], adjoint=True), perm)
    ls = fmap_from_p2p(perm, b.evecs[:, :20], b2.evecs[:, :20])
    assert torch.allclose(ls, C, atol=1e-8)
    P = torch.zeros(perm.shape[0], perm.shape[0], dtype=torch.float64)
    P[torch.arange(perm.shape[0]), perm] = 3.0  # unnormalised rows
    assert torch.allclose(soft_fmap(P, b.evecs[:, :20], b2.evecs[:, :20]), ls, atol=1e-8)
    with pytest.raises(ShapeError, match="fmap_12"):
        p2p_from_fmap(C[:5], b.evecs[:, :20], b2.evecs[:, :20])
    with pytest.raises(ShapeError, match="p2p_21"):
        fmap_from_p2p(perm[:10], b.evecs[:, :20], b2.evecs[:, :20])


def test_zoomout_variants_recover_the_permutation(shape, permuted):
    _, _, b = shape
    _, _, b2, perm = permuted
    C0 = _true_fmap(b, b2, perm, 6)
    z = zoomout(C0, b.evecs, b2.evecs, k_final=30, step=4)
    assert z.fmap_12.shape == (30, 30) and float((z.p2p_21 == perm).double().mean()) > 0.95
    samples = torch.arange(0, perm.shape[0], 3)
    zs = zoomout(C0, b.evecs, b2.evecs, k_final=30, step=4, samples2=samples)
    assert float((zs.p2p_21 == perm).double().mean()) > 0.95
    coarse = zoomout(C0, b.evecs, b2.evecs, k_final=30, step=4, samples2=samples, samples1=samples)
    assert float((coarse.p2p_21 == perm).double().mean()) > 0.9
    bz = bijective_zoomout(C0, C0.T, b.evecs, b2.evecs, k_final=30, step=4)
    assert float((bz.p2p_21 == perm).double().mean()) > 0.95
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0])
    assert float((bz.p2p_12 == inv).double().mean()) > 0.95
    with pytest.raises(ValidationError, match="k_final"):
        zoomout(C0, b.evecs, b2.evecs, k_final=100)
    with pytest.raises(ValidationError, match="step"):
        zoomout(C0, b.evecs, b2.evecs, k_final=20, step=0)


def test_fixed_size_iterations_refit_a_noisy_map(shape, permuted):
    _, _, b = shape
    _, _, b2, perm = permuted
    C = _true_fmap(b, b2, perm, 30)
    noisy = C + torch.randn(C.shape, generator=torch.Generator().manual_seed(1), dtype=C.dtype) / 30**0.5
    e1, e2 = b.evecs[:, :30], b2.evecs[:, :30]
    acc0 = float((p2p_from_fmap(noisy, e1, e2) == perm).double().mean())
    r0 = fixed_size_iterations(noisy, b.evecs, b2.evecs, b2.mass, max_iter=0)
    assert torch.equal(r0.p2p_21, p2p_from_fmap(noisy, e1, e2)) and torch.equal(r0.fmap_12, noisy)
    r = fixed_size_iterations(noisy, b.evecs, b2.evecs, b2.mass, max_iter=3)
    acc = float((r.p2p_21 == perm).double().mean())
    assert acc0 < 0.5 and acc > 0.95
    assert r.fmap_12.shape == (30, 30) and torch.allclose(r.fmap_12, C, atol=1e-6)
    with pytest.raises(ValidationError, match="max_iter: expected an integer >= 0, got -1"):
        fixed_size_iterations(noisy, b.evecs, b2.evecs, b2.mass, max_iter=-1)
    with pytest.warns(GeomotDeprecationWarning, match="'n_iter' is deprecated.*'max_iter'"):
        old = fixed_size_iterations(noisy, b.evecs, b2.evecs, b2.mass, n_iter=1)
    assert torch.equal(old.p2p_21, fixed_size_iterations(noisy, b.evecs, b2.evecs, b2.mass, max_iter=1).p2p_21)
    with pytest.raises(ShapeError, match="mass2"):
        fixed_size_iterations(noisy, b.evecs, b2.evecs, b2.mass[:5])


def test_sinkhorn_zoomout_recovers_the_permutation(shape, permuted):
    _, _, b = shape
    _, _, b2, perm = permuted
    C0 = _true_fmap(b, b2, perm, 6)
    s = torch.arange(0, perm.shape[0], 2)
    r = sinkhorn_zoomout(C0, b.evecs, b2.evecs, b.mass, b2.mass, k_final=30, step=6, samples1=s, samples2=s)
    assert r.fmap_12.shape == (30, 30) and float((r.p2p_21 == perm).double().mean()) > 0.9
    with pytest.raises(ValidationError, match="eps_start"):
        sinkhorn_zoomout(C0, b.evecs, b2.evecs, b.mass, b2.mass, k_final=30, eps_start=0.0)
    with pytest.raises(ShapeError, match="mass1/mass2"):
        sinkhorn_zoomout(C0, b.evecs, b2.evecs, b.mass[:5], b2.mass, k_final=30)
