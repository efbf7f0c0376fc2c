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

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from geomot._core.checks import check_int, check_positive
from geomot._core.deprecation import renamed_kwargs
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.losses._shell import LossModule
from geomot.losses.sliced import (
    SlicedModule,
    SlicedPair,
    check_order,
    check_settings,
    finish,
    make_directions,
    prepare_pair,
    projected_costs,
)
from geomot.ops.directions import random_directions, reflect_to, sample_vmf
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


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


# -- max-SW ---------------------------------------------------------------------------------------------------
@renamed_kwargs(n_iters="max_iter", step="lr")
def max_sliced_wasserstein(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    p: float = 2.0,
    max_iter: int = 100,
    lr: float = 0.1,
    tol: float = 1e-6,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Max-sliced Wasserstein ``max_{theta in S^{d-1}} W_p(theta#mu, theta#nu)`` ("Max-Sliced Wasserstein Distance
    and its use for GANs", Deshpande et al., CVPR 2019).

    Projected gradient ascent on the sphere, one direction per pair: ``theta <- (theta + lr grad W_p(theta)) /
    ||.||`` from a uniform random start, stopping after ``max_iter`` steps or when every direction moves by less
    than ``tol``. The result is a lower bound of the maximum (the problem is not concave).

    Args:
        x, y, x_weights, y_weights, x_lengths, y_lengths, measure, measure_options: as in ``sliced_wasserstein``.
        p: order ``>= 1``.
        max_iter: ascent steps (``>= 0``); ``n_iters`` is a deprecated alias.
        lr: ascent step size ``> 0``; ``step`` is a deprecated alias.
        tol: stopping tolerance on ``max_b ||theta_new - theta||``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        root: return ``W_p`` (default) or ``W_p^p``.
        generator: random generator for the start.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    max_iter = check_int(max_iter, "max_iter", at_least=0)
    lr = check_positive(lr, "lr")
    tol = check_positive(tol, "tol", strict=False)
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    theta = _ascend_max(pair, p, max_iter=max_iter, lr=lr, tol=tol, generator=generator)
    costs = projected_costs(pair, theta, p)
    return finish(costs[:, 0], p=p, root=root, reduction=reduction, batched=pair.batched)


def _ascend_max(pair: SlicedPair, p: float, *, max_iter: int, lr: float, tol: float, generator) -> torch.Tensor:
    """``(B, 1, D)`` directions after projected gradient ascent of ``W_p`` (stops early on a non-finite move:
    non-finite inputs give a NaN value whatever the direction)."""
    fixed = pair.detach()
    bsz, dim = fixed.x.shape[0], fixed.x.shape[-1]
    theta = random_directions(bsz, dim, generator=generator, dtype=fixed.x.dtype, device=fixed.x.device)[:, None, :]
    return _projected_ascent(lambda t: safe_root(projected_costs(fixed, t, p), p).sum(), theta, max_iter, lr, tol)


def _projected_ascent(objective, start: torch.Tensor, max_iter: int, lr: float, tol: float) -> torch.Tensor:
    """``v <- (v + lr grad objective(v)) / ||.||`` on the last dimension until ``max_iter`` steps or every row
    moves by less than ``tol``; returns the detached result. ``tol = 0`` runs every step and never reads a value
    back to the host (no device synchronisation)."""
    v = start.detach()
    with torch.enable_grad():
        for _ in range(max_iter):
            v = v.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(objective(v), v)
            new = _normalize(v.detach() + lr * grad)
            moved = float((new - v.detach()).norm(dim=-1).max()) if tol > 0 else 1.0
            v = new
            if moved < tol or not math.isfinite(moved):
                break
    return v.detach()


# -- distributional SW ----------------------------------------------------------------------------------------
def _identity_push_forward(dim: int, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """``theta -> A theta + b`` started at the identity (so the first directions are uniform)."""
    lin = nn.Linear(dim, dim).to(dtype=dtype, device=device)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(dim, dtype=dtype, device=device))
        lin.bias.zero_()
    return lin


@renamed_kwargs(n_iters="max_iter")
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
    max_iter: int = 10,
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

    Directions ``theta = f(u) / ||f(u)||`` with ``u ~ U(S^{d-1})`` and a push-forward ``f`` trained for ``max_iter``
    Adam steps (rate ``lr``, fresh ``u`` at each step) to maximise the Lagrangian of eq. (4)
    ``( (1/L) sum_l W_p^p(theta_l#mu, theta_l#nu) )^(1/p) - lambda_C (1/L^2) sum_{l,l'} |theta_l^T theta_l'|``,
    where ``lambda_C = regularization`` keeps the directions spread. The batch shares one ``f``. The value is
    then computed on fresh directions from the trained ``f``, held fixed: its gradient is that of
    ``sliced_wasserstein`` with those directions. If the training objective becomes non-finite (NaN/Inf inputs
    with value checks off), ``f`` keeps the parameters it had before the call and the value is NaN.

    Args:
        push_forward: a module ``(L, D) -> (L, D)``, trained in place (keep it across calls to amortise, as the
            paper does); default: a fresh ``nn.Linear(D, D)`` started at the identity.
        max_iter: Adam steps per call (``>= 0``); ``n_iters`` is a deprecated alias.
        lr: Adam learning rate.
        regularization: ``lambda_C >= 0``.
        other arguments: as in ``sliced_wasserstein``.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    n_projections = check_int(n_projections, "n_projections", at_least=1)
    max_iter = check_int(max_iter, "max_iter", at_least=0)
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

    if params and max_iter:
        _train_push_forward(params, directions, fixed, p, max_iter=max_iter, lr=lr, regularization=regularization)
    with torch.no_grad():
        theta = directions()
    costs = projected_costs(pair, theta, p)
    return finish(costs.mean(-1), p=p, root=root, reduction=reduction, batched=pair.batched)


def _train_push_forward(params, directions, fixed: SlicedPair, p: float, *, max_iter, lr, regularization) -> None:
    """Adam ascent of the DSW Lagrangian on ``params``; restores them (without a host sync) if they became
    non-finite, so that one NaN batch cannot spoil a push-forward kept across calls."""
    before = [q.detach().clone() for q in params]
    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        for _ in range(max_iter):
            theta = directions()
            costs = projected_costs(fixed, theta, p)
            spread = (theta @ theta.T).abs().mean()
            loss = regularization * spread - safe_root(costs.mean(-1), p).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        ok = torch.stack([torch.isfinite(q).all() for q in params]).all()
        for q, q0 in zip(params, before):
            q.copy_(torch.where(ok, q, q0))


# -- vMF-DSW --------------------------------------------------------------------------------------------------
@renamed_kwargs(n_iters="max_iter", step="lr")
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
    max_iter: int = 10,
    lr: float = 0.1,
    tol: float = 0.0,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """von Mises-Fisher distributional sliced Wasserstein (vMF-DSW of "Improving Relational Regularized
    Autoencoders with Spherical Sliced Fused Gromov Wasserstein", Nguyen et al., ICLR 2021).

    ``max_{epsilon in S^{d-1}} ( E_{theta ~ vMF(epsilon, kappa)} W_p^p(theta#mu, theta#nu) )^(1/p)``: the location
    ``epsilon`` (one per pair, uniform start) follows at most ``max_iter`` projected gradient-ascent steps of size
    ``lr`` on an ``L``-sample estimate with reparameterised samples (:func:`geomot.ops.directions.sample_vmf`:
    exact inverse CDF for ``d = 3``, Wood's algorithm otherwise), stopping when every location moves by less than
    ``tol``. The ``L`` samples around ``e_1`` are drawn once per call and moved to ``epsilon`` by a Householder
    reflection (common random numbers), so the ascent maximises one fixed function of ``epsilon`` and the value is
    computed on the same samples at the final location; at a converged location its gradient (directions held
    fixed) is the gradient of the returned value (envelope theorem). Small ``kappa`` tends to SW, large ``kappa``
    to max-SW.

    Args:
        kappa: concentration ``> 0``.
        max_iter: ascent steps (``>= 0``); ``n_iters`` is a deprecated alias.
        lr: their size ``> 0``; ``step`` is a deprecated alias.
        tol: stopping tolerance on ``max_b ||epsilon_new - epsilon||``; the default 0 runs ``max_iter`` steps
            without synchronising with a CUDA device.
        other arguments: as in ``sliced_wasserstein``.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input.
    """
    p = check_order(p)
    n_projections = check_int(n_projections, "n_projections", at_least=1)
    kappa = check_positive(kappa, "kappa")
    max_iter = check_int(max_iter, "max_iter", at_least=0)
    lr = check_positive(lr, "lr")
    tol = check_positive(tol, "tol", strict=False)
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    fixed = pair.detach()
    bsz, dim, dtype, device = fixed.x.shape[0], fixed.x.shape[-1], fixed.x.dtype, fixed.x.device
    if dim < 2:
        raise ShapeError(f"x: vmf_sliced_wasserstein needs points of dimension >= 2, got {dim}")
    loc = random_directions(bsz, dim, generator=generator, dtype=dtype, device=device)
    e1 = torch.zeros(bsz, dim, dtype=dtype, device=device)
    e1[:, 0] = 1.0
    base = sample_vmf(e1, kappa, n_projections, generator=generator)  # (B, L, D) draws around e_1, kept

    def objective(v: torch.Tensor) -> torch.Tensor:
        return safe_root(projected_costs(fixed, reflect_to(base, v), p).mean(-1), p).sum()

    loc = _projected_ascent(objective, loc, max_iter, lr, tol)
    costs = projected_costs(pair, reflect_to(base, loc), p)
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
def _check_variant_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """The checks of the variant functions, run on the settings a shell is built with."""
    out = check_settings(settings)
    if "max_iter" in out:
        check_int(out["max_iter"], "max_iter", at_least=0)
    for name, strict in (("lr", True), ("kappa", True), ("tol", False), ("regularization", False)):
        if name in out:
            out[name] = check_positive(out[name], name, strict=strict)
    if "energy" in out:
        ENERGIES.get(out["energy"], arg="energy")
    if "detach_weights" in out and not isinstance(out["detach_weights"], bool):
        raise ValidationError(f"detach_weights: expected True or False, got {out['detach_weights']!r}")
    return out


class MaxSlicedWasserstein(LossModule):
    """Module shell of :func:`max_sliced_wasserstein`. Settings (keyword-only, checked at construction): ``p``,
    ``max_iter``, ``lr``, ``tol``, ``measure``, ``measure_options``, ``reduction``, ``root`` (``n_iters`` and
    ``step`` are deprecated aliases of ``max_iter`` and ``lr``); ``forward(x, y, **inputs)`` takes the weights,
    lengths and ``generator``."""

    function = staticmethod(max_sliced_wasserstein)

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return _check_variant_settings(settings)


class VmfSlicedWasserstein(LossModule):
    """Module shell of :func:`vmf_sliced_wasserstein`. Settings: ``p``, ``n_projections``, ``kappa``,
    ``max_iter``, ``lr``, ``tol``, ``measure``, ``measure_options``, ``reduction``, ``root`` (``n_iters`` and
    ``step`` are deprecated aliases); ``forward(x, y, **inputs)`` takes the weights, lengths and ``generator``."""

    function = staticmethod(vmf_sliced_wasserstein)

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return _check_variant_settings(settings)


class EnergyBasedSlicedWasserstein(SlicedModule):
    """Module shell of :func:`energy_based_sliced_wasserstein`. Settings: ``p``, ``n_projections``,
    ``projections`` (a strategy name), ``energy``, ``detach_weights``, ``measure``, ``measure_options``,
    ``reduction``, ``root``; ``forward(x, y, **inputs)`` takes the weights, lengths, ``generator`` and
    ``projections`` as a tensor of proposal directions."""

    function = staticmethod(energy_based_sliced_wasserstein)

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return _check_variant_settings(settings)


class DistributionalSlicedWasserstein(LossModule):
    """Module shell of :func:`distributional_sliced_wasserstein` that owns its push-forward ``f``, a submodule
    (so ``.to()``, ``state_dict()`` and ``parameters()`` see it from construction on) trained in place by every
    call, so that ``f`` keeps improving across calls.

    The default ``f`` is ``Linear(dim, dim)`` started at the identity, built at construction in the default dtype
    on the CPU (move the shell with ``.to(...)`` like any module): ``dim`` is required unless ``push_forward`` is
    given. ``f`` is trained by the function's own Adam steps; the returned value does not differentiate through
    ``f``, so an outer optimiser does not need ``f``'s parameters.

    Args:
        dim: dimension ``D`` of the points (keyword-only; needed to build the default ``f``).
        push_forward: a module ``(L, D) -> (L, D)`` instead of the default.
        settings: keyword settings of the function, checked here: ``p``, ``n_projections``, ``max_iter``
            (``n_iters`` is a deprecated alias), ``lr``, ``regularization``, ``measure``, ``measure_options``,
            ``reduction``, ``root``.

    Example:
        >>> dsw = DistributionalSlicedWasserstein(dim=3, n_projections=50, max_iter=5)
        >>> loss = dsw(pred, target, generator=g)
    """

    function = staticmethod(distributional_sliced_wasserstein)

    def __init__(self, *, dim: int | None = None, push_forward: nn.Module | None = None, **settings: Any) -> None:
        if push_forward is None:
            if dim is None:
                raise ValidationError(
                    "DistributionalSlicedWasserstein: give dim= (the dimension of the points, to build the default "
                    "push-forward Linear(dim, dim)) or push_forward="
                )
            push_forward = _identity_push_forward(
                check_int(dim, "dim", at_least=1), torch.get_default_dtype(), torch.device("cpu")
            )
        elif dim is not None:
            check_int(dim, "dim", at_least=1)
        super().__init__(push_forward=push_forward, **settings)
        self.push_forward = push_forward  # registered as a submodule; the same object is in self.settings

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(settings["push_forward"], nn.Module):
            raise ValidationError(
                f"push_forward: expected an nn.Module, got {type(settings['push_forward']).__name__}"
            )
        return _check_variant_settings(settings)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items() if k != "push_forward")
