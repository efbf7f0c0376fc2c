"""Geodesic error, PCK, coverage, bijectivity and dataset evaluation: great-circle distances on the sphere, exact
vs heat method, normalisation, the ``.vts`` convention on real data."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.metrics import (
    bijectivity,
    coverage,
    evaluate_pairs,
    geodesic_distances,
    geodesic_error,
    pck_curve,
)
from tests.conftest import icosphere, shared_path


@pytest.fixture(scope="module")
def sphere():
    return icosphere(3)


def test_sphere_distances_match_great_circles(sphere):
    v, f = sphere
    src = torch.tensor([0, 1, 2, 3, 4, 5, 100, 200])
    dst = torch.tensor([300, 400, 500, 600, 3, 5, 7, 9])
    ref = torch.arccos((v[src] * v[dst]).sum(1).clamp(-1, 1))
    exact = geodesic_distances(v, f, src, dst)
    heat = geodesic_distances(v, f, src, dst, method="heat")
    assert exact.dtype == torch.float64 and exact.shape == (8,)
    assert torch.allclose(exact, ref, rtol=0.02, atol=1e-3)  # polyhedral vs smooth sphere
    assert torch.allclose(heat, exact, rtol=0.1, atol=0.02)
    assert float(exact[5]) == 0.0  # identical vertices


def test_geodesic_error_convention_and_scale_invariance(sphere):
    v, f = sphere
    n = v.shape[0]
    gt = torch.arange(n)
    assert float(geodesic_error(gt, v, f, gt, gt)) == 0.0
    shifted = torch.roll(gt, 1)
    e1 = geodesic_error(shifted, v, f, gt, gt, reduction="none")
    e2 = geodesic_error(shifted, 3.0 * v, f, gt, gt, reduction="none")
    assert torch.allclose(e1, e2, rtol=1e-4)  # normalised by sqrt(area) (edge flips stop at ~1e-6)
    raw = geodesic_error(shifted, v, f, gt, gt, normalize=False, reduction="none")
    area = 0.5 * torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1).norm(dim=1).sum()
    assert torch.allclose(e1, raw / math.sqrt(float(area)))
    assert torch.isclose(geodesic_error(shifted, v, f, gt, gt, reduction="sum"), e1.sum())
    with pytest.raises(ValidationError, match="reduction"):
        geodesic_error(gt, v, f, gt, gt, reduction="max")
    with pytest.raises(ShapeError, match="gt_src/gt_tgt"):
        geodesic_error(gt, v, f, gt, gt[:5])
    with pytest.raises(ValidationError, match="p2p"):
        geodesic_error(gt + n, v, f, gt, gt)
    with pytest.raises(ValidationError, match="method"):
        geodesic_distances(v, f, gt[:2], gt[:2], method="dijkstra")


def test_pck_coverage_bijectivity():
    err = torch.tensor([0.0, 0.01, 0.02, 0.3], dtype=torch.float64)
    thr, pck = pck_curve(err, [0.0, 0.015, 0.1, 1.0])
    assert torch.allclose(pck, torch.tensor([0.25, 0.5, 0.75, 1.0], dtype=torch.float64))
    thr, pck = pck_curve(err)
    assert thr.shape == (51,) and bool((pck[1:] >= pck[:-1]).all())
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(10)
    assert coverage(perm, 10) == 1.0 and coverage(torch.zeros(10, dtype=torch.long), 10) == 0.1
    assert (bijectivity(perm, inv) == 1.0 and bijectivity(perm, perm[perm]) < 1.0) or perm.equal(inv)
    with pytest.raises(ValidationError, match="p2p"):
        coverage(perm, 5)


class _FakeDataset:
    def __init__(self, v, f):
        from geomot.structures import Mesh

        self.mesh = Mesh(v, f)

    def load(self, name):
        return self.mesh

    def ground_truth(self, a, b):
        n = self.mesh.verts.shape[0]
        return torch.arange(n), torch.arange(n)


def test_evaluate_pairs(sphere):
    ds = _FakeDataset(*sphere)
    out = evaluate_pairs(ds, [("a", "b")], lambda s, t: torch.arange(s.verts.shape[0]))
    assert len(out) == 1 and out[0].mean_error == 0.0 and out[0].coverage == 1.0
    with pytest.raises(ValidationError, match="pairs"):
        evaluate_pairs(ds, [], lambda s, t: None)


@pytest.mark.data
def test_faust_ground_truth_is_consistent():
    root = shared_path("FAUST_r")
    from geomot.io import ShapeDataset

    ds = ShapeDataset(root)
    mesh = ds.load("tr_reg_000", dtype=torch.float64)
    gs, gt = ds.ground_truth("tr_reg_000", "tr_reg_000")
    p2p = torch.arange(mesh.verts.shape[0])
    assert float(geodesic_error(p2p, mesh.verts, mesh.faces, gs[:200], gt[:200])) == 0.0


def test_mesh_objects_are_accepted(sphere):
    from geomot.structures import Mesh

    v, f = sphere
    mesh = Mesh(v, f)
    gt = torch.arange(v.shape[0])
    p2p = torch.roll(gt, 3)
    ref = geodesic_error(p2p, v, f, gt, gt, reduction="none")
    assert torch.equal(geodesic_error(p2p, mesh, gt, gt, reduction="none"), ref)
    assert torch.equal(geodesic_error(p2p, mesh, gt_src=gt, gt_tgt=gt, reduction="none"), ref)
    src, dst = torch.tensor([0, 5, 9]), torch.tensor([40, 5, 100])
    assert torch.equal(geodesic_distances(mesh, src, dst), geodesic_distances(v, f, src, dst))
    assert torch.equal(geodesic_distances(mesh, src=src, dst=dst, method="heat"),
                       geodesic_distances(v, f, src, dst, method="heat"))


def test_mesh_form_errors(sphere):
    from geomot.structures import Mesh

    v, f = sphere
    mesh = Mesh(v, f)
    gt = torch.arange(v.shape[0])
    with pytest.raises(ValidationError, match="geodesic_error: with a Mesh, the arguments after it are those that "
                       "follow faces in the tensor form; got one argument too many"):
        geodesic_error(gt, mesh, f, gt, gt)
    with pytest.raises(ShapeError, match="geodesic_error: expects a single mesh, got a batch of 2"):
        geodesic_error(gt, Mesh([v, v], [f, f]), gt, gt)
    with pytest.raises(ValidationError, match=r"faces2/gt_src/gt_tgt: missing; call geodesic_error\(p2p, verts2"):
        geodesic_error(gt, mesh, gt)
    with pytest.raises(ValidationError, match=r"faces/src/dst: missing; call geodesic_distances\(verts, faces"):
        geodesic_distances(v, f, gt)
    with pytest.raises(ShapeError, match=r"src/dst: expected two \(K,\) tensors"):
        geodesic_distances(v, f, gt, gt[:3])
