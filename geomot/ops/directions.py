"""Directions on the unit sphere ``S^{d-1}``: Monte Carlo, randomised quasi-Monte Carlo, orthogonal blocks, and a
reparameterised von Mises-Fisher sampler.

Every sampler returns ``(n, d)`` unit rows and takes its randomness from ``generator``; the strategies used by the
sliced losses live in the :data:`DIRECTIONS` registry (``"random"``, ``"qmc"``, ``"orthogonal"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from geomot._core.checks import check_float_tensor, check_positive
from geomot._core.errors import ValidationError
from geomot._core.registry import Registry

__all__ = [
    "DIRECTIONS",
    "orthogonal_directions",
    "qmc_directions",
    "random_directions",
    "reflect_to",
    "sample_vmf",
    "sphere_directions",
    "vmf_mean_resultant_length",
    "vmf_samples_at_e1",
]

DirectionSampler = Callable[..., torch.Tensor]
DIRECTIONS: Registry[DirectionSampler] = Registry("projection strategy")

_GOLDEN = (1.0 + math.sqrt(5.0)) / 2.0


def _check_counts(n: int, dim: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"n_projections: expected an integer >= 1, got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValidationError(f"dim: expected an integer >= 1, got {dim!r}")


def _normalize_rows(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


def _haar_orthogonal(dim: int, *, generator, dtype, device, count: int | None = None) -> torch.Tensor:
    """``(dim, dim)`` (or ``(count, dim, dim)``) orthogonal matrices distributed by the Haar measure: QR of
    Gaussian matrices with the signs of ``diag(R)`` moved into ``Q`` (Mezzadri, 2007)."""
    shape = (dim, dim) if count is None else (count, dim, dim)
    g = torch.randn(*shape, generator=generator, dtype=dtype, device=device)
    q, r = torch.linalg.qr(g)
    d = torch.diagonal(r, dim1=-2, dim2=-1)
    return q * torch.where(d < 0, -torch.ones_like(d), torch.ones_like(d)).unsqueeze(-2)


@DIRECTIONS.register("random")
def random_directions(
    n: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` i.i.d. directions uniform on ``S^{dim-1}``: normalised standard Gaussians.

    Returns:
        ``(n, dim)`` unit rows.
    """
    _check_counts(n, dim)
    return _normalize_rows(torch.randn(n, dim, generator=generator, dtype=dtype, device=device))


@DIRECTIONS.register("qmc")
def qmc_directions(
    n: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Randomised quasi-Monte Carlo directions on ``S^{dim-1}``.

    For ``dim = 3`` the spherical Fibonacci lattice ``z_i = 1 - (2i + 1)/n``, ``phi_i = 2 pi i / golden``;
    otherwise a scrambled Sobol sequence pushed through the Gaussian inverse CDF and normalised (the
    "Gaussian-based mapping"). Either set is then turned by a Haar-random rotation, so each direction is
    marginally uniform and the sliced estimate stays unbiased (randomised QSW of "Quasi-Monte Carlo for 3D
    Sliced Wasserstein", Nguyen, Bariletto & Ho, ICLR 2024).

    Returns:
        ``(n, dim)`` unit rows.
    """
    _check_counts(n, dim)
    if dim == 1:
        signs = torch.ones(n, 1, dtype=dtype, device=device)
        signs[1::2] = -1.0
        return signs
    if dim == 3:
        i = torch.arange(n, dtype=torch.float64)
        z = 1.0 - (2.0 * i + 1.0) / n
        phi = 2.0 * math.pi * torch.remainder(i / _GOLDEN, 1.0)
        r = torch.sqrt((1.0 - z * z).clamp_min(0.0))
        pts = torch.stack([r * torch.cos(phi), r * torch.sin(phi), z], dim=-1).to(dtype=dtype, device=device)
    else:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=_gen_device(generator)))
        engine = torch.quasirandom.SobolEngine(dim, scramble=True, seed=seed)
        u = engine.draw(n, dtype=torch.float64).clamp(1e-12, 1.0 - 1e-12)
        pts = _normalize_rows(torch.special.ndtri(u)).to(dtype=dtype, device=device)
    rot = _haar_orthogonal(dim, generator=generator, dtype=dtype, device=device)
    return pts @ rot.T


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


@DIRECTIONS.register("orthogonal")
def orthogonal_directions(
    n: int,
    dim: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Stacked blocks of ``dim`` mutually orthogonal directions, each block a Haar-random orthonormal basis
    (orthogonal Monte Carlo, as in "Orthogonal estimation of Wasserstein distances", Rowland et al., AISTATS
    2019). Each direction is marginally uniform; the last block is truncated to give exactly ``n`` rows.

    Returns:
        ``(n, dim)`` unit rows.
    """
    _check_counts(n, dim)
    blocks = _haar_orthogonal(dim, generator=generator, dtype=dtype, device=device, count=-(-n // dim))
    return blocks.transpose(-1, -2).reshape(-1, dim)[:n]


def sphere_directions(
    n: int,
    dim: int,
    *,
    kind: str = "random",
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``n`` directions on ``S^{dim-1}`` drawn by the strategy ``kind`` of :data:`DIRECTIONS`.

    Returns:
        ``(n, dim)`` unit rows.
    """
    return DIRECTIONS.get(kind, arg="projections")(n, dim, generator=generator, dtype=dtype, device=device)


def vmf_mean_resultant_length(kappa: float, dim: int) -> float:
    """``A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa)``: the mean of ``<mu, X>`` for ``X ~ vMF(mu, kappa)``."""
    from scipy.special import ive

    return float(ive(dim / 2.0, kappa) / ive(dim / 2.0 - 1.0, kappa))


def _vmf_cosines(n: int, dim: int, kappa: float, *, generator, dtype, device) -> torch.Tensor:
    """``(n,)`` samples of ``w = <mu, X>``; exact inverse CDF for ``dim = 3``, Wood's rejection sampler otherwise."""
    if dim == 3:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        # F^{-1}(u) for the density prop. to exp(kappa w) on [-1, 1], written to avoid cancellation
        w = 1.0 + torch.log(u + (1.0 - u) * math.exp(-2.0 * kappa)) / kappa
        return w.clamp(-1.0, 1.0).to(dtype)
    m = dim - 1
    b = m / (2.0 * kappa + math.sqrt(4.0 * kappa * kappa + m * m))
    x0 = (1.0 - b) / (1.0 + b)
    c = kappa * x0 + m * math.log(1.0 - x0 * x0)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel():
        k = todo.numel()
        # Beta(m/2, m/2) as a ratio of chi-square(m) variables, so that the generator drives every draw
        ga = torch.randn(k, m, generator=generator, dtype=torch.float64, device=device).square().sum(-1)
        gb = torch.randn(k, m, generator=generator, dtype=torch.float64, device=device).square().sum(-1)
        z = ga / (ga + gb)
        w = (1.0 - (1.0 + b) * z) / (1.0 - (1.0 - b) * z)
        u = torch.rand(k, generator=generator, dtype=torch.float64, device=device)
        ok = kappa * w + m * torch.log1p(-x0 * w) - c >= torch.log(u)
        out[todo[ok]] = w[ok]
        todo = todo[~ok]
    return out.to(dtype)


def sample_vmf(
    loc: torch.Tensor,
    kappa: float,
    n: int,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reparameterised samples of the von Mises-Fisher law ``vMF(mu, kappa)`` on ``S^{d-1}``.

    Density ``C_d(kappa) exp(kappa <mu, x>)``. The cosine ``w = <mu, x>`` is drawn exactly by its inverse CDF
    ``w = 1 + log(u + (1 - u) e^{-2 kappa}) / kappa`` when ``d = 3`` and by Wood's rejection algorithm otherwise
    ("Simulation of the von Mises Fisher distribution", Wood, 1994); the tangent part is uniform on
    ``S^{d-2}``; the sample ``(w, sqrt(1 - w^2) v)`` around ``e_1`` is mapped to ``mu`` by the Householder
    reflection that swaps ``e_1`` and ``mu``. The draw of ``w`` does not depend on ``mu``, so gradients flow
    to ``loc`` through the reflection (as in "Hyperspherical Variational Auto-Encoders", Davidson et al., 2018).
    Equivalent to :func:`reflect_to` of :func:`vmf_samples_at_e1` (which lets a caller keep the draws and move
    ``loc``).

    Args:
        loc: ``(d,)`` or ``(B, d)`` mean directions (normalised here), ``d >= 2``.
        kappa: concentration ``> 0``.
        n: samples per location.
        generator: random generator.

    Returns:
        ``(n, d)`` unit rows for a ``(d,)`` location, ``(B, n, d)`` for ``(B, d)``.
    """
    loc = check_float_tensor(loc, "loc", ndim=(1, 2))
    if loc.shape[-1] < 2:
        raise ValidationError(f"loc: the von Mises-Fisher law needs dimension >= 2, got {loc.shape[-1]}")
    batched = loc.dim() == 2
    base = vmf_samples_at_e1(
        n, loc.shape[-1], kappa, batch=loc.shape[0] if batched else 1, generator=generator, dtype=loc.dtype,
        device=loc.device,
    )
    out = reflect_to(base, loc if batched else loc.unsqueeze(0))
    return out if batched else out[0]


def vmf_samples_at_e1(
    n: int,
    dim: int,
    kappa: float,
    *,
    batch: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """``(batch, n, dim)`` samples of ``vMF(e_1, kappa)``: cosine ``w`` as in :func:`sample_vmf`, tangent part
    uniform on ``S^{dim-2}``, i.e. rows ``(w, sqrt(1 - w^2) v)``."""
    kappa = check_positive(kappa, "kappa")
    _check_counts(n, dim)
    if dim < 2:
        raise ValidationError(f"dim: the von Mises-Fisher law needs dimension >= 2, got {dim}")
    w = _vmf_cosines(batch * n, dim, kappa, generator=generator, dtype=dtype, device=device).view(batch, n, 1)
    v = _normalize_rows(torch.randn(batch, n, dim - 1, generator=generator, dtype=dtype, device=device))
    return torch.cat([w, torch.sqrt((1.0 - w * w).clamp_min(0.0)) * v], dim=-1)


def reflect_to(samples: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """Map ``(B, n, d)`` points around ``e_1`` to around ``loc / ||loc||`` ``(B, d)`` by the Householder reflection
    ``x -> x - 2 <x, u> u`` with ``u = (e_1 - mu) / ||e_1 - mu||`` (the identity when ``mu = e_1``);
    differentiable in ``loc``."""
    mu = _normalize_rows(loc)  # (B, d)
    e1 = torch.zeros_like(mu)
    e1[:, 0] = 1.0
    u = e1 - mu
    unorm = u.norm(dim=-1, keepdim=True)
    near = unorm < 1e-6  # mu == e_1: the reflection is the identity
    u = u / unorm.clamp_min(1e-6)
    reflected = samples - 2.0 * (samples * u[:, None, :]).sum(-1, keepdim=True) * u[:, None, :]
    return torch.where(near[:, None, :], samples, reflected)
