"""The exact fast paths of the matching pipeline give the same results as the plain computations they replace:
blocked nearest neighbours with the compiled row minima (``knn_indices``, ``row_argmin``, ``argmin_along``) against
``torch.argmin`` of the dense distance matrix (ties, NaN, signed zeros, with and without numba), the shortest-path
cache against fresh Dijkstra searches, the edge count of ``non_manifold_edges`` against a direct count, and the
matching stages with cached graphs against plain ones."""

from __future__ import annotations

import collections

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence import _argmin, knn_indices, matching
from geomot.correspondence.p2p import _BLOCK
from geomot.io.synthetic import bumpy_pair, bumpy_sphere
from geomot.ops.graph import ShortestPathCache, edge_graph, graph_distances
from geomot.ops.spectral import non_manifold_edges


def _dense_nn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The formula of knn_indices in one dense block, reduced by torch.argmin."""
    return torch.addmm((y * y).sum(1), x, y.T, alpha=-2).argmin(1)


@pytest.fixture(params=["compiled", "torch"])
def kernels(request, monkeypatch):
    """Run each test with the numba scans (when installed) and with torch.argmin alone."""
    if request.param == "torch":
        monkeypatch.setattr(_argmin, "_kernels", lambda: None)
    elif _argmin._kernels() is None:
        pytest.skip("numba is not installed (or GEOMOT_NUMBA=0)")
    return request.param


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_indices_matches_the_dense_argmin_across_blocks(kernels, dtype):
    g = torch.Generator().manual_seed(0)
    m = 3000
    n = 3 * (_BLOCK // m) + 7  # several blocks and a short last one
    y = torch.randn(m, 16, generator=g, dtype=dtype)
    x = torch.randn(n, 16, generator=g, dtype=dtype)
    x[:10] = y[100:110]  # exact hits
    assert torch.equal(knn_indices(x, y), _dense_nn(x, y))
    assert torch.equal(knn_indices(x, y)[:10], torch.arange(100, 110))
    # against the true Euclidean nearest neighbours (float64: no near-ties at this size)
    if dtype == torch.float64:
        assert torch.equal(knn_indices(x, y), torch.cdist(x, y).argmin(1))


def test_knn_indices_ties_nan_and_edge_sizes(kernels):
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]])
    x = torch.tensor([[2.0, 0.0], [0.0, 0.0], [float("nan"), 0.0]])
    idx = knn_indices(x, y)
    assert idx[0] == 0  # tie between rows 0 and 2: the smaller index
    assert idx[1] == 0  # all four at distance 1
    assert torch.equal(idx, _dense_nn(x, y))  # a NaN query gets torch.argmin's answer (its first NaN)
    y_nan = y.clone()
    y_nan[1, 0] = float("nan")
    assert torch.equal(knn_indices(x, y_nan), _dense_nn(x, y_nan))
    with pytest.raises(ShapeError, match="x"):
        knn_indices(x[:0], y)
    assert torch.equal(knn_indices(y[:1], y[:1]), torch.zeros(1, dtype=torch.long))


def test_knn_indices_ignores_gradients_and_checks_shapes():
    x = torch.randn(20, 3, requires_grad=True)
    y = torch.randn(30, 3, requires_grad=True)
    assert torch.equal(knn_indices(x, y), _dense_nn(x.detach(), y.detach()))
    with pytest.raises(ShapeError, match="y"):
        knn_indices(x, torch.randn(30, 4))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_argmin_scans_match_torch(kernels, dtype):
    g = torch.Generator().manual_seed(1)
    for shape in [(4, 50, 70), (1, 1, 1), (3, 7, 5)]:
        a = torch.randint(0, 4, shape, generator=g).to(dtype)  # many ties
        a.view(-1)[::11] = -0.0  # -0.0 and +0.0 compare equal
        for dim in (1, 2):
            assert torch.equal(_argmin.argmin_along(a, dim), a.argmin(dim)), (shape, dim)
        rows = a.reshape(-1, shape[-1])
        out = torch.empty(rows.shape[0], dtype=torch.long)
        assert torch.equal(_argmin.row_argmin(rows, out), rows.argmin(1))
        a[0, 0, -1] = float("nan")
        a[-1, -1, 0] = float("nan")
        for dim in (1, 2):
            assert torch.equal(_argmin.argmin_along(a, dim), a.argmin(dim)), ("nan", shape, dim)


@pytest.mark.parametrize("n_cols", [_argmin.TWO_LEVEL_MIN, 40 * 64 + 17])
def test_two_level_row_argmin_matches_torch(n_cols):
    g = torch.Generator().manual_seed(2)
    a = torch.randint(0, 50, (60, n_cols), generator=g).float()  # ties within and across chunks
    a[:, -1] = -1.0  # the minimum in the last column (the padded tail chunk when there is one)
    a[1, 5] = -1.0  # ... and earlier in row 1
    a[2, :] = 7.0  # all equal: index 0
    a[3, 100] = float("nan")
    a[3, 3] = -5.0  # a NaN after the minimum still wins (torch's rule)
    a[4, -2] = float("nan")
    a[5, 64] = -0.0
    a[5, 63] = -0.0  # signed zeros in two chunks
    a[5, a[5] > 0] = 1.0
    out = torch.empty(60, dtype=torch.long)
    assert torch.equal(_argmin.row_argmin(a, out), a.argmin(1))
    assert torch.equal(out, a.argmin(1))
    assert torch.equal(_argmin.row_argmin(a.double(), out), a.double().argmin(1))


def test_argmin_along_falls_back_to_torch_elsewhere():
    a = torch.randn(2, 5, 6)
    assert torch.equal(_argmin.argmin_along(a.transpose(1, 2), 1), a.transpose(1, 2).argmin(1))  # not contiguous
    assert torch.equal(_argmin.argmin_along(a.half(), 2), a.half().argmin(2))  # other dtype
    assert torch.equal(_argmin.argmin_along(a[0], 1), a[0].argmin(1))  # 2-D


@pytest.fixture(scope="module")
def sphere():
    mesh = bumpy_sphere(300)
    v, f = mesh.verts, mesh.faces
    return v, f, edge_graph(v, f)


def test_shortest_path_cache_returns_the_searches_of_the_graph(sphere):
    v, _, g = sphere
    cache = ShortestPathCache(g)
    assert cache.shape == (v.shape[0], v.shape[0]) and len(cache) == 0
    first = torch.tensor([5, 17, 5, 40])
    assert torch.equal(cache.distances(first), graph_distances(g, first))
    assert len(cache) == 3  # distinct sources are kept once
    second = torch.tensor([40, 2, 17])
    assert torch.equal(graph_distances(cache, second), graph_distances(g, second))  # dispatch on the cache
    assert len(cache) == 4
    # a search with a limit is not kept and ends at the limit
    near = graph_distances(cache, second, limit=0.3)
    assert torch.equal(near, graph_distances(g, second, limit=0.3)) and len(cache) == 4
    assert cache.distances(torch.zeros(0, dtype=torch.long)).shape == (0, v.shape[0])
    # rows handed out are copies: writing into them does not change the cache
    out = cache.distances(torch.tensor([5]))
    out.fill_(-1.0)
    assert torch.equal(cache.distances(torch.tensor([5])), graph_distances(g, torch.tensor([5])))


def test_shortest_path_cache_memory_bound_and_errors(sphere):
    v, _, g = sphere
    none_kept = ShortestPathCache(g, max_bytes=0)
    src = torch.tensor([1, 2, 3])
    assert torch.equal(none_kept.distances(src), graph_distances(g, src)) and len(none_kept) == 0
    two_rows = ShortestPathCache(g, max_bytes=2 * 8 * v.shape[0])
    assert torch.equal(two_rows.distances(src), graph_distances(g, src)) and len(two_rows) == 2
    assert torch.equal(two_rows.distances(src.flip(0)), graph_distances(g, src.flip(0)))
    assert ShortestPathCache(two_rows).graph is g  # wrapping a cache wraps its graph
    with pytest.raises(ValidationError, match="graph"):
        ShortestPathCache(torch.zeros(3))
    with pytest.raises(ValidationError, match="max_bytes"):
        ShortestPathCache(g, max_bytes=-1)
    with pytest.raises(ValidationError, match="sources"):
        ShortestPathCache(g).distances(torch.tensor([v.shape[0]]))


def test_non_manifold_edges_counts_edges_of_more_than_two_faces():
    g = torch.Generator().manual_seed(4)
    for _ in range(5):
        faces = torch.randint(0, 12, (40, 3), generator=g)
        count = collections.Counter(
            tuple(sorted((int(a), int(b))))
            for tri in faces.tolist()
            for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0]))
        )
        assert non_manifold_edges(faces) == sum(c > 2 for c in count.values())
    fan = torch.tensor([[0, 1, 2], [0, 1, 3], [1, 0, 4], [5, 6, 7]])
    assert non_manifold_edges(fan) == 1
    assert non_manifold_edges(fan[:2]) == 0
    assert non_manifold_edges(torch.zeros(0, 3, dtype=torch.long)) == 0


def test_matching_stages_give_the_same_maps_with_cached_and_plain_graphs():
    pair = bumpy_pair(200, seed=5)
    cfg = matching.MatchConfig(k=16, k_init=4, k_select=8, n_candidates=2, n_finalists=2, n_samples=50, n_anchors=32)
    prep = matching.prepare(pair.source, pair.target, cfg)
    assert all(isinstance(g, ShortestPathCache) for g in prep.graphs)
    plain = prep._replace(graphs=tuple(g.graph for g in prep.graphs))

    def run(p):
        cands = matching.spectral_candidates(p, cfg)
        ext = matching.extrinsic_candidates(p, cfg, cands.orientation)
        sel = matching.select_initial(p, cands, ext, cfg)
        return matching.refine_map(p, sel, cfg)

    cached, fresh = run(prep), run(plain)
    assert torch.equal(cached.p2p_21, fresh.p2p_21) and torch.equal(cached.fmap_12, fresh.fmap_12)
    assert len(prep.graphs[0]) > 0  # the stages searched through the cache
