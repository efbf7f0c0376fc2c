"""The training-free pipeline ``geomot.match``: accuracy on a near-isometric pair with exact ground truth,
invariance to rigid motions, map directions, bad inputs (isolated vertices, point clouds, boundaries, several
components, non-manifold edges, different vertex counts)."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence import MatchResult, match
from geomot.io.synthetic import bumpy_pair, bumpy_sphere
from geomot.metrics import geodesic_error
from geomot.structures import Mesh, PointCloud

FAST = dict(k=30, k_init=6, k_select=16, n_candidates=8, n_samples=200)
TINY = dict(k=12, k_init=4, k_select=8, n_candidates=2, n_samples=60)


@pytest.fixture(scope="module")
def pair():
    return bumpy_pair(800, seed=1)


@pytest.fixture(scope="module")
def small():
    return bumpy_pair(150, seed=2)


@pytest.fixture(scope="module")
def result(pair):
    return match(pair.source, pair.target, **FAST)


def _rotation(seed: int) -> torch.Tensor:
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    return q * torch.sign(torch.linalg.det(q))


def test_match_is_accurate_on_a_near_isometric_pair(pair, result):
    assert isinstance(result, MatchResult)
    assert result.p2p_21.shape == (pair.source.verts.shape[0],) and result.p2p_21.dtype == torch.long
    assert result.fmap_12.shape == (30, 30)
    err = geodesic_error(result.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx)
    assert 100 * float(err) < 3.0
    assert result.orientation_ratio < 1.0
    assert set(result.timings) == {"basis", "init", "refine", "total"}


def test_match_without_the_anchor_refinement_ranks_after_zoomout(pair, result):
    # anchor_iterations=0: the three best candidates are compared after ZoomOut to k, no refinement on samples
    res = match(pair.source, pair.target, anchor_iterations=0, **FAST)
    err = geodesic_error(res.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx)
    assert 100 * float(err) < 4.0
    # one candidate only: the ranking after refinement has nothing to choose from, the map is still good
    one = match(pair.source, pair.target, n_final=1, **FAST)
    err = geodesic_error(one.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx)
    assert 100 * float(err) < 4.0


def test_ranking_distortion(small):
    from geomot.correspondence.pipeline import _MapSelector

    v, f = small.source.verts, small.source.faces
    sel = _MapSelector(v, f, v, f, m=16)
    assert sel.samples.shape == (16,)
    assert sel.distortion(sel.samples) == 0.0
    assert sel(torch.arange(v.shape[0])) == (0.0, 0.0)
    # send every sample to its nearest other sample: distances change, the distortion is positive
    d = sel.d2 + torch.diag(torch.full((16,), float("inf"), dtype=sel.d2.dtype))
    assert sel.distortion(sel.samples[d.argmin(1)]) > 0.1
    # a map known on a longer farthest-point sampling only (it contains the selector's samples, in any order)
    from geomot.ops.sampling import farthest_point_sampling

    longer = farthest_point_sampling(v, 60, start=0).long()
    assert sel.distortion_on(longer.flip(0), longer.flip(0)) == 0.0
    images = torch.arange(v.shape[0])
    images[sel.samples] = sel.samples[d.argmin(1)]
    assert sel.distortion_on(longer, images[longer]) == sel.distortion(sel.samples[d.argmin(1)])
    with pytest.raises(ValidationError, match="samples"):
        sel.distortion_on(longer[16:], longer[16:])


def test_ranking_deformation_residual(small):
    """The final ranking key: 0 for a rigidly moved copy, about 0 for a smooth deformation of the source (one the
    eigenfunctions span), positive for a map that swaps two distant regions, and the same after rigid motions."""
    from geomot.correspondence.pipeline import _deformation_residual
    from geomot.ops.spectral import spectral_basis

    v, f = small.source.verts, small.source.faces
    phi = spectral_basis(v, f, k=20).evecs
    rot = _rotation(3).to(v.dtype)
    moved = v @ rot.T + torch.tensor([0.3, -1.0, 2.0], dtype=v.dtype)
    assert _deformation_residual(v, moved, phi) < 1e-8
    bent = v + phi[:, 1:4] * 0.2  # a displacement in the span of the basis
    assert _deformation_residual(v, bent @ rot.T, phi) < 1e-3  # alternating fit: 3 rounds, not exact
    # swap the images of the two ends of the shape along its longest axis (a fifth of the vertices each)
    t = (v - v.mean(0)) @ torch.linalg.svd(v - v.mean(0))[2][0]
    order = t.argsort()
    n5 = v.shape[0] // 5
    swapped = torch.arange(v.shape[0])
    swapped[order[:n5]], swapped[order[-n5:]] = order[-n5:], order[:n5]
    r = _deformation_residual(v, v[swapped], phi)
    assert r > 0.05 * float((v - v.mean(0)).norm(dim=1).mean())
    assert abs(_deformation_residual(v, v[swapped] @ rot.T, phi) - r) < 1e-6 * max(r, 1.0)


def test_match_is_invariant_to_rigid_motions(pair, result):
    moved = Mesh(pair.target.verts @ _rotation(7).T * 3.0 + torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64),
                 pair.target.faces)
    other = match(pair.source, moved, **FAST)
    assert float((other.p2p_21 == result.p2p_21).double().mean()) > 0.99


def test_non_isometric_polishes_spectral_maps_locally(pair, result):
    """``non_isometric=True``: a spectral initial map gets the windowed extrinsic polish (each snap within 2 edge
    rings); the map changes, stays accurate on this near-isometric pair, and ``refine_extrinsic=False`` turns the
    polish off again."""
    polished = match(pair.source, pair.target, non_isometric=True, **FAST)
    assert not torch.equal(polished.p2p_21, result.p2p_21)
    err = geodesic_error(polished.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx)
    assert 100 * float(err) < 3.0
    off = match(pair.source, pair.target, non_isometric=True, refine_extrinsic=False, **FAST)
    assert torch.equal(off.p2p_21, result.p2p_21)
    # without the flag the polish follows the edge stretch of the final map (shapes at unit area): this pair is
    # below the gate (the default result above is unpolished); a gate of 0 polishes it like the flag
    from geomot.correspondence import MatchConfig
    from geomot.correspondence.matching import edge_stretch
    from geomot.ops.geometry import total_area

    src, tgt = pair.source, pair.target
    v2 = src.verts / float(total_area(src.verts, src.faces)) ** 0.5
    v1 = tgt.verts / float(total_area(tgt.verts, tgt.faces)) ** 0.5
    assert edge_stretch(v2, src.faces, v1, result.p2p_21) < MatchConfig().stretch_gate
    assert torch.equal(match(src, tgt, config=MatchConfig(stretch_gate=0.0), **FAST).p2p_21, polished.p2p_21)


def test_edge_stretch_measures_the_local_distortion_of_a_map(small):
    from geomot.correspondence.pipeline import _edge_stretch

    v, f = small.source.verts, small.source.faces
    ident = torch.arange(v.shape[0])
    assert _edge_stretch(v, f, v, ident) == 0.0
    assert _edge_stretch(v, f, 2.0 * v, ident) == pytest.approx(math.log(2.0))
    assert _edge_stretch(v, f, v, torch.zeros_like(ident)) == pytest.approx(math.log(20.0))  # collapsed: 1/20


def test_match_directions_and_vertex_counts(small):
    other = bumpy_sphere(120)
    res = match(other, small.target, **TINY)
    assert res.p2p_21.shape == (120,) and int(res.p2p_21.max()) < small.target.verts.shape[0]
    back = match((small.target.verts, small.target.faces), other, **TINY)
    assert back.p2p_21.shape == (small.target.verts.shape[0],) and int(back.p2p_21.max()) < 120


@pytest.mark.slow
def test_match_refiners(pair):
    for refine in ("sinkhorn", "none"):
        res = match(pair.source, pair.target, refine=refine, **FAST)
        err = geodesic_error(res.p2p_21, pair.target.verts, pair.target.faces, pair.src_idx, pair.tgt_idx)
        assert 100 * float(err) < 8.0, refine


def test_point_clouds_are_matched_with_orientation_terms(small, caplog):
    src = PointCloud(small.source.verts)
    res = match(src, small.target.verts, **TINY)
    # outward normals and tangent gradients give clouds the orientation terms of meshes
    assert res.p2p_21.shape == (small.source.verts.shape[0],) and math.isfinite(res.orientation_ratio)
    assert "orientation" not in caplog.text


def test_mesh_with_boundary_several_components_and_non_manifold_edges(small):
    pair, FAST = small, TINY
    v, f = pair.source.verts, pair.source.faces
    keep = v[f].mean(1)[:, 2] > -0.6  # cut a cap: a boundary loop
    from geomot.ops.geometry import remove_unreferenced_vertices

    vb, fb, _ = remove_unreferenced_vertices(v, f[keep])
    assert match((vb, fb), pair.target, **FAST).p2p_21.shape == (vb.shape[0],)
    v2 = torch.cat([v, v + 4.0])
    f2 = torch.cat([f, f + v.shape[0]])
    assert match((v2, f2), pair.target, **FAST).p2p_21.shape == (v2.shape[0],)
    a, b = int(f[0, 0]), int(f[0, 1])
    v3 = torch.cat([v, torch.tensor([[0.0, 0.0, 5.0]], dtype=v.dtype)])
    f3 = torch.cat([f, torch.tensor([[a, b, v.shape[0]]])])
    assert match((v3, f3), pair.target, **FAST).p2p_21.shape == (v3.shape[0],)


def test_bad_inputs_raise_clear_errors(pair):
    v, f = pair.source.verts, pair.source.faces
    iso = torch.cat([v, torch.tensor([[9.0, 9.0, 9.0]], dtype=v.dtype)])
    with pytest.raises(ValidationError, match="isolated"):
        match((iso, f), pair.target, **FAST)
    with pytest.raises(ValidationError, match="refine"):
        match(pair.source, pair.target, refine="icp")
    with pytest.raises(ValidationError, match="fewer eigenfunctions than vertices"):
        match(bumpy_sphere(60), pair.target, k=80, k_init=6, k_select=16)
    with pytest.raises(ValidationError, match="k_init <= k_select <= k"):
        match(pair.source, pair.target, k=20, k_select=30)
    with pytest.raises(ShapeError, match="source"):
        match("mesh.off", pair.target)
    with pytest.raises(ShapeError, match="target faces"):
        match(pair.source, (v, f[:, :2]))
    with pytest.raises(ValidationError, match="n_candidates"):
        match(pair.source, pair.target, n_candidates=0)
    with pytest.raises(ValidationError, match="anchor_iterations"):
        match(pair.source, pair.target, anchor_iterations=-1)


def test_fewer_ranking_samples_than_distortion_samples(small):
    # n_samples=10: 20 ranking samples against 64 distortion samples; the extrinsic comparison still works
    res = match(small.source, small.target, k=6, k_init=2, k_select=3, n_candidates=1, n_samples=10)
    assert res.p2p_21.shape == (small.source.verts.shape[0],)
