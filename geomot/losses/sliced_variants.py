"""Variants of the sliced-Wasserstein distance that choose or weight their directions.

- :func:`max_sliced_wasserstein`: the single most discriminative direction (projected gradient ascent).
- :func:`distributional_sliced_wasserstein`: a learned push-forward of uniform directions (DSW).
- :func:`vmf_sliced_wasserstein`: directions from a von Mises-Fisher law whose mean direction is optimised.
- :func:`energy_based_sliced_wasserstein`: directions re-weighted by an increasing function of their cost (EBSW).

Inputs, outputs, ``p``, ``root``, ``reduction`` and ``measure`` behave as in
:func:`geomot.losses.sliced.sliced_wasserstein`. The inner optimisations run on detached copies of the inputs; the
returned value is differentiable in the inputs with the chosen directions held fixed (envelope theorem).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from geomot._core.checks import check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.losses.sliced import SlicedPair, check_order, finish, make_directions, prepare_pair, projected_costs
from geomot.ops.directions import random_directions, sample_vmf
from geomot.transport.ot1d import safe_root

__all__ = [
    "ENERGIES",
    "DistributionalSlicedWasserstein",
    "EnergyBasedSlicedWasserstein",
    "MaxSlicedWasserstein",
    "VmfSlicedWasserstein",
    "distributional_sliced_wasserstein",
    "energy_based_sliced_wasserstein",
    "max_sliced_wasserstein",
    "vmf_sliced_wasserstein",
]


def _check_iters(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValidationError(f"{name}: expected an integer >= 0, got {n!r}")
    return n


def _check_count(n: int, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValidationError(f"{name}: expected an integer >= 1, got {n!r}")
    return n


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


# -- max-SW ---------------------------------------------------------------------------------------------------
def max_sliced_wasserstein(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: float = 2.0,
    n_iters: int = 100,
    step: float = 0.1,
    tol: float = 1e-6,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Max-sliced Wasserstein ``max_{theta in S^{d-1}} W_p(theta#mu, theta#nu)`` ("Max-Sliced Wasserstein Distance
    and its use for GANs", Deshpande et al., CVPR 2019).

    Projected gradient ascent on the sphere, one direction per pair: ``theta <- (theta + step grad W_p(theta)) /
    ||.||`` from a uniform random start, stopping after ``n_iters`` steps or when every direction moves by less
    than ``tol``. The result is a lower bound of the maximum (the problem is not concave).

    Args:
        x, y, x_weights, y_weights, x_lengths, y_lengths, measure, measure_options: as in ``sliced_wasserstein``.
        p: order ``>= 1``.
        n_iters: ascent steps (``>= 0``).
        step: ascent step size ``> 0``.
        tol: stopping tolerance on ``max_b ||theta_new - theta||``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        root: return ``W_p`` (default) or ``W_p^p``.
        generator: random generator for the start.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    n_iters = _check_iters(n_iters, "n_iters")
    step = check_positive(step, "step")
    tol = check_positive(tol, "tol", strict=False)
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    theta = _ascend_max(pair, p, n_iters=n_iters, step=step, tol=tol, generator=generator)
    costs = projected_costs(pair, theta, p)
    return finish(costs[:, 0], p=p, root=root, reduction=reduction, batched=pair.batched)


def _ascend_max(pair: SlicedPair, p: float, *, n_iters: int, step: float, tol: float, generator) -> torch.Tensor:
    """``(B, 1, D)`` directions after projected gradient ascent of ``W_p``."""
    fixed = pair.detach()
    bsz, dim = fixed.x.shape[0], fixed.x.shape[-1]
    theta = random_directions(bsz, dim, generator=generator, dtype=fixed.x.dtype, device=fixed.x.device)[:, None, :]
    with torch.enable_grad():
        for _ in range(n_iters):
            theta = theta.detach().requires_grad_(True)
            costs = projected_costs(fixed, theta, p)
            (grad,) = torch.autograd.grad(safe_root(costs, p).sum(), theta)
            new = _normalize(theta.detach() + step * grad)
            moved = float((new - theta.detach()).norm(dim=-1).max())
            theta = new
            if moved < tol:
                break
    return theta.detach()


# -- distributional SW ----------------------------------------------------------------------------------------
def _identity_push_forward(dim: int, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """``theta -> A theta + b`` started at the identity (so the first directions are uniform)."""
    lin = nn.Linear(dim, dim).to(dtype=dtype, device=device)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(dim, dtype=dtype, device=device))
        lin.bias.zero_()
    return lin


def distributional_sliced_wasserstein(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: float = 2.0,
    n_projections: int = 100,
    push_forward: nn.Module | None = None,
    n_iters: int = 10,
    lr: float = 0.01,
    regularization: float = 1.0,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Distributional sliced Wasserstein ("Distributional Sliced-Wasserstein and Applications to Generative
    Modeling", Nguyen et al., ICLR 2021).

    Directions ``theta = f(u) / ||f(u)||`` with ``u ~ U(S^{d-1})`` and a push-forward ``f`` trained for ``n_iters``
    Adam steps (rate ``lr``) to maximise the Lagrangian of eq. (4)
    ``( (1/L) sum_l W_p^p(theta_l#mu, theta_l#nu) )^(1/p) - lambda_C (1/L^2) sum_{l,l'} |theta_l^T theta_l'|``,
    where ``lambda_C = regularization`` keeps the directions spread. The batch shares one ``f``. The value is
    then computed on fresh directions from the trained ``f`` (held fixed).

    Args:
        push_forward: a module ``(L, D) -> (L, D)``, trained in place (keep it across calls to amortise, as the
            paper does); default: a fresh ``nn.Linear(D, D)`` started at the identity.
        n_iters: Adam steps per call (``>= 0``).
        lr: Adam learning rate.
        regularization: ``lambda_C >= 0``.
        other arguments: as in ``sliced_wasserstein``.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    n_projections = _check_count(n_projections, "n_projections")
    n_iters = _check_iters(n_iters, "n_iters")
    lr = check_positive(lr, "lr")
    regularization = check_positive(regularization, "regularization", strict=False)
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    dim, dtype, device = pair.x.shape[-1], pair.x.dtype, pair.x.device
    f = _identity_push_forward(dim, dtype, device) if push_forward is None else push_forward
    if not isinstance(f, nn.Module):
        raise ValidationError(f"push_forward: expected an nn.Module, got {type(f).__name__}")
    params = [q for q in f.parameters() if q.requires_grad]
    for q in params[:1]:
        if q.dtype != dtype or q.device != device:
            raise ShapeError(f"push_forward: parameters are {q.dtype} on {q.device}, the points {dtype} on {device}; "
                             "move the module with .to(...)")
    fixed = pair.detach()

    def directions() -> torch.Tensor:
        u = random_directions(n_projections, dim, generator=generator, dtype=dtype, device=device)
        out = f(u)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (n_projections, dim):
            raise ShapeError(f"push_forward: expected an output of shape {(n_projections, dim)}, got "
                             f"{tuple(getattr(out, 'shape', ()))}")
        return _normalize(out)

    if params and n_iters:
        opt = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(n_iters):
                theta = directions()
                costs = projected_costs(fixed, theta, p)
                spread = (theta @ theta.T).abs().mean()
                loss = regularization * spread - safe_root(costs.mean(-1), p).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
    with torch.no_grad():
        theta = directions()
    costs = projected_costs(pair, theta, p)
    return finish(costs.mean(-1), p=p, root=root, reduction=reduction, batched=pair.batched)


# -- vMF-DSW --------------------------------------------------------------------------------------------------
def vmf_sliced_wasserstein(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: float = 2.0,
    n_projections: int = 100,
    kappa: float = 10.0,
    n_iters: int = 10,
    step: float = 0.1,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """von Mises-Fisher distributional sliced Wasserstein (vMF-DSW of "Improving Relational Regularized
    Autoencoders with Spherical Sliced Fused Gromov Wasserstein", Nguyen et al., ICLR 2021).

    ``max_{epsilon in S^{d-1}} ( E_{theta ~ vMF(epsilon, kappa)} W_p^p(theta#mu, theta#nu) )^(1/p)``: the location
    ``epsilon`` (one per pair, uniform start) follows ``n_iters`` projected gradient-ascent steps of size ``step``
    on an ``L``-sample estimate, with reparameterised samples (:func:`geomot.ops.directions.sample_vmf`: exact
    inverse CDF for ``d = 3``, Wood's algorithm otherwise). Small ``kappa`` tends to SW, large ``kappa`` to max-SW.

    Args:
        kappa: concentration ``> 0``.
        n_iters: ascent steps (``>= 0``); step: their size ``> 0``.
        other arguments: as in ``sliced_wasserstein``.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    n_projections = _check_count(n_projections, "n_projections")
    kappa = check_positive(kappa, "kappa")
    n_iters = _check_iters(n_iters, "n_iters")
    step = check_positive(step, "step")
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    fixed = pair.detach()
    bsz, dim, dtype, device = fixed.x.shape[0], fixed.x.shape[-1], fixed.x.dtype, fixed.x.device
    if dim < 2:
        raise ShapeError(f"x: vmf_sliced_wasserstein needs points of dimension >= 2, got {dim}")
    loc = random_directions(bsz, dim, generator=generator, dtype=dtype, device=device)
    with torch.enable_grad():
        for _ in range(n_iters):
            loc = loc.detach().requires_grad_(True)
            theta = sample_vmf(loc, kappa, n_projections, generator=generator)  # (B, L, D)
            costs = projected_costs(fixed, theta, p)
            (grad,) = torch.autograd.grad(safe_root(costs.mean(-1), p).sum(), loc)
            loc = _normalize(loc.detach() + step * grad)
    theta = sample_vmf(loc.detach(), kappa, n_projections, generator=generator)
    costs = projected_costs(pair, theta, p)
    return finish(costs.mean(-1), p=p, root=root, reduction=reduction, batched=pair.batched)


# -- energy-based SW ------------------------------------------------------------------------------------------
ENERGIES: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("energy")
ENERGIES.add("exp", lambda c: torch.softmax(c, dim=-1))
ENERGIES.add("identity", lambda c: c / c.sum(-1, keepdim=True).clamp_min(torch.finfo(c.dtype).tiny))
ENERGIES.add("square", lambda c: c.square() / c.square().sum(-1, keepdim=True).clamp_min(torch.finfo(c.dtype).tiny))


def energy_based_sliced_wasserstein(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: float = 2.0,
    n_projections: int = 100,
    projections: str | torch.Tensor | None = None,
    energy: str = "exp",
    detach_weights: bool = True,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Energy-based sliced Wasserstein ("Energy-Based Sliced Wasserstein Distance", Nguyen & Ho, NeurIPS 2023).

    The slicing law has density ``prop. to f(W_p^p(theta#mu, theta#nu))`` for an increasing energy ``f``; the
    importance-sampling estimator (IS-EBSW, eq. 10) with ``theta_l ~ U(S^{d-1})`` is
    ``EBSW_p^p ~ sum_l w_l W_l`` with ``w_l = f(W_l) / sum_l' f(W_l')``: ``"exp"`` (a softmax, the paper's
    default), ``"identity"`` or ``"square"`` (:data:`ENERGIES`). With ``detach_weights`` (default, as the paper's
    code) gradients flow through the ``W_l`` only.

    Args:
        projections: the proposal directions, as in ``sliced_wasserstein`` (default uniform random).
        energy: name in :data:`ENERGIES`.
        detach_weights: treat the importance weights as constants in the backward pass.
        other arguments: as in ``sliced_wasserstein``.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    weigh = ENERGIES.get(energy, arg="energy")
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    theta = make_directions(
        projections, n_projections, pair.x.shape[-1], batch=pair.x.shape[0], generator=generator,
        dtype=pair.x.dtype, device=pair.x.device,
    )
    costs = projected_costs(pair, theta, p)
    w = weigh(costs.detach() if detach_weights else costs)
    return finish((w * costs).sum(-1), p=p, root=root, reduction=reduction, batched=pair.batched)


# -- module shells --------------------------------------------------------------------------------------------
class _SlicedShell(nn.Module):
    """Stores keyword settings; ``forward(x, y, **inputs)`` calls the function with them."""

    _fn: Callable[..., torch.Tensor]

    def __init__(self, **settings: object) -> None:
        super().__init__()
        check_order(settings.get("p", 2.0))  # type: ignore[arg-type]
        self.settings = settings

    def forward(self, x: object, y: object, **inputs: object) -> torch.Tensor:
        return type(self)._fn(x, y, **{**self.settings, **inputs})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())


class MaxSlicedWasserstein(_SlicedShell):
    """Module shell of :func:`max_sliced_wasserstein` (keyword settings: ``p``, ``n_iters``, ``step``, ``tol``,
    ``measure``, ``reduction``, ``root``)."""

    _fn = staticmethod(max_sliced_wasserstein)


class VmfSlicedWasserstein(_SlicedShell):
    """Module shell of :func:`vmf_sliced_wasserstein` (``p``, ``n_projections``, ``kappa``, ``n_iters``,
    ``step``, ``measure``, ``reduction``, ``root``)."""

    _fn = staticmethod(vmf_sliced_wasserstein)


class EnergyBasedSlicedWasserstein(_SlicedShell):
    """Module shell of :func:`energy_based_sliced_wasserstein` (``p``, ``n_projections``, ``projections``,
    ``energy``, ``detach_weights``, ``measure``, ``reduction``, ``root``)."""

    _fn = staticmethod(energy_based_sliced_wasserstein)


class DistributionalSlicedWasserstein(nn.Module):
    """Module shell of :func:`distributional_sliced_wasserstein` that owns its push-forward ``f`` (a
    ``Linear(dim, dim)`` started at the identity unless given), so that ``f`` keeps training across calls.

    Args:
        dim: dimension ``D`` of the points (needed to build the default ``f``).
        push_forward: a module ``(L, D) -> (L, D)`` instead of the default.
        settings: keyword settings of the function (``p``, ``n_projections``, ``n_iters``, ``lr``,
            ``regularization``, ``measure``, ``reduction``, ``root``).
    """

    def __init__(self, dim: int, *, push_forward: nn.Module | None = None, **settings: object) -> None:
        super().__init__()
        _check_count(dim, "dim")
        check_order(settings.get("p", 2.0))  # type: ignore[arg-type]
        self.push_forward = push_forward if push_forward is not None else _identity_push_forward(
            dim, torch.get_default_dtype(), torch.device("cpu")
        )
        self.settings = settings

    def forward(self, x: object, y: object, **inputs: object) -> torch.Tensor:
        return distributional_sliced_wasserstein(
            x, y, push_forward=self.push_forward, **{**self.settings, **inputs}  # type: ignore[arg-type]
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
