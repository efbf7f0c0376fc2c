"""The generated shapes of data/ (geomot.io.synthetic, scripts/make_data.py): closed forms, reproducibility, exact
ground truth, and a matching problem that a plain functional map + ZoomOut solves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from geomot._core.errors import ValidationError
from geomot.io import ShapeDataset, load, read_vts
from geomot.io.synthetic import bend_twist, blob, bumpy_pair, bumpy_sphere, fibonacci_sphere, icosphere, torus
from geomot.ops.geometry import edges
from geomot.structures import Mesh
from tests.conftest import ROOT
from tests.conftest import icosphere as reference_icosphere

DATA = ROOT / "data"
GENERATED = {
    "icosphere.off": lambda: icosphere(3),
    "torus.off": torus,
    "blob.off": blob,
    "pair/off/bumps_0.off": lambda: bumpy_pair().source,
    "pair/off/bumps_1.off": lambda: bumpy_pair().target,
}


def _volume(m: Mesh) -> float:
    """Signed volume by the divergence theorem: sum over faces of det(v0, v1, v2) / 6."""
    t = m.verts[m.faces]
    return float(torch.linalg.det(t).sum() / 6)


def _euler(m: Mesh) -> int:
    return m.verts.shape[0] - edges(m.faces).shape[0] + m.faces.shape[0]


def _closed(m: Mesh) -> bool:
    f = m.faces
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    directed = {tuple(x) for x in e.tolist()}
    return len(directed) == e.shape[0] and all((b, a) in directed for a, b in directed)  # each edge once each way


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_files_equal_the_generators(name):
    m = load(DATA / name, dtype=torch.float64)
    ref = GENERATED[name]()
    assert torch.allclose(m.verts, ref.verts, atol=1e-9, rtol=0)
    assert torch.equal(m.faces, ref.faces)


@pytest.mark.parametrize("side", ["src_idx", "tgt_idx"])
def test_committed_ground_truth_equals_the_generator(side):
    """data/pair/corres/bumps_{0,1}.vts are written by scripts/make_data.py from bumpy_pair(), not copied data."""
    name = "bumps_0.vts" if side == "src_idx" else "bumps_1.vts"
    assert torch.equal(read_vts(DATA / "pair" / "corres" / name), getattr(bumpy_pair(), side).long())


def test_data_folder_is_small_and_documented():
    files = [p for p in DATA.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 600_000
    readme = (DATA / "README.md").read_text()
    for p in files:
        if p.name != "README.md":
            assert p.name in readme, f"{p.name} is not described in data/README.md"
    assert "scripts/make_data.py" in readme and "License" in readme


@pytest.mark.parametrize("subdiv", [0, 1, 2, 3])
def test_icosphere_closed_form(subdiv):
    m = icosphere(subdiv)
    assert m.verts.shape[0] == 10 * 4**subdiv + 2 and m.faces.shape[0] == 20 * 4**subdiv
    assert torch.allclose(m.verts.norm(dim=1), torch.ones(m.verts.shape[0], dtype=torch.float64))
    assert _euler(m) == 2 and _closed(m) and _volume(m) > 0
    # same polyhedron as the independent construction in conftest (compare vertex sets and area)
    rv, rf = reference_icosphere(subdiv)
    assert torch.allclose(m.total_area(), Mesh(rv, rf).total_area(), rtol=1e-12)
    d = torch.cdist(m.verts, rv, compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    assert float(d.max()) < 1e-12


def test_icosphere_area_and_volume_converge():
    m = icosphere(4)
    assert float(m.total_area()[0]) == pytest.approx(4 * math.pi, rel=5e-3)
    assert _volume(m) == pytest.approx(4 / 3 * math.pi, rel=1e-2)


def test_torus_closed_form():
    R, r = 1.0, 0.35
    m = torus(R, r, n_major=120, n_minor=60)
    # inscribed polyhedron: slightly smaller than the smooth torus, by O(h^2)
    assert 0 < 1 - float(m.total_area()[0]) / (4 * math.pi**2 * R * r) < 2e-3
    assert 0 < 1 - _volume(m) / (2 * math.pi**2 * R * r * r) < 4e-3
    small = torus()
    assert _euler(small) == 0 and _closed(small) and small.verts.shape == (800, 3)


def test_blob_and_bumpy_are_closed_outward_spheres():
    for m in [blob(), bumpy_sphere(500)]:
        assert _euler(m) == 2 and _closed(m) and _volume(m) > 0
        # outward: vertex normals point away from the (star-shaped) centre
        cos = torch.nn.functional.cosine_similarity(m.vertex_normals_list()[0], m.verts - m.verts.mean(0), dim=1)
        assert float(cos.min()) > 0
    assert torch.equal(blob().faces, icosphere(3).faces)


def test_fibonacci_sphere_is_uniform():
    u = torch.as_tensor(fibonacci_sphere(4000))
    assert torch.allclose(u.norm(dim=1), torch.ones(4000, dtype=torch.float64))
    assert float(u.mean(0).norm()) < 1e-3  # first moment of the uniform measure is 0
    second = u.T @ u / 4000  # second moment is I / 3
    assert torch.allclose(second, torch.eye(3, dtype=torch.float64) / 3, atol=2e-3)


def test_bumpy_pair_ground_truth_is_exact_and_near_isometric():
    p = bumpy_pair(800, seed=3)
    moved = bend_twist(p.source.verts)
    assert torch.allclose(p.target.verts[p.tgt_idx], moved[p.src_idx], atol=1e-12)
    assert not torch.equal(p.tgt_idx, torch.arange(800))  # shuffled
    assert torch.equal(torch.sort(p.tgt_idx).values, torch.arange(800))  # a permutation
    # faces are carried along: the same triangles, re-indexed
    src_tris = {tuple(sorted(t)) for t in p.tgt_idx[p.source.faces].tolist()}
    assert src_tris == {tuple(sorted(t)) for t in p.target.faces.tolist()}
    e = edges(p.source.faces)
    ls = (p.source.verts[e[:, 0]] - p.source.verts[e[:, 1]]).norm(dim=1)
    tv = p.target.verts[p.tgt_idx]
    lt = (tv[e[:, 0]] - tv[e[:, 1]]).norm(dim=1)
    strain = (lt / ls).log().abs()
    assert 0.01 < float(strain.mean()) < 0.06  # non-rigid, yet close to an isometry
    assert float(p.target.total_area()[0]) == pytest.approx(float(p.source.total_area()[0]), rel=0.05)
    assert _volume(p.target) > 0  # bend_twist keeps the orientation
    assert not torch.equal(bumpy_pair(800, seed=4).tgt_idx, p.tgt_idx)


def test_generator_arguments_are_checked():
    with pytest.raises(ValidationError, match=r"subdiv: expected an integer in \[0, 7\], got 9"):
        icosphere(9)
    with pytest.raises(ValidationError, match=r"minor: expected 0 < minor < major=1\.0, got 2\.0"):
        torus(1.0, 2.0)
    with pytest.raises(ValidationError, match="n_major, n_minor: expected at least 3 each, got 2, 10"):
        torus(n_major=2, n_minor=10)
    with pytest.raises(ValidationError, match="n_verts: expected at least 50, got 10"):
        bumpy_sphere(10)


def _basis(verts: np.ndarray, faces: np.ndarray, k: int):
    import robust_laplacian
    import scipy.sparse.linalg as sla

    L, M = robust_laplacian.mesh_laplacian(verts, faces)
    evals, evecs = sla.eigsh(L, k, M, sigma=-1e-8)
    return evals, evecs, M


def _wks(evals: np.ndarray, evecs: np.ndarray, n: int = 32) -> np.ndarray:
    """Wave kernel signature (Aubry et al. 2011) on n log-energies, sigma = 7 x the energy step."""
    le = np.log(evals[1:])
    e = np.linspace(le[0], le[-1], n)
    sigma = 7 * (e[1] - e[0])
    w = np.exp(-((e[None] - le[:, None]) ** 2) / (2 * sigma**2))
    return (evecs[:, 1:] ** 2 @ w) / w.sum(0, keepdims=True)


def test_shipped_pair_is_solved_by_fmap_and_zoomout():
    """WKS functional map (Ovsjanikov et al. 2012) + ZoomOut (Melzi et al. 2019), written out here with scipy as an
    oracle independent of geomot.correspondence: the shape has no intrinsic symmetry, so the map is not flipped."""
    from scipy.spatial import cKDTree

    ds = ShapeDataset(DATA / "pair")
    src, tgt = ds.load("bumps_0", dtype=torch.float64), ds.load("bumps_1", dtype=torch.float64)
    gt = ds.ground_truth("bumps_0", "bumps_1")
    vs, fs, vt, ft = src.verts.numpy(), src.faces.numpy(), tgt.verts.numpy(), tgt.faces.numpy()
    k = 48
    es, ps, ms = _basis(vs, fs, k)
    et, pt, mt = _basis(vt, ft, k)
    a = ps[:, :20].T @ (ms @ _wks(es, ps))
    b = pt[:, :20].T @ (mt @ _wks(et, pt))
    c = np.stack([np.linalg.solve(a @ a.T + np.diag(1e-2 * (es[:20] - et[i]) ** 2), a @ b[i]) for i in range(20)])
    t2s = cKDTree(ps[:, :20] @ c.T).query(pt[:, :20])[1]  # target vertex -> source vertex
    for kk in range(20, k + 1, 4):
        c = pt[:, :kk].T @ (mt @ ps[t2s, :kk])
        t2s = cKDTree(ps[:, :kk] @ c.T).query(pt[:, :kk])[1]
    pred = torch.as_tensor(t2s)[gt.tgt_idx]  # predicted source vertex of each ground-truth target vertex
    err = (src.verts[pred] - src.verts[gt.src_idx]).norm(dim=1) / src.total_area().sqrt()
    assert float(err.mean()) < 0.05, float(err.mean())
    # a reflection-like flip would send many points to the far side: almost none do
    assert float((err > 0.25).double().mean()) < 0.02
