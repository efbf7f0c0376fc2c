"""Orientation of vertex maps (geomot.ops.orientation) and its use by ``geomot.match``: a mirror map must be
detected, the score must not depend on rigid motions, inconsistent windings and inward normals are recognised."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence import match
from geomot.io.synthetic import bumpy_pair, icosphere
from geomot.ops.orientation import (
    consistently_oriented,
    map_orientation_score,
    mapped_signed_areas,
    signed_volume,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FAST = dict(k=30, k_init=6, k_select=16, n_candidates=8, n_samples=200)


def _rotation(seed: int) -> torch.Tensor:
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0]
    return q * torch.sign(torch.linalg.det(q))


@pytest.fixture(scope="module")
def ellipsoid() -> tuple[torch.Tensor, torch.Tensor]:
    """An ellipsoid with three different axes: mirror-symmetric in x, not rotation-symmetric about any axis."""
    m = icosphere(3)
    return m.verts * torch.tensor([1.0, 1.6, 0.7], dtype=torch.float64), m.faces


def _nearest(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, y).argmin(1)


def test_identity_keeps_orientation_and_mirror_reverses_it(ellipsoid):
    v, f = ellipsoid
    ident = torch.arange(v.shape[0])
    assert map_orientation_score(ident, v, f, v, f) == pytest.approx(1.0, abs=1e-9)
    # the mirror image, wound so that its normals point outwards again: the identity map reverses orientation
    vm, fm = v * torch.tensor([-1.0, 1.0, 1.0], dtype=v.dtype), f[:, [0, 2, 1]]
    assert map_orientation_score(ident, v, f, vm, fm) == pytest.approx(-1.0, abs=1e-9)
    # the same mirror image with the original winding (normals inwards): only the windings matter
    assert map_orientation_score(ident, v, f, vm, f) == pytest.approx(1.0, abs=1e-9)


def test_self_symmetry_of_a_symmetric_shape_is_detected(ellipsoid):
    v, f = ellipsoid
    sym = _nearest(v * torch.tensor([-1.0, 1.0, 1.0], dtype=v.dtype), v)  # the left-right flip
    rot = _nearest(v * torch.tensor([-1.0, -1.0, 1.0], dtype=v.dtype), v)  # a rotation by pi: keeps orientation
    assert map_orientation_score(sym, v, f, v, f) < -0.9
    assert map_orientation_score(rot, v, f, v, f) > 0.9
    # a map that scrambles the vertices has no orientation on the balance
    scrambled = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(0))
    assert abs(map_orientation_score(scrambled, v, f, v, f)) < 0.2


def test_score_is_invariant_to_rigid_motions_and_scale(ellipsoid):
    v, f = ellipsoid
    sym = _nearest(v * torch.tensor([-1.0, 1.0, 1.0], dtype=v.dtype), v)
    noisy = torch.where(torch.rand(v.shape[0], generator=torch.Generator().manual_seed(1)) < 0.1,
                        torch.arange(v.shape[0]).roll(1), sym)
    ref = map_orientation_score(noisy, v, f, v, f)
    moved_t = v @ _rotation(3).T * 2.5 + torch.tensor([1.0, 2.0, -3.0], dtype=v.dtype)
    moved_s = v @ _rotation(4).T - 7.0
    assert map_orientation_score(noisy, moved_s, f, moved_t, f) == pytest.approx(ref, abs=1e-9)


def test_signed_areas_shape_and_degenerate_images(ellipsoid):
    v, f = ellipsoid
    s = mapped_signed_areas(torch.zeros(v.shape[0], dtype=torch.long), v, f, v, f)
    assert s.shape == (f.shape[0],) and bool((s == 0).all())
    assert torch.isnan(torch.tensor(map_orientation_score(torch.zeros(v.shape[0], dtype=torch.long), v, f, v, f)))


def test_bad_inputs_raise_clear_errors(ellipsoid):
    v, f = ellipsoid
    with pytest.raises(ShapeError, match="p2p"):
        map_orientation_score(torch.arange(5), v, f, v, f)
    with pytest.raises(ValidationError, match="p2p"):
        map_orientation_score(torch.full((v.shape[0],), v.shape[0]), v, f, v, f)
    with pytest.raises(ShapeError, match="target faces"):
        map_orientation_score(torch.arange(v.shape[0]), v, f, v, f[:, :2])
    with pytest.raises(ShapeError, match="faces"):
        consistently_oriented(torch.zeros(4, 2, dtype=torch.long))


def test_consistent_winding_and_signed_volume(ellipsoid):
    v, f = ellipsoid
    assert consistently_oriented(f)
    flipped_one = f.clone()
    flipped_one[0] = flipped_one[0, [0, 2, 1]]
    assert not consistently_oriented(flipped_one)
    vol = signed_volume(v, f)
    assert vol > 0
    assert signed_volume(v, f[:, [0, 2, 1]]) == pytest.approx(-vol)
    assert signed_volume(v @ _rotation(5).T + 3.0, f) == pytest.approx(vol)


def test_match_does_not_depend_on_the_winding_convention():
    pair = bumpy_pair(600, seed=3)
    ref = match(pair.source, pair.target, **FAST)
    inward = match((pair.source.verts, pair.source.faces[:, [0, 2, 1]]), pair.target, **FAST)
    assert float((inward.p2p_21 == ref.p2p_21).double().mean()) > 0.99
    # the chosen map keeps orientation
    score = map_orientation_score(ref.p2p_21, pair.source.verts, pair.source.faces, pair.target.verts,
                                  pair.target.faces)
    assert score > 0.5


@pytest.mark.skipif(not (DATA / "FAUST_r" / "off" / "tr_reg_000.off").is_file(),
                    reason="../shared/data/FAUST_r is absent (see its README)")
def test_left_right_flip_of_a_human_is_detected():
    from geomot.io import load

    m = load(DATA / "FAUST_r" / "off" / "tr_reg_000.off", dtype=torch.float64)  # near-symmetric rest pose
    v, f = m.verts, m.faces
    c = v.mean(0)
    flip = _nearest((v - c) * torch.tensor([-1.0, 1.0, 1.0], dtype=v.dtype) + c, v)
    assert map_orientation_score(flip, v, f, v, f) < -0.8
    assert map_orientation_score(torch.arange(v.shape[0]), v, f, v, f) > 0.99
