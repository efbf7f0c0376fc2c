"""Conversions between point-to-point maps and functional maps.

Direction in names (pyFM's convention): ``p2p_21 (V2,)`` gives, for each vertex of shape 2, its match on shape 1;
it induces ``fmap_12 (k2, k1)`` (functions on 1 pulled back to 2): ``Phi_2 fmap_12 ~ Phi_1[p2p_21]``.
"""

from __future__ import annotations

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor
from geomot._core.errors import ShapeError
from geomot.correspondence._argmin import row_argmin

__all__ = ["fmap_from_p2p", "knn_indices", "p2p_from_fmap", "soft_fmap"]

_BLOCK = 2**22  # entries of a distance block: one buffer (16 MiB in float32) reused by every block of a call (a
# new block per step would cost a page fault per 4 KiB each time); not smaller, each block is one parallel region


def knn_indices(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Index of the nearest row of ``y (M, d)`` for each row of ``x (N, d)`` (exact, blocked): ``(N,)`` int64.

    ``argmin_j |x_i - y_j|^2 = argmin_j (|y_j|^2 - 2 <x_i, y_j>)``; ties go to the smallest index, and a row whose
    distances hold a NaN gets the first NaN (as ``torch.argmin``). One fused product-and-add per block of rows into
    a buffer of at most ``2^22`` entries reused for every block, then the row minima (a vectorised ``amin`` and a
    compiled scan for its first position when numba is installed). ``O(N M d)`` time, ``O(M d + 2^22)`` memory.
    Not differentiable (indices only).
    """
    check_float_tensor(x, "x", ndim=2, finite=False)
    check_float_tensor(y, "y", ndim=2, last_dim=x.shape[1], finite=False)
    x, y = x.detach(), y.detach()
    n, m = x.shape[0], y.shape[0]
    yy = (y * y).sum(1)
    yt = y.T.contiguous()
    out = torch.empty(n, dtype=torch.long, device=x.device)
    n_blocks = max(1, -(-n * m // _BLOCK))
    rows = max(1, -(-n // n_blocks))  # blocks of (nearly) equal size
    buf = x.new_empty(rows, m)
    for s in range(0, n, rows):
        block = buf[: min(rows, n - s)]
        # one fused product-and-add per block (a third faster than forming -2 x y^T and adding |y|^2 apart)
        torch.addmm(yy, x[s : s + rows], yt, alpha=-2, out=block)
        row_argmin(block, out[s : s + rows])
    return out


def _check_fmap(fmap_12: torch.Tensor, evecs1: torch.Tensor, evecs2: torch.Tensor) -> None:
    # shape / dtype checks only: these run inside ZoomOut's loop, a NaN scan of the bases each time would dominate
    check_float_tensor(fmap_12, "fmap_12", ndim=2, finite=False)
    check_float_tensor(evecs1, "evecs1", ndim=2, finite=False)
    check_float_tensor(evecs2, "evecs2", ndim=2, finite=False)
    if fmap_12.shape != (evecs2.shape[1], evecs1.shape[1]):
        raise ShapeError(
            f"fmap_12: expected shape (k2, k1) = ({evecs2.shape[1]}, {evecs1.shape[1]}) from evecs2/evecs1, "
            f"got {tuple(fmap_12.shape)}"
        )


def p2p_from_fmap(
    fmap_12: torch.Tensor, evecs1: torch.Tensor, evecs2: torch.Tensor, *, adjoint: bool = False
) -> torch.Tensor:
    """Point-to-point map ``p2p_21 (V2,)`` from ``fmap_12 (k2, k1)`` by nearest neighbours in the spectral embedding.

    ``p2p_21[j] = argmin_i |Phi_1[i] C^T - Phi_2[j]|`` (Ovsjanikov et al. 2012), or with ``adjoint=True``
    ``argmin_i |Phi_1[i] - Phi_2[j] C|`` (the adjoint / pull-back rule of Ezuz & Ben-Chen 2017).

    Args:
        fmap_12: ``(k2, k1)``; evecs1: ``(V1, k1)``; evecs2: ``(V2, k2)`` (row subsets of the bases are fine).
    """
    _check_fmap(fmap_12, evecs1, evecs2)
    if adjoint:
        return knn_indices(evecs2 @ fmap_12, evecs1)
    return knn_indices(evecs2, evecs1 @ fmap_12.T)


def fmap_from_p2p(
    p2p_21: torch.Tensor, evecs1: torch.Tensor, evecs2: torch.Tensor, *, mass2: torch.Tensor | None = None
) -> torch.Tensor:
    """``fmap_12 (k2, k1)`` induced by ``p2p_21 (V2,)``: ``Phi_2^+ Phi_1[p2p_21]``.

    With ``mass2 (V2,)`` the ``M``-orthogonal projection ``Phi_2^T M_2 Phi_1[p2p_21]`` is used (valid when
    ``evecs2`` holds all the vertices); otherwise a least-squares fit, which also works on a subset of the rows
    of ``evecs2`` (with ``p2p_21`` giving their matches).
    """
    check_float_tensor(evecs1, "evecs1", ndim=2, finite=False)
    check_float_tensor(evecs2, "evecs2", ndim=2, finite=False)
    check_index_tensor(p2p_21, "p2p_21", size=evecs1.shape[0])
    if p2p_21.shape != (evecs2.shape[0],):
        raise ShapeError(f"p2p_21: expected shape ({evecs2.shape[0]},) (rows of evecs2), got {tuple(p2p_21.shape)}")
    target = evecs1[p2p_21.long()]
    if mass2 is not None:
        if mass2.shape != (evecs2.shape[0],):
            raise ShapeError(f"mass2: expected shape ({evecs2.shape[0]},), got {tuple(mass2.shape)}")
        return evecs2.T @ (mass2[:, None] * target)
    return torch.linalg.lstsq(evecs2, target).solution


def soft_fmap(plan_21: torch.Tensor, evecs1: torch.Tensor, evecs2: torch.Tensor) -> torch.Tensor:
    """``fmap_12 (k2, k1)`` of a soft map ``plan_21 (V2, V1)`` (rows: points of shape 2, normalised to sum 1 here):
    the least-squares solution of ``Phi_2 C = P Phi_1`` (Pai et al. 2021)."""
    check_float_tensor(plan_21, "plan_21", ndim=2)
    if plan_21.shape != (evecs2.shape[0], evecs1.shape[0]):
        raise ShapeError(
            f"plan_21: expected shape (V2, V1) = ({evecs2.shape[0]}, {evecs1.shape[0]}), got {tuple(plan_21.shape)}"
        )
    P = plan_21 / plan_21.sum(1, keepdim=True).clamp_min(torch.finfo(plan_21.dtype).tiny)
    return torch.linalg.lstsq(evecs2, P @ evecs1).solution
