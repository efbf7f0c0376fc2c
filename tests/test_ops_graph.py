"""Graph shortest paths: mesh edge graphs, k-nearest-neighbour graphs of clouds (geomot.ops.graph)."""

from __future__ import annotations

import math

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.io.synthetic import icosphere
from geomot.ops.graph import edge_graph, graph_distances, knn_graph, ring_neighbourhoods


def test_edge_graph_distances_on_a_square():
    v = torch.tensor([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    g = edge_graph(v, f)
    assert g.nnz == 10 and (g != g.T).nnz == 0  # 5 edges, both directions
    d = graph_distances(g, torch.tensor([0, 1]))
    assert d.shape == (2, 4) and d.dtype == torch.float64
    torch.testing.assert_close(d[0], torch.tensor([0.0, 1, math.sqrt(2), 1], dtype=torch.float64))
    torch.testing.assert_close(d[1], torch.tensor([1.0, 0, 1, 2], dtype=torch.float64))


def test_graph_distances_approximate_geodesics_on_the_sphere():
    m = icosphere(3)
    d = graph_distances(edge_graph(m.verts, m.faces), torch.tensor([0]))[0]
    great_circle = torch.arccos((m.verts @ m.verts[0]).clamp(-1, 1))
    # edge paths zig-zag (longer) along chords (shorter than arcs): within a few per cent on a fine sphere
    ratio = (d / great_circle.clamp_min(1e-9))[great_circle > 0.5]
    assert float(ratio.min()) > 0.99 and float(ratio.max()) < 1.2
    assert float(d[great_circle.argmax()]) == pytest.approx(math.pi, rel=0.1)


def test_knn_graph_on_a_line_and_components():
    x = torch.tensor([[float(i), 0.0] for i in range(5)] + [[100.0, 0.0], [101.0, 0.0]], dtype=torch.float64)
    g = knn_graph(x, 1)
    assert (g != g.T).nnz == 0
    d = graph_distances(g, torch.tensor([0]))[0]
    torch.testing.assert_close(d[:5], torch.arange(5, dtype=torch.float64))
    assert math.isinf(float(d[5])) and math.isinf(float(d[6]))  # another component


def test_bad_inputs():
    v = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValidationError, match="k: expected"):
        knn_graph(v, 4)
    with pytest.raises((ShapeError, ValidationError), match="faces"):
        edge_graph(v, torch.tensor([[0, 1, 7]]))
    g = knn_graph(torch.randn(5, 3, dtype=torch.float64), 2)
    with pytest.raises((ShapeError, ValidationError), match="sources"):
        graph_distances(g, torch.tensor([9]))


def test_graph_distances_limit_cuts_the_search():
    m = icosphere(2)
    g = edge_graph(m.verts, m.faces)
    full = graph_distances(g, torch.tensor([0, 5]))
    cut = graph_distances(g, torch.tensor([0, 5]), limit=1.0)
    near = full <= 1.0
    torch.testing.assert_close(cut[near], full[near])
    assert bool(torch.isinf(cut[~near]).all())
    with pytest.raises(ValidationError, match="limit"):
        graph_distances(g, torch.tensor([0]), limit=0.0)


@pytest.mark.parametrize("rings", [1, 2, 3])
def test_ring_neighbourhoods_are_the_vertices_within_r_edges(rings):
    m = icosphere(2)
    faces = torch.cat([m.faces, torch.tensor([[m.verts.shape[0], m.verts.shape[0] + 1, m.verts.shape[0] + 2]])])
    n = m.verts.shape[0] + 4  # a separate triangle and an isolated vertex
    index, mask = ring_neighbourhoods(faces, n, rings)
    assert index.shape[0] == n and index.dtype == torch.int64 and mask.dtype == torch.bool
    verts = torch.cat([m.verts, torch.eye(3) + 5, torch.zeros(1, 3)])
    hops = edge_graph(verts, faces)
    hops.data[:] = 1.0  # unit edge lengths: shortest paths count edges
    d = graph_distances(hops, torch.arange(n))
    for i in range(n):
        assert index[i][mask[i]].tolist() == torch.nonzero(d[i] <= rings)[:, 0].tolist()
    assert index[n - 1][mask[n - 1]].tolist() == [n - 1]  # the isolated vertex has only itself
    assert index[n - 2][mask[n - 2]].tolist() == [n - 4, n - 3, n - 2]  # the separate triangle stays apart


def test_ring_neighbourhoods_bad_inputs():
    m = icosphere(1)
    n = m.verts.shape[0]
    for rings in (0, -1, True, 1.5):
        with pytest.raises(ValidationError, match="rings"):
            ring_neighbourhoods(m.faces, n, rings)
    with pytest.raises(ValidationError, match="n_verts"):
        ring_neighbourhoods(m.faces, 0, 1)
    with pytest.raises(ValidationError, match="faces"):
        ring_neighbourhoods(m.faces, n - 1, 1)
    with pytest.raises(ShapeError, match="faces"):
        ring_neighbourhoods(m.faces[:, :2], n, 1)
