"""Error paths the rest of the suite does not reach (found by ``scripts/raise_audit.py`` on coverage data): each
bad input raises the documented exception with a message that names the argument."""

from __future__ import annotations

import pytest
import torch

import geomot
from geomot._core.batch import list_to_padded, packed_to_padded
from geomot.errors import ShapeError, ValidationError
from geomot.ops.geometry import center_and_scale, face_areas, vertex_areas, vertex_normals
from geomot.ops.laplacian import cotangent_weights
from geomot.structures import Measure, Mesh, PointCloud
from geomot.transport import sinkhorn, sinkhorn_from_cost
from tests.conftest import icosphere

V, F = icosphere(0)
X = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))
Y = torch.rand(7, 3, generator=torch.Generator().manual_seed(1))

CASES = [
    # structures
    ("mesh-face-count", lambda: Mesh([V, V], [F]), ShapeError, r"faces: expected 2 face tensors \(one per mesh\), got 1"),
    ("mesh-empty", lambda: Mesh([], []), ShapeError, "verts: expected at least one mesh, got an empty list"),
    ("mesh-no-vertices", lambda: Mesh(V[:0], F), ValidationError, "verts: the mesh has no vertices"),
    ("mesh-faces-not-tensor", lambda: Mesh([V], [F.tolist()]), ShapeError, "faces: expected a tensor"),
    ("mesh-faces-1d", lambda: Mesh([V], [F.flatten()]), ShapeError, r"faces: expected a \(F, 3\) tensor, got shape"),
    ("mesh-no-faces", lambda: Mesh(V, F[:0]), ValidationError, "faces: the mesh has no faces"),
    ("mesh-dtypes", lambda: Mesh([V, V.float()], [F, F]), ShapeError, r"verts\[1\]: expected dtype torch.float64"),
    ("mesh-verts-type", lambda: Mesh("v", F), ShapeError, "verts: expected a tensor or a list of tensors, got"),
    ("mesh-verts-4d", lambda: Mesh(V[None, None], F), ShapeError, "verts: expected a 2-D or 3-D tensor, got shape"),
    ("cloud-list-lengths", lambda: PointCloud([X, Y], lengths=torch.tensor([6, 7])), ShapeError,
     "lengths: not accepted with a list of point tensors"),
    ("cloud-2d-lengths", lambda: PointCloud(X, lengths=torch.tensor([6])), ShapeError,
     r"lengths: only valid with batched \(B, N, 3\) points"),
    ("cloud-normals-shape", lambda: PointCloud(X, X[:5]), ShapeError, r"normals: expected shape \(1, 6, 3\)"),
    ("cloud-weights-shape", lambda: PointCloud(X, None, torch.ones(5)), ShapeError, r"weights: expected shape \(1, 6\)"),
    ("cloud-normals-type", lambda: PointCloud(X, "n"), ShapeError, "normals: expected a tensor or a list of tensors"),
    ("cloud-normals-sizes", lambda: PointCloud([X, Y], [X, X]), ShapeError, r"normals: item sizes \[6, 6\] differ"),
    ("measure-list-lengths", lambda: Measure([X, Y], lengths=torch.tensor([6, 7])), ShapeError,
     "lengths: not accepted with a list of supports"),
    ("measure-list-weights", lambda: Measure([X, Y], torch.ones(6)), ShapeError,
     "weights: expected a list of 2 tensors to match the support list"),
    ("measure-2d-lengths", lambda: Measure(X, lengths=torch.tensor([6])), ShapeError,
     r"lengths: only valid with a batched \(B, N, D\) support"),
    ("measure-weights-2d", lambda: Measure(X, torch.ones(1, 6)), ShapeError, "weights"),
    # ragged-batch helpers
    ("list-to-padded-empty", lambda: list_to_padded([]), ShapeError, "expected at least one tensor, got an empty list"),
    ("list-to-padded-type", lambda: list_to_padded([X, "y"]), ShapeError, r"items\[1\]: expected a tensor"),
    ("packed-to-padded-rows", lambda: packed_to_padded(X, torch.tensor([2, 2])), ShapeError,
     r"packed: expected 4 rows \(the sum of lengths\), got 6"),
    # geometry
    ("corners-faces-batch", lambda: face_areas(V[None].expand(2, -1, -1), F[None]), ShapeError,
     r"faces: expected shape \(2, F, 3\)"),
    ("corners-verts-4d", lambda: face_areas(V[None, None], F), ShapeError, r"verts: expected a \(V, 3\) or \(B, V, 3\)"),
    ("vertex-areas-batched", lambda: vertex_areas(V[None], F), ShapeError, r"verts: expected shape \(V, 3\)"),
    ("vertex-normals-batched", lambda: vertex_normals(V[None], F), ShapeError, r"verts: expected shape \(V, 3\)"),
    ("normalize-batched", lambda: center_and_scale(V[None], F), ShapeError, r"verts: expected shape \(V, 3\)"),
    ("cotangent-verts", lambda: cotangent_weights(V[:, :2], F), ShapeError, r"verts: expected shape \(V, 3\)"),
    ("cotangent-faces", lambda: cotangent_weights(V, F[:, :2]), ShapeError, r"faces: expected shape \(F, 3\)"),
    # Sinkhorn
    ("sinkhorn-tau-pair", lambda: sinkhorn(X, Y, eps=0.1, tau=(1.0, 2.0, 3.0)), ValidationError,
     r"tau: expected a number or a pair \(tau_x, tau_y\)"),
    ("sinkhorn-max-iter", lambda: sinkhorn(X, Y, eps=0.1, max_iter=0), ValidationError,
     "max_iter: expected a positive integer, got 0"),
    ("sinkhorn-scaling-iters", lambda: sinkhorn(X, Y, eps=0.1, eps_scaling=0.5, eps_scaling_iters=0), ValidationError,
     "eps_scaling_iters: expected a positive integer, got 0"),
    ("sinkhorn-grad", lambda: sinkhorn(X, Y, eps=0.1, grad="exact"), ValidationError, "grad: expected one of"),
    ("sinkhorn-init-pair", lambda: sinkhorn(X, Y, eps=0.1, init=(torch.zeros(6),)), ValidationError,
     "init: expected a name"),
    ("sinkhorn-init-shape", lambda: sinkhorn(X, Y, eps=0.1, init=(torch.zeros(5), torch.zeros(7))), ShapeError,
     r"expected shape \(1, 6\) \(or unbatched\)"),
    ("cost-lengths-unbatched", lambda: sinkhorn_from_cost(torch.rand(6, 7), eps=0.1, x_lengths=torch.tensor([6])),
     ShapeError, r"x_lengths: only valid with a batched \(B, N, M\) cost"),
    ("cost-weights-type", lambda: sinkhorn_from_cost(torch.rand(6, 7), x_weights=[1.0] * 6, eps=0.1), ShapeError,
     "expected a tensor"),
    ("cost-weights-dtype", lambda: sinkhorn_from_cost(torch.rand(6, 7), x_weights=torch.ones(6, dtype=torch.float64),
                                                             eps=0.1),
     ShapeError, r"expected dtype torch.float32 and device cpu \(those of cost\)"),
    ("divergence-unbalanced-tau", lambda: geomot.sinkhorn_divergence(X, Y, eps=0.1, tau=-1.0), ValidationError, "tau"),
]


@pytest.mark.parametrize(("fn", "exc", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()
