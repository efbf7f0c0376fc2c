"""Mesh Laplacians as torch sparse matrices (differentiable in the vertex positions for the cotangent one).

Convention: ``L`` is positive semi-definite, ``L = D - W`` with ``W_ij`` the edge weights and ``D_ii = sum_j W_ij``,
so ``x^T L x = 1/2 sum_ij W_ij |x_i - x_j|^2``. The generalised eigenproblem is ``L phi = lambda M phi`` with the
lumped mass ``M`` (:func:`geomot.ops.geometry.vertex_areas`).
"""

from __future__ import annotations

import torch

from geomot._core.errors import ShapeError

__all__ = ["cotangent_laplacian", "cotangent_weights", "uniform_laplacian"]


def cotangent_weights(verts: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cotangent weights of the half-edges: ``w_ij = cot(alpha_ij) / 2`` for the angle opposite edge ``(i, j)``.

    Returns:
        ``index (2, 3F)`` int64 (both orientations are produced by :func:`cotangent_laplacian`), ``values (3F,)``.
        Degenerate triangles give bounded weights (the cross-product norm is clamped).
    """
    if verts.dim() != 2 or verts.shape[-1] != 3:
        raise ShapeError(f"verts: expected shape (V, 3), got {tuple(verts.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ShapeError(f"faces: expected shape (F, 3), got {tuple(faces.shape)}")
    idx_i, idx_j, idx_k = [], [], []
    vals = []
    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        # angle at corner c, opposite edge (a, b)
        u = verts[faces[:, a]] - verts[faces[:, c]]
        v = verts[faces[:, b]] - verts[faces[:, c]]
        dot = (u * v).sum(-1)
        cross = torch.linalg.cross(u, v, dim=-1).norm(dim=-1)
        scale = (u.norm(dim=-1) * v.norm(dim=-1)).detach()
        cot = dot / torch.maximum(cross, 1e-12 * scale + 1e-30)
        vals.append(0.5 * cot)
        idx_i.append(faces[:, a])
        idx_j.append(faces[:, b])
        idx_k.append(faces[:, c])
    index = torch.stack([torch.cat(idx_i), torch.cat(idx_j)])
    return index, torch.cat(vals)


def _assemble(index: torch.Tensor, w: torch.Tensor, n: int) -> torch.Tensor:
    i, j = index
    diag = w.new_zeros(n).index_add(0, i, w).index_add(0, j, w)
    ar = torch.arange(n, device=w.device)
    rows = torch.cat([i, j, ar])
    cols = torch.cat([j, i, ar])
    values = torch.cat([-w, -w, diag])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()


def cotangent_laplacian(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Cotangent Laplacian ``(V, V)`` (sparse COO, coalesced): ``W_ij = (cot alpha_ij + cot beta_ij) / 2``.

    Differentiable w.r.t. ``verts`` through the values. Pinkall & Polthier 1993; Meyer et al. 2003.
    """
    index, w = cotangent_weights(verts, faces)
    return _assemble(index, w, verts.shape[0])


def uniform_laplacian(faces: torch.Tensor, n_verts: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Graph (umbrella) Laplacian ``(V, V)`` sparse: ``W_ij = 1`` on every mesh edge."""
    from geomot.ops.geometry import edges

    e = edges(faces).t()
    return _assemble(e, torch.ones(e.shape[1], dtype=dtype, device=faces.device), n_verts)
