"""Rigid (and similarity) alignment of corresponding point sets: weighted Procrustes / Kabsch / Umeyama; rotations
about a coordinate axis and random rotations (for training augmentation).

The convention is PyTorch3D's ``corresponding_points_alignment``: row vectors, ``Y ≈ s X R + T``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from geomot._core.errors import ShapeError, ValidationError

__all__ = ["RigidTransform", "axis_rotations", "corresponding_points_alignment", "random_rotations"]


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


def axis_rotations(angles: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """Rotations by ``angles (B,)`` (radians) about coordinate axis ``axis`` (0, 1, 2 for x, y, z) of R^3, in the
    row-vector convention of this module (``x R`` turns the points ``x (N, 3)``): ``(B, 3, 3)``, same dtype.

    About ``y`` (``axis=1``): ``x R = (x0 cos a - x2 sin a, x1, x0 sin a + x2 cos a)``.
    """
    if axis not in (0, 1, 2):
        raise ValidationError(f"axis: expected 0, 1 or 2, got {axis!r}")
    angles = torch.as_tensor(angles)
    if angles.dim() != 1 or not angles.is_floating_point():
        raise ShapeError(f"angles: expected a (B,) float tensor, got {tuple(angles.shape)} {angles.dtype}")
    i, j = (axis + 1) % 3, (axis + 2) % 3
    c, s = torch.cos(angles), torch.sin(angles)
    R = torch.eye(3, dtype=angles.dtype, device=angles.device).repeat(angles.shape[0], 1, 1)
    R[:, i, i], R[:, j, j] = c, c
    R[:, i, j], R[:, j, i] = -s, s
    return R


def random_rotations(
    n: int,
    *,
    axis: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` random proper rotations ``(n, 3, 3)``: uniform (Haar) on SO(3) with ``axis=None`` (QR of a Gaussian
    matrix with the signs of ``diag(R)`` fixed, Mezzadri 2007; a reflection is turned into a rotation by negating a
    column), or about coordinate axis ``axis`` by an angle uniform in ``[0, 2 pi)``."""
    if not isinstance(n, int) or n < 0:
        raise ValidationError(f"n: expected a non-negative integer, got {n!r}")
    dev = torch.device("cpu") if generator is None else generator.device
    if axis is not None:
        angles = torch.rand(n, generator=generator, dtype=dtype, device=dev) * (2 * torch.pi)
        return axis_rotations(angles, axis).to(device or dev)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=dtype, device=dev))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q.to(device or dev)
