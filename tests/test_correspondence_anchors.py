"""Geodesic-anchor refinement of point maps (geomot.correspondence.anchor_refine)."""

from __future__ import annotations

import pytest
import torch

from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot.correspondence import AnchorRefineResult, anchor_refine, fmap_from_p2p, knn_indices
from geomot.io.synthetic import icosphere
from geomot.ops.sampling import farthest_point_sampling
from geomot.ops.spectral import spectral_basis


@pytest.fixture(scope="module")
def ellipsoid():
    """An ellipsoid (mirror-symmetric in x), its basis, and a map that sends the cap x > 1 to its mirror twin."""
    m = icosphere(3)
    v = m.verts * torch.tensor([2.0, 1.0, 0.6], dtype=torch.float64)
    b = spectral_basis(v, m.faces, k=30)
    mirror = knn_indices(v * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64), v)
    swapped = torch.arange(v.shape[0])
    cap = v[:, 0] > 1.0
    swapped[cap] = mirror[cap]
    return v, m.faces, b, swapped


def _err(v, p2p):
    return float((v[p2p] - v).norm(dim=1).mean())


def _refine(v, f, b, p2p, **kw):
    C = fmap_from_p2p(p2p, b.evecs, b.evecs, mass2=b.mass)
    return anchor_refine(C, b.evecs, b.evecs, b.mass, b.mass, v, f, v, f, p2p_21=p2p, n_anchors=48, **kw)


@pytest.mark.parametrize("mesh", [True, False])
def test_a_swapped_region_is_sent_back(ellipsoid, mesh):
    v, f, b, swapped = ellipsoid
    before = _err(v, swapped)
    assert before > 0.5
    res = _refine(v, f if mesh else None, b, swapped)
    assert isinstance(res, AnchorRefineResult)
    assert res.p2p_21.shape == (v.shape[0],) and res.p2p_21.dtype == torch.long
    assert res.fmap_12.shape == (30, 30)
    assert _err(v, res.p2p_21) < 0.1 * before


def test_the_identity_is_a_fixed_point(ellipsoid):
    v, f, b, _ = ellipsoid
    res = _refine(v, f, b, torch.arange(v.shape[0]))
    assert _err(v, res.p2p_21) < 1e-3


def test_invariant_to_rigid_motions_and_scale(ellipsoid):
    v, f, b, swapped = ellipsoid
    ref = _refine(v, f, b, swapped)
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))[0]
    s = 2.5
    moved = s * v @ q.T + torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64)
    C = fmap_from_p2p(swapped, b.evecs, b.evecs, mass2=b.mass)
    # the same functions on the scaled shapes: M scales by s^2, M-orthonormal evecs by 1/s
    out = anchor_refine(C, b.evecs / s, b.evecs / s, b.mass * s * s, b.mass * s * s, moved, f, moved, f,
                        p2p_21=swapped, n_anchors=48)
    assert float((out.p2p_21 == ref.p2p_21).double().mean()) > 0.99


def test_on_samples_the_map_of_the_samples_is_refined(ellipsoid):
    v, f, b, swapped = ellipsoid
    samples = farthest_point_sampling(v, 300, start=0).long()
    res = _refine(v, f, b, swapped, samples2=samples)
    assert res.p2p_21.shape == (300,) and res.fmap_12.shape == (30, 30)
    before = float((v[swapped[samples]] - v[samples]).norm(dim=1).mean())
    assert float((v[res.p2p_21] - v[samples]).norm(dim=1).mean()) < 0.1 * before
    # farthest-point samples give the same anchors as the full shape: the first step is the full map on them
    one = _refine(v, f, b, swapped, samples2=samples, max_iter=1)
    assert torch.equal(one.p2p_21, _refine(v, f, b, swapped, max_iter=1).p2p_21[samples])
    # the functional map fitted on the samples sends the whole shape back too
    full = knn_indices(b.evecs, b.evecs @ res.fmap_12.T)
    assert _err(v, full) < 0.1 * _err(v, swapped)
    # without p2p_21, the map of the samples comes from fmap_12
    C = fmap_from_p2p(swapped, b.evecs, b.evecs, mass2=b.mass)
    out = anchor_refine(C, b.evecs, b.evecs, b.mass, b.mass, v, f, v, f, n_anchors=48, samples2=samples)
    assert out.p2p_21.shape == (300,) and out.source_features.shape == (300, 48)
    # the source's features depend on the source and the settings only: passed back, the same result
    again = anchor_refine(C, b.evecs, b.evecs, b.mass, b.mass, v, f, v, f, n_anchors=48, samples2=samples,
                          source_features=out.source_features)
    assert torch.equal(again.p2p_21, out.p2p_21) and torch.allclose(again.fmap_12, out.fmap_12, atol=1e-12)
    with pytest.raises(ShapeError, match="source_features"):
        anchor_refine(C, b.evecs, b.evecs, b.mass, b.mass, v, f, v, f, n_anchors=48, samples2=samples,
                      source_features=out.source_features[:, :10])


def test_images_among_target_samples(ellipsoid):
    """``samples1``: images are searched among those vertices only; every vertex gives the full search's map."""
    v, f, b, swapped = ellipsoid
    samples = farthest_point_sampling(v, 300, start=0).long()
    targets = farthest_point_sampling(v, 400, start=0).long()
    every = _refine(v, f, b, swapped, samples2=samples, samples1=torch.arange(v.shape[0]))
    assert torch.equal(every.p2p_21, _refine(v, f, b, swapped, samples2=samples).p2p_21)
    res = _refine(v, f, b, swapped, samples2=samples, samples1=targets)
    assert bool(torch.isin(res.p2p_21, targets).all())
    # the swapped cap is sent back up to the spacing of the target samples
    before = float((v[swapped[samples]] - v[samples]).norm(dim=1).mean())
    assert float((v[res.p2p_21] - v[samples]).norm(dim=1).mean()) < 0.2 * before
    with pytest.raises((ShapeError, ValidationError), match="samples1"):
        _refine(v, f, b, swapped, samples1=torch.tensor([0, v.shape[0]]))
    with pytest.raises(ShapeError, match="samples1"):
        _refine(v, f, b, swapped, samples1=torch.zeros(0, dtype=torch.long))


def test_bad_inputs(ellipsoid):
    v, f, b, swapped = ellipsoid
    C = fmap_from_p2p(swapped, b.evecs, b.evecs, mass2=b.mass)
    args = (C, b.evecs, b.evecs, b.mass, b.mass, v, f, v, f)
    with pytest.raises(ValidationError, match="max_iter: expected an integer >= 1, got 0"):
        anchor_refine(*args, max_iter=0)
    with pytest.warns(GeomotDeprecationWarning, match="'n_iter' is deprecated.*'max_iter'"):
        assert torch.equal(anchor_refine(*args, n_iter=1).p2p_21, anchor_refine(*args, max_iter=1).p2p_21)
    with pytest.raises(ValidationError, match="n_anchors"):
        anchor_refine(*args, n_anchors=v.shape[0] + 1)
    with pytest.raises(ValidationError, match="sigma"):
        anchor_refine(*args, sigma=0.0)
    with pytest.raises(ShapeError, match="mass1"):
        anchor_refine(C, b.evecs, b.evecs, b.mass[:-1], b.mass, v, f, v, f)
    with pytest.raises(ShapeError, match="fmap_12"):
        anchor_refine(torch.zeros(40, 40, dtype=torch.float64), *args[1:])
    with pytest.raises(ShapeError, match="p2p_21"):
        anchor_refine(*args, p2p_21=swapped[:-1])
    with pytest.raises(ValidationError, match=r"NaN|finite"):
        anchor_refine(C * float("nan"), *args[1:])
    with pytest.raises(ShapeError, match="samples2"):
        anchor_refine(*args, n_anchors=48, samples2=torch.arange(10))
    with pytest.raises((ShapeError, ValidationError), match="samples2"):
        anchor_refine(*args, samples2=torch.tensor([0, v.shape[0]]))
