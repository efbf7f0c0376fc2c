"""Point descriptors: heat kernel signature (HKS) and wave kernel signature (WKS), with landmarks, and the areas of
geodesic balls.

The spectral ones take a Laplace-Beltrami eigenbasis (``evals (k,)``, ``evecs (V, k)``; see
:func:`geomot.ops.spectral.spectral_basis`) or padded batches ``(B, k)`` / ``(B, V, k)``, are differentiable and
keep the dtype and device of ``evecs``. Eigenvalues equal to zero (constant eigenfunctions) are skipped by the
WKS, whose energies live on a log scale.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot.correspondence.anchors import shape_graph
from geomot.correspondence.p2p import knn_indices
from geomot.ops.geometry import vertex_areas
from geomot.ops.graph import graph_distances
from geomot.ops.sampling import farthest_point_sampling

__all__ = ["descriptor_scales", "geodesic_ball_areas", "hks", "wks"]


def _check_basis(evals: torch.Tensor, evecs: torch.Tensor) -> None:
    check_float_tensor(evals, "evals", ndim=(1, 2))
    check_float_tensor(evecs, "evecs", ndim=(2, 3))
    if evecs.dim() != evals.dim() + 1 or evecs.shape[-1] != evals.shape[-1] or evecs.shape[:-2] != evals.shape[:-1]:
        raise ShapeError(
            f"evecs: expected shape (..., V, {evals.shape[-1]}) matching evals {tuple(evals.shape)}, "
            f"got {tuple(evecs.shape)}"
        )


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"{name}: expected a positive integer, got {n!r}")
    return n


def descriptor_scales(evals: torch.Tensor, n_scales: int, *, kind: str) -> torch.Tensor:
    """Default scales of the signatures, from the spectrum of each shape.

    * ``kind="hks"``: times log-spaced in ``[4 ln 10 / lambda_max, 4 ln 10 / lambda_1]`` (Sun et al. 2009).
    * ``kind="wks"``: log-energies linearly spaced in ``[log lambda_1 + 2 sigma, log lambda_max - 2 sigma]`` with
      ``sigma = 7 (log lambda_max - log lambda_1) / n_scales`` (Aubry et al. 2011).

    ``lambda_1`` is the smallest eigenvalue above ``1e-8 lambda_max``.

    Args:
        evals: ``(k,)`` or ``(B, k)``.
        n_scales: number of scales ``S``.
        kind: ``"hks"`` or ``"wks"``.

    Returns:
        ``(..., S)`` times (HKS) or log-energies (WKS).
    """
    lam_max = evals.max(-1).values
    lam_min = torch.where(evals > 1e-8 * lam_max[..., None], evals, torch.full_like(evals, math.inf)).min(-1).values
    steps = torch.linspace(0.0, 1.0, n_scales, dtype=evals.dtype, device=evals.device)
    if kind == "hks":
        lo, hi = (4 * math.log(10) / lam_max).log(), (4 * math.log(10) / lam_min).log()
        return (lo[..., None] + (hi - lo)[..., None] * steps).exp()
    if kind == "wks":
        e_min, e_max = lam_min.log(), lam_max.log()
        sigma = 7.0 * (e_max - e_min) / n_scales
        lo, hi = e_min + 2 * sigma, e_max - 2 * sigma
        return lo[..., None] + (hi - lo)[..., None] * steps
    raise ValidationError(f"kind: expected 'hks' or 'wks', got {kind!r}")


def _landmark_products(evecs: torch.Tensor, landmarks: torch.Tensor | None) -> torch.Tensor:
    """``(..., V, L, k)`` products ``phi_i(x) phi_i(l)`` or ``(..., V, 1, k)`` squares ``phi_i(x)^2``."""
    if landmarks is None:
        return (evecs * evecs).unsqueeze(-2)
    check_index_tensor(landmarks, "landmarks", size=evecs.shape[-2])
    if landmarks.dim() != 1:
        raise ShapeError(f"landmarks: expected a 1-D index tensor (L,), got shape {tuple(landmarks.shape)}")
    at = evecs[..., landmarks.long(), :]  # (..., L, k)
    return evecs.unsqueeze(-2) * at.unsqueeze(-3)


def hks(
    evals: torch.Tensor,
    evecs: torch.Tensor,
    *,
    n_scales: int = 16,
    times: torch.Tensor | None = None,
    landmarks: torch.Tensor | None = None,
    scale_invariant: bool = True,
) -> torch.Tensor:
    """Heat kernel signature (Sun, Ovsjanikov & Guibas 2009).

    ``HKS(x, t) = sum_i exp(-lambda_i t) phi_i(x)^2``; with landmarks ``l``, the heat kernel
    ``k_t(x, l) = sum_i exp(-lambda_i t) phi_i(x) phi_i(l)``. With ``scale_invariant`` each scale is divided by
    ``sum_i exp(-lambda_i t)`` (the heat trace), which makes the values comparable between shapes.

    Args:
        evals: ``(k,)`` or ``(B, k)`` eigenvalues.
        evecs: ``(V, k)`` or ``(B, V, k)`` ``M``-orthonormal eigenvectors.
        n_scales: number of times ``S`` when ``times`` is None (see :func:`descriptor_scales`).
        times: ``(S,)`` or ``(B, S)`` explicit diffusion times.
        landmarks: ``(L,)`` vertex indices; the output then has ``S * L`` channels (landmark-major).
        scale_invariant: divide by the heat trace.

    Returns:
        ``(V, S)`` / ``(V, S * L)``, batched as ``(B, V, ...)``.
    """
    _check_basis(evals, evecs)
    if times is None:
        times = descriptor_scales(evals, _check_count(n_scales, "n_scales"), kind="hks")
    else:
        check_float_tensor(times, "times", ndim=(1, 2))
        if bool((times <= 0).any()):
            raise ValidationError("times: diffusion times must be positive")
    coefs = torch.exp(-evals.unsqueeze(-2) * times.unsqueeze(-1))  # (..., S, k)
    if scale_invariant:
        coefs = coefs / coefs.sum(-1, keepdim=True)
    prod = _landmark_products(evecs, landmarks)  # (..., V, L, k)
    out = torch.einsum("...vlk,...sk->...vls", prod, coefs)
    return out.reshape(*out.shape[:-2], -1)


def wks(
    evals: torch.Tensor,
    evecs: torch.Tensor,
    *,
    n_scales: int = 100,
    energies: torch.Tensor | None = None,
    variance: float = 7.0,
    landmarks: torch.Tensor | None = None,
) -> torch.Tensor:
    """Wave kernel signature (Aubry, Schlickewei & Cremers 2011).

    With ``e_i = log lambda_i`` (zero eigenvalues skipped), log-energies ``e`` and
    ``sigma = variance (e_max - e_min) / S``:
    ``WKS(x, e) = sum_i phi_i(x)^2 exp(-(e - e_i)^2 / 2 sigma^2) / sum_i exp(-(e - e_i)^2 / 2 sigma^2)``;
    with landmarks ``phi_i(x)^2`` becomes ``phi_i(x) phi_i(l)``.

    Args:
        evals: ``(k,)`` or ``(B, k)`` eigenvalues (``>= 0``).
        evecs: ``(V, k)`` or ``(B, V, k)``.
        n_scales: number of energies ``S`` when ``energies`` is None (see :func:`descriptor_scales`).
        energies: ``(S,)`` or ``(B, S)`` explicit log-energies.
        variance: width of the band filters in units of the energy step.
        landmarks: ``(L,)`` vertex indices; the output then has ``S * L`` channels (landmark-major).

    Returns:
        ``(V, S)`` / ``(V, S * L)``, batched as ``(B, V, ...)``.
    """
    _check_basis(evals, evecs)
    check_positive(variance, "variance")
    n = _check_count(n_scales, "n_scales") if energies is None else energies.shape[-1]
    if energies is None:
        energies = descriptor_scales(evals, n, kind="wks")
    else:
        check_float_tensor(energies, "energies", ndim=(1, 2))
    lam_max = evals.max(-1, keepdim=True).values
    positive = evals > 1e-8 * lam_max
    if not bool(positive.any(-1).all()):
        raise ValidationError("evals: the WKS needs at least one positive eigenvalue")
    log_ev = torch.where(positive, evals, torch.ones_like(evals)).log()
    e_min = torch.where(positive, log_ev, torch.full_like(log_ev, math.inf)).min(-1, keepdim=True).values
    e_max = log_ev.max(-1, keepdim=True).values
    sigma = variance * (e_max - e_min).clamp_min(1e-12) / n  # (..., 1)
    g = torch.exp(-((energies.unsqueeze(-1) - log_ev.unsqueeze(-2)) ** 2) / (2 * sigma.unsqueeze(-1) ** 2))
    g = g * positive.unsqueeze(-2).to(g.dtype)  # (..., S, k)
    g = g / g.sum(-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
    prod = _landmark_products(evecs, landmarks)
    out = torch.einsum("...vlk,...sk->...vls", prod, g)
    return out.reshape(*out.shape[:-2], -1)


def geodesic_ball_areas(
    verts: torch.Tensor,
    faces: torch.Tensor | None,
    radii: Any,
    *,
    samples: int | torch.Tensor | None = None,
    graph: Any = None,
    areas: torch.Tensor | None = None,
) -> torch.Tensor:
    """Area of the geodesic balls around each vertex, at several radii:

    ``A_r(x) = sum_{y : d(x, y) <= r} a_y``,

    with ``d`` the shortest paths along the mesh edges (:func:`geomot.ops.graph.graph_distances`, a few per cent
    above the geodesic distance) and ``a_y`` the lumped vertex areas (:func:`geomot.ops.geometry.vertex_areas`).
    It is the cumulative distribution of the distances from ``x``, the local invariant behind the third lower
    bound of the Gromov-Wasserstein distance (Memoli 2011, "Gromov-Wasserstein distances and the metric approach to
    object matching"); isometries leave it unchanged, and at radii of a third of a body's length it tells the ends
    of a shape apart (a head from a tail) where spectral descriptors see little difference. On a sphere of radius
    ``rho``, ``A_r = 2 pi rho^2 (1 - cos(r / rho))``.

    Args:
        verts: ``(V, 3)`` float; faces: ``(F, 3)`` long, or None for a point cloud (with ``areas``).
        radii: ``(R,)`` positive radii (a sequence or a tensor), in the units of ``verts``.
        samples: None for one shortest-path search from every vertex; an int ``m`` for ``m`` farthest-point
            samples (from vertex 0), or a ``(m,)`` index tensor: the searches start at the samples and every vertex
            takes the values of its closest sample (in space), which is accurate wherever the balls are much
            larger than the sample spacing.
        graph: the edge graph of the mesh (:func:`geomot.ops.graph.edge_graph`), or of a point cloud its
            nearest-neighbour graph (:func:`geomot.ops.graph.knn_graph`, ``k = 8``); built when None.
        areas: ``(V,)`` areas per vertex (for a point cloud, the mass of its Laplacian); default: the lumped
            areas of the faces.

    Returns:
        ``(V, R)`` float64 areas (``A_r`` increases with ``r``; the total area bounds it).
    """
    check_float_tensor(verts, "verts", ndim=2, last_dim=3)
    if faces is not None:
        check_index_tensor(faces, "faces", size=verts.shape[0], ncols=3)
    elif areas is None:
        raise ValidationError("areas: expected the areas per point when faces is None (a point cloud)")
    if areas is not None:
        check_float_tensor(areas, "areas", ndim=1)
        if areas.shape[0] != verts.shape[0]:
            raise ShapeError(f"areas: expected shape ({verts.shape[0]},), got {tuple(areas.shape)}")
    r = torch.as_tensor(radii, dtype=torch.float64).reshape(-1).cpu()
    if r.numel() == 0 or not bool(torch.isfinite(r).all()) or bool((r <= 0).any()):
        raise ValidationError(f"radii: expected one or more positive finite radii, got {r.tolist()}")
    v = verts.detach().cpu().double()
    if samples is None:
        src = torch.arange(v.shape[0])
    elif isinstance(samples, torch.Tensor):
        check_index_tensor(samples, "samples", size=v.shape[0])
        src = samples.detach().cpu().long().reshape(-1)
    else:
        m = _check_count(samples, "samples")
        src = farthest_point_sampling(v, min(m, v.shape[0]), start=0).long().cpu()
    if graph is None:
        graph = shape_graph(v, faces)
    dist = graph_distances(graph, src, limit=float(r.max()))  # (S, V), inf beyond the largest radius
    a = vertex_areas(v, faces.detach().cpu().long()) if areas is None else areas.detach().cpu().double()
    out = torch.stack([(a[None] * (dist <= radius)).sum(1) for radius in r.tolist()], 1)  # (S, R)
    if samples is None:
        return out
    return out[knn_indices(v, v[src])]
