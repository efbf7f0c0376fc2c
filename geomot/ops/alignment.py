"""Rigid (and similarity) alignment of corresponding point sets: weighted Procrustes / Kabsch / Umeyama.

The convention is PyTorch3D's ``corresponding_points_alignment``: row vectors, ``Y ≈ s X R + T``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomot._core.errors import ShapeError, ValidationError

__all__ = ["RigidTransform", "corresponding_points_alignment"]


class RigidTransform(NamedTuple):
    """``Y ≈ s X R + T``: ``R (B, D, D)`` (or ``(D, D)``), ``T (B, D)``, ``s (B,)`` (ones without scaling)."""

    R: torch.Tensor
    T: torch.Tensor
    s: torch.Tensor


def corresponding_points_alignment(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None = None,
    *,
    estimate_scale: bool = False,
    allow_reflection: bool = False,
) -> RigidTransform:
    """The rotation ``R``, translation ``T`` (and scale ``s``) that best map ``x`` onto its corresponding ``y``:

    ``min_{R, T, s} sum_i w_i |s x_i R + T - y_i|^2``, ``R^T R = I``, ``det R = +1`` unless ``allow_reflection``.

    Closed form (Kabsch 1976; Umeyama 1991 for the scale): with centred points ``x'``, ``y'`` and the weighted
    cross-covariance ``H = sum_i w_i x'_i^T y'_i = U S V^T``, ``R = U diag(1, ..., 1, d) V^T`` with
    ``d = sign det(U V^T)`` (``d = 1`` when reflections are allowed), ``s = tr(diag(1, ..., d) S) / sum w |x'|^2``
    and ``T = mean_w(y) - s mean_w(x) R``. Differentiable where the singular values are distinct.

    Args:
        x: ``(N, D)`` or ``(B, N, D)`` points.
        y: same shape as ``x``: the point corresponding to each row of ``x``.
        weights: ``(N,)`` or ``(B, N)``, non-negative, not all zero; uniform when None.
        estimate_scale: also fit a uniform scale ``s`` (a similarity transform).
        allow_reflection: allow ``det R = -1``.

    Returns:
        :class:`RigidTransform` ``(R, T, s)`` without the batch dimension when ``x`` has none.

    Raises:
        ShapeError: mismatched shapes.
        ValidationError: negative, non-finite or all-zero weights.
    """
    if x.dim() not in (2, 3) or x.shape != y.shape:
        raise ShapeError(f"x, y: expected equal shapes (N, D) or (B, N, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    unbatched = x.dim() == 2
    if unbatched:
        x, y = x[None], y[None]
        weights = None if weights is None else weights[None]
    bsz, n, d = x.shape
    if n == 0:
        raise ShapeError("x: expected at least one point")
    if weights is None:
        w = torch.ones(bsz, n, dtype=x.dtype, device=x.device)
    else:
        if weights.shape != (bsz, n):
            raise ShapeError(f"weights: expected shape {(n,) if unbatched else (bsz, n)}, got {tuple(weights.shape)}")
        w = weights.to(x.dtype)
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or bool((w.sum(1) <= 0).any()):
            raise ValidationError("weights: expected finite, non-negative values with a positive sum")
    w = w / w.sum(1, keepdim=True)
    mx = (w[..., None] * x).sum(1)
    my = (w[..., None] * y).sum(1)
    xc, yc = x - mx[:, None], y - my[:, None]
    h = (xc * w[..., None]).transpose(1, 2) @ yc  # (B, D, D)
    u, sv, vt = torch.linalg.svd(h)
    signs = torch.ones(bsz, d, dtype=x.dtype, device=x.device)
    if not allow_reflection:
        signs[:, -1] = torch.sign(torch.linalg.det(u @ vt))
        signs[:, -1] = torch.where(signs[:, -1] == 0, torch.ones_like(signs[:, -1]), signs[:, -1])
    rot = (u * signs[:, None, :]) @ vt
    if estimate_scale:
        var = (w * (xc * xc).sum(-1)).sum(1).clamp_min(torch.finfo(x.dtype).tiny)
        s = (sv * signs).sum(1) / var
    else:
        s = torch.ones(bsz, dtype=x.dtype, device=x.device)
    t = my - s[:, None] * (mx[:, None] @ rot)[:, 0]
    if unbatched:
        return RigidTransform(rot[0], t[0], s[0])
    return RigidTransform(rot, t, s)
