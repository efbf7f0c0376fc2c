"""The compiled, threaded Dijkstra of geomot.ops.graph against scipy's ``dijkstra``: the same floats, bit for bit."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

import geomot.ops.graph as graph_mod
from geomot._core.accel import numba_available
from geomot.io.synthetic import icosphere, torus
from geomot.ops.graph import ShortestPathCache, edge_graph, graph_distances, knn_graph
from tests.conftest import shared_path

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba is not installed (or GEOMOT_NUMBA=0)")


def scipy_rows(g, idx, limit=None) -> np.ndarray:
    """What ``_dijkstra`` computed before it had a kernel: scipy's directed search."""
    lim = np.inf if limit is None else float(limit)
    return dijkstra(g, directed=True, indices=np.asarray(idx), limit=lim).reshape(len(idx), g.shape[0])


def same(a, b) -> bool:
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    return a.dtype == np.float64 and a.shape == b.shape and np.array_equal(a, b)  # inf == inf; no NaN here


@pytest.fixture
def threaded(monkeypatch):
    """Force the thread pool on small inputs (4 threads, jobs down to 1 source) and count its uses."""
    calls = []
    pool = graph_mod.ThreadPoolExecutor

    def spy(workers):
        calls.append(workers)
        return pool(workers)

    monkeypatch.setattr(graph_mod, "ThreadPoolExecutor", spy)
    monkeypatch.setattr(graph_mod, "_JOB_WORK", 1)
    monkeypatch.setattr(graph_mod, "_SERIAL_WORK", 0)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    return calls


def random_graph(rng: np.random.Generator, n: int, m: int, scale) -> sp.csr_matrix:
    """Symmetric random graph on ``n`` vertices from ``m`` random edges (self-loops and repeats summed by the
    conversion), several components and isolated vertices for small ``m``; lengths spread over ``scale``."""
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    w = np.maximum(rng.random(m) * rng.choice(scale, m), 1e-12)
    return graph_mod._symmetric(i, j, w, n)


@needs_numba
def test_the_kernel_is_used_when_numba_is_available():
    assert graph_mod._compiled_dijkstra() is not None


@pytest.mark.parametrize("seed", range(4))
def test_random_graphs_match_scipy_with_and_without_limit(seed, threaded):
    rng = np.random.default_rng(seed)
    for n, m, scale in [(1, 0, [1.0]), (7, 3, [1.0]), (60, 40, [1e-12, 1.0, 1e3]), (300, 900, [1.0, 3.0])]:
        g = random_graph(rng, n, m, scale)
        idx = rng.integers(0, n, 9)
        full = scipy_rows(g, idx)
        assert same(graph_mod._dijkstra(g, idx, None), full)
        finite = full[np.isfinite(full) & (full > 0)]
        # an attained distance as the limit: scipy keeps d <= limit, so that vertex must stay
        for limit in ([float(np.median(finite)), float(finite.max())] if finite.size else []) + [1e-13, 0.5]:
            cut = scipy_rows(g, idx, limit)
            assert same(graph_mod._dijkstra(g, idx, limit), cut)
            assert np.array_equal(np.where(full <= limit, full, np.inf), cut)
    assert threaded or graph_mod._compiled_dijkstra() is None  # the pool ran


def test_integer_lengths_with_ties_match_scipy(threaded):
    rng = np.random.default_rng(5)
    g = random_graph(rng, 400, 1600, [1.0])
    g.data = np.ceil(g.data * 4)  # lengths 1..4: many equal distances, heap ties
    idx = rng.integers(0, 400, 16)
    assert same(graph_mod._dijkstra(g, idx, None), scipy_rows(g, idx))
    assert same(graph_mod._dijkstra(g, idx, 3.0), scipy_rows(g, idx, 3.0))


def test_explicit_zeros_duplicates_and_one_way_edges_match_scipy():
    # CSR with an explicit zero (an edge of length 0 for scipy), a duplicate entry (parallel edges: the shorter
    # wins) and a one-way edge, built from its arrays so that nothing is summed or dropped
    indptr = np.array([0, 3, 4, 5, 5, 5])
    indices = np.array([1, 2, 2, 3, 4])
    data = np.array([0.0, 5.0, 2.0, 1.0, 0.25])
    g = sp.csr_matrix((data, indices, indptr), shape=(5, 5))
    assert g.nnz == 5 and not g.has_canonical_format
    idx = np.array([0, 1, 2, 3, 4, 0])
    for limit in (None, 2.0, 1.0, 0.0):
        ref = scipy_rows(g, idx, limit)
        assert same(graph_mod._dijkstra(g, idx, limit), ref)
    np.testing.assert_array_equal(scipy_rows(g, [0])[0], [0.0, 0.0, 2.0, 1.0, 2.25])
    # COO with repeated entries: both sum them when converting to CSR
    coo = sp.coo_matrix((np.array([1.0, 1.0, 4.0]), (np.array([0, 0, 1]), np.array([1, 1, 2]))), shape=(3, 3))
    assert same(graph_mod._dijkstra(coo, np.array([0, 2]), None), scipy_rows(coo, [0, 2]))


def test_nan_and_inf_lengths_are_no_edges_as_in_scipy():
    # scipy keeps fl(d + w) <= limit only: a NaN or inf length never reaches its end vertex
    indptr = np.array([0, 2, 3, 4, 4])
    g = sp.csr_matrix((np.array([np.nan, 1.0, np.inf, 2.0]), np.array([1, 2, 3, 1]), indptr), shape=(4, 4))
    idx = np.array([0, 1, 2])
    ref = scipy_rows(g, idx)
    np.testing.assert_array_equal(ref[0], [0.0, 3.0, 1.0, np.inf])
    assert same(graph_mod._dijkstra(g, idx, None), ref)
    assert same(graph_mod._dijkstra(g, idx, 2.5), scipy_rows(g, idx, 2.5))


def test_one_source_repeated_sources_and_no_source(threaded):
    m = icosphere(2)
    g = edge_graph(m.verts, m.faces)
    for idx in (np.array([7]), np.array([3, 3, 9, 3, 0, 9, 9, 1])):
        assert same(graph_distances(g, torch.as_tensor(idx)), scipy_rows(g, idx))
    empty = graph_distances(g, torch.zeros(0, dtype=torch.long))
    assert empty.shape == (0, g.shape[0]) and empty.dtype == torch.float64


def test_meshes_and_clouds_match_scipy(threaded):
    gen = torch.Generator().manual_seed(0)
    t = torus(n_major=30, n_minor=12)
    sphere = icosphere(3)
    cloud = knn_graph(torch.randn(500, 3, generator=gen, dtype=torch.float64), 6)
    two = torch.cat([torch.randn(80, 2, generator=gen, dtype=torch.float64), torch.randn(40, 2, generator=gen) + 50])
    for g in (edge_graph(t.verts, t.faces), edge_graph(sphere.verts, sphere.faces), cloud, knn_graph(two, 4)):
        idx = torch.randint(0, g.shape[0], (12,), generator=gen)
        for limit in (None, 0.3):
            assert same(graph_distances(g, idx, limit=limit), scipy_rows(g, idx.numpy(), limit))


def test_threaded_and_serial_paths_agree(monkeypatch):
    m = icosphere(3)
    g = edge_graph(m.verts, m.faces)
    idx = torch.arange(0, g.shape[0], 23)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    serial = graph_distances(g, idx)
    serial_cut = graph_distances(g, idx, limit=0.4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.setattr(graph_mod, "_JOB_WORK", 1)
    monkeypatch.setattr(graph_mod, "_SERIAL_WORK", 0)
    used = []
    pool = graph_mod.ThreadPoolExecutor
    monkeypatch.setattr(graph_mod, "ThreadPoolExecutor", lambda w: used.append(w) or pool(w))
    assert torch.equal(graph_distances(g, idx), serial)
    assert torch.equal(graph_distances(g, idx, limit=0.4), serial_cut)
    assert used == ([3, 3] if graph_mod._compiled_dijkstra() is not None else [])


def test_scipy_fallback_gives_the_same_rows(monkeypatch):
    m = icosphere(2)
    g = edge_graph(m.verts, m.faces)
    idx = torch.tensor([0, 4, 4, 100])
    compiled = graph_distances(g, idx, limit=0.7)
    monkeypatch.setattr(graph_mod, "_compiled_dijkstra", lambda: None)
    assert torch.equal(graph_distances(g, idx, limit=0.7), compiled)


@pytest.mark.filterwarnings("ignore:Graph has negative weights")
def test_negative_lengths_and_bad_sources_are_left_to_scipy():
    g = sp.csr_matrix((np.array([1.0, -0.5]), np.array([1, 2]), np.array([0, 1, 2, 2])), shape=(3, 3))
    with pytest.warns(UserWarning, match="negative weights"):
        d = graph_mod._dijkstra(g, np.array([0]), None)
    np.testing.assert_array_equal(d, [[0.0, 1.0, 0.5]])
    with pytest.raises(ValueError, match="indices out of range"):
        graph_mod._dijkstra(g, np.array([3]), None)
    with pytest.raises(ValueError, match="limit must be >= 0"):
        graph_mod._dijkstra(g, np.array([0]), -1.0)


def test_shortest_path_cache_matches_scipy(threaded):
    m = icosphere(3)
    g = edge_graph(m.verts, m.faces)
    cache = ShortestPathCache(g, max_bytes=8 * g.shape[0] * 5)  # room for 5 rows
    for idx in (torch.tensor([5, 1, 5, 77, 300]), torch.tensor([77, 2, 3, 4, 5, 6, 6])):
        assert same(graph_distances(cache, idx), scipy_rows(g, idx.numpy()))
        assert same(graph_distances(cache, idx, limit=0.5), scipy_rows(g, idx.numpy(), 0.5))
    assert len(cache) == 5


def test_faust_mesh_matches_scipy(threaded):
    from geomot.io.trimesh_formats import read_off

    raw = read_off(shared_path("FAUST_r", "off", "tr_reg_000.off"))
    g = edge_graph(torch.as_tensor(raw[0], dtype=torch.float64), torch.as_tensor(raw[1]))
    idx = np.random.default_rng(0).integers(0, g.shape[0], 48)
    assert same(graph_mod._dijkstra(g, idx, None), scipy_rows(g, idx))
    assert same(graph_mod._dijkstra(g, idx, 0.08), scipy_rows(g, idx, 0.08))


@needs_numba
def test_the_kernel_releases_the_gil():
    # while one thread runs a long search, Python code keeps running on this one: with the GIL held it could not
    # run at all until the kernel returned (true on one core too: the OS still shares it between the threads)
    import threading

    t = torus(n_major=120, n_minor=40)
    g = edge_graph(t.verts, t.faces)
    kernel = graph_mod._compiled_dijkstra()
    src = np.arange(0, g.shape[0], 37, dtype=np.int64)
    out = np.empty((src.shape[0], g.shape[0]))
    args = (g.indptr.astype(np.int64), g.indices.astype(np.int64), g.data, src, 0, src.shape[0], np.inf, out)
    window = []

    def search():
        window.append(time.perf_counter())
        kernel(*args)
        window.append(time.perf_counter())

    worker = threading.Thread(target=search)
    ticks = []
    worker.start()
    while worker.is_alive():
        ticks.append(time.perf_counter())
    worker.join()
    start, stop = window
    quarter = (stop - start) / 4  # the middle half: well inside the compiled call, whatever the call overhead
    inside = sum(start + quarter < x < stop - quarter for x in ticks)
    assert inside > 100, (inside, stop - start)  # with the GIL held: 0
    assert same(out, scipy_rows(g, src))
