"""Ground-truth-free map scores (geomot.correspondence.consistency): closed forms on identity, permuted, constant,
mirror and collapsed maps; invariance to scale and vertex order; NaN propagation; every error message; FAUST_r
ground-truth maps when the data are present."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.consistency import (
    MapConsistency,
    area_coverage,
    area_distortion,
    cycle_error,
    map_consistency,
)
from geomot.io.synthetic import icosphere
from geomot.ops.geometry import face_areas

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def ellipsoid():
    m = icosphere(3)
    return m.verts * torch.tensor([1.0, 0.6, 0.4], dtype=torch.float64), m.faces.long()


def _nearest(points: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
    return torch.cdist(points, verts).argmin(1)


def test_identity_map_is_perfect(ellipsoid):
    v, f = ellipsoid
    ident = torch.arange(v.shape[0])
    c = map_consistency(ident, ident, v, f, v, f)
    assert isinstance(c, MapConsistency)
    assert c.cycle_error == 0.0
    assert c.coverage == pytest.approx(1.0)
    assert c.area_distortion == pytest.approx(0.0, abs=1e-12)
    assert c.orientation == pytest.approx(1.0)


def test_permuted_copy_scaled_and_moved_is_perfect(ellipsoid):
    v, f = ellipsoid
    perm = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(0))
    inv = torch.argsort(perm)
    v1, f1 = 3.0 * v[perm] + 1.5, inv[f]  # vertex i of shape 1 is vertex perm[i] of shape 2
    p2p_21, p2p_12 = inv, perm
    c = map_consistency(p2p_21, p2p_12, v, f, v1, f1)
    assert c.cycle_error == 0.0
    assert c.coverage == pytest.approx(1.0)
    assert c.area_distortion == pytest.approx(0.0, abs=1e-9)
    assert c.orientation == pytest.approx(1.0)


def test_cycle_error_closed_form(ellipsoid):
    v, f = ellipsoid
    n = v.shape[0]
    shift = (torch.arange(n) + 1) % n
    per_vertex = cycle_error(torch.arange(n), shift, v, f, reduction="none")
    area = float(face_areas(v, f).sum())
    ref = (v - v[shift]).norm(dim=-1) / math.sqrt(area)
    torch.testing.assert_close(per_vertex, ref)
    # uniform weights for a cloud, whose scale is that of a sphere of the same RMS radius
    cloud = cycle_error(torch.arange(n), shift, v)
    rms = float((v - v.mean(0)).square().sum(-1).mean().sqrt())
    assert float(cloud) == pytest.approx(float((v - v[shift]).norm(dim=-1).mean()) / (rms * math.sqrt(4 * math.pi)))


def test_mirror_maps_pass_the_cycle_but_not_the_orientation(ellipsoid):
    v, f = ellipsoid
    mirror = _nearest(v * torch.tensor([-1.0, 1.0, 1.0], dtype=v.dtype), v)
    c = map_consistency(mirror, mirror, v, f, v, f)
    assert c.cycle_error < 1e-9  # both directions flipped: the round trip is the identity
    assert c.coverage == pytest.approx(1.0)
    assert c.orientation < -0.95


def test_collapse_onto_half_halves_the_coverage(ellipsoid):
    v, f = ellipsoid
    folded = v.clone()
    folded[:, 0] = folded[:, 0].abs()
    fold = _nearest(folded, v)  # the half x < 0 lands on the half x > 0
    cov = float(area_coverage(fold, v, f))
    assert 0.5 < cov < 0.65  # half the area, and a band of width about the radius along x = 0
    # a fold keeps the area of each triangle (its mirror image has the same area): not an area distortion
    assert float(area_distortion(fold, v, f, v, f)) < 0.05


def test_constant_map_area_distortion_closed_form(ellipsoid):
    v, f = ellipsoid
    const = torch.zeros(v.shape[0], dtype=torch.long)
    a = face_areas(v, f)
    a = a / a.sum()
    delta = 1.0 / f.shape[0]
    ref = (a * (delta / (a + delta)).log().abs()).sum()
    torch.testing.assert_close(area_distortion(const, v, f, v, f), ref)
    per_face = area_distortion(const, v, f, v, f, reduction="none")
    assert per_face.shape == (f.shape[0],)
    assert float(area_coverage(const, v, f)) < 0.05
    assert math.isnan(map_consistency(const, const, v, f, v, f).orientation)


def test_coverage_of_a_coarser_source_with_a_correct_map():
    fine, coarse = icosphere(4), icosphere(2)
    p2p_21 = _nearest(coarse.verts, fine.verts)  # every coarse vertex on its fine twin
    assert float(area_coverage(p2p_21, fine.verts, fine.faces)) > 0.99
    # a plain count of the hit vertices would be 162 / 2562
    assert float(area_coverage(p2p_21, fine.verts, fine.faces, radius=1e-6)) < 0.1


def test_nan_in_gives_nan_out(ellipsoid):
    v, f = ellipsoid
    vn = v.clone()
    vn[3] = float("nan")
    ident = torch.arange(v.shape[0])
    assert math.isnan(float(cycle_error(ident, ident, vn, f)))
    assert math.isnan(float(area_coverage(ident, vn, f)))
    assert math.isnan(float(area_distortion(ident, vn, f, v, f)))


def test_dtype_and_device_follow_the_inputs(ellipsoid):
    v, f = ellipsoid
    ident = torch.arange(v.shape[0])
    v32 = v.float()
    assert cycle_error(ident, ident, v32, f).dtype == torch.float32
    assert area_coverage(ident, v32, f).dtype == torch.float32
    assert area_distortion(ident, v32, f, v32, f).dtype == torch.float32


def test_errors(ellipsoid):
    v, f = ellipsoid
    n = v.shape[0]
    ident = torch.arange(n)
    with pytest.raises(ShapeError, match=r"p2p_21: expected shape \(642,\)"):
        cycle_error(ident[:-1], ident, v, f)
    with pytest.raises(ValidationError, match="p2p_12: index 642 out of range"):
        cycle_error(ident, ident + 1, v, f)
    with pytest.raises(ShapeError, match="reduction: expected 'mean' or 'none'"):
        cycle_error(ident, ident, v, f, reduction="sum")
    with pytest.raises(ShapeError, match="reduction: expected 'mean' or 'none'"):
        area_distortion(ident, v, f, v, f, reduction="sum")
    with pytest.raises(ValidationError, match="radius: expected a positive value"):
        area_coverage(ident, v, f, radius=0.0)
    with pytest.raises(ShapeError, match="p2p_21: expected a"):
        area_coverage(ident[None], v, f)
    with pytest.raises(ShapeError, match="shape 1 verts: expected last dimension 3"):
        area_coverage(ident, v[:, :2], f)
    with pytest.raises(ShapeError, match="shape 2 faces: expected last dimension 3"):
        area_distortion(ident, v, f[:, :2], v, f)
    with pytest.raises(ShapeError, match="p2p_21: expected an integer tensor"):
        map_consistency(ident.double(), ident, v, f, v, f)


@pytest.mark.skipif(not (DATA / "FAUST_r").is_dir(), reason="../shared/data/FAUST_r is absent (see its README)")
def test_faust_ground_truth_maps_score_well():
    from geomot.io import ShapeDataset

    ds = ShapeDataset(DATA / "FAUST_r")
    a, b = ds.load("tr_reg_000", dtype=torch.float64), ds.load("tr_reg_001", dtype=torch.float64)
    ga, gb = ds.ground_truth("tr_reg_000", "tr_reg_001")
    p_ab = gb[_nearest(a.verts, a.verts[ga])]  # each vertex of a -> nearest template vertex -> its twin on b
    p_ba = ga[_nearest(b.verts, b.verts[gb])]
    c = map_consistency(p_ab, p_ba, a.verts, a.faces, b.verts, b.faces)
    assert c.cycle_error < 0.02 and c.coverage > 0.95 and c.orientation > 0.8 and c.area_distortion < 0.8
