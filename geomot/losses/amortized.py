"""Amortised max-sliced and von Mises-Fisher distributional sliced Wasserstein, and their min-max training Module.

A projector ``f_psi(X, Y) in S^{d-1}`` (e.g. :class:`geomot.models.AmortizedProjection`) predicts, for each pair
of point sets, the direction that max-SW would find by gradient ascent, or the location of the vMF law of vMF-DSW
("Amortized Projection Optimization for Sliced Wasserstein Generative Models", Nguyen & Ho, NeurIPS 2022;
"Self-Attention Amortized Distributional Projection Optimization for Sliced Wasserstein Point-Cloud
Reconstruction", Nguyen, Nguyen & Ho, ICML 2023):

- amortised max-SW: ``A-MSW_p(mu, nu) = W_p(theta#mu, theta#nu)``, ``theta = f_psi(X, Y)``;
- amortised vMF-DSW: ``A-vDSW_p(mu, nu) = ( E_{theta ~ vMF(f_psi(X, Y), kappa)} W_p^p(theta#mu, theta#nu) )^(1/p)``,
  estimated with ``L`` reparameterised vMF samples.

Training solves the papers' min-max problem ``min_phi max_psi E_{X ~ data} D(X, G_phi(X); f_psi)``: one ascent
step of ``psi`` on ``D`` with the model's output detached, then one descent step of ``phi`` with the directions
detached; :class:`AmortizedSlicedWasserstein` runs the ascent step inside its ``forward``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from geomot._core.checks import check_int, check_positive, data_checks_enabled
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.losses._shell import PAIR_INPUTS, LossModule
from geomot.losses.sliced import REDUCTIONS, SlicedPair, check_order, finish, prepare_pair, projected_costs
from geomot.losses.sliced import check_settings as check_sliced_settings
from geomot.ops.directions import sample_vmf

__all__ = [
    "AMORTIZED_DISTRIBUTIONS",
    "AmortizedSlicedWasserstein",
    "amortized_directions",
    "amortized_sliced_wasserstein",
]

#: ``name -> (loc (B, D), kappa, n_projections, generator) -> (B, L, D)`` directions around the predicted location
AMORTIZED_DISTRIBUTIONS: Registry[Callable[..., torch.Tensor]] = Registry("amortized distribution")
AMORTIZED_DISTRIBUTIONS.add("max", lambda loc, kappa, n, generator: loc[:, None, :])
AMORTIZED_DISTRIBUTIONS.add("vmf", lambda loc, kappa, n, generator: sample_vmf(loc, kappa, n, generator=generator))


def _predict(pair: SlicedPair, projector: Callable[..., torch.Tensor]) -> torch.Tensor:
    """``(B, D)`` locations read by ``projector`` from the padded supports (lengths only where there is padding)."""
    loc = projector(
        pair.x, pair.y,
        x_lengths=None if pair.x_full else pair.x_lengths,
        y_lengths=None if pair.y_full else pair.y_lengths,
    )
    want = (pair.x.shape[0], pair.x.shape[-1])
    if not isinstance(loc, torch.Tensor) or tuple(loc.shape) != want:
        got = tuple(loc.shape) if isinstance(loc, torch.Tensor) else type(loc).__name__
        raise ShapeError(f"projector: expected one direction per pair, shape {want}, got {got}")
    if data_checks_enabled():
        bad = ~torch.isfinite(loc).all(dim=-1)
        if bool(bad.any()):
            raise ValidationError(
                f"projector: non-finite direction(s) for pair(s) {bad.nonzero()[:, 0].tolist()} from finite inputs "
                f"(largest |coordinate| {float(torch.maximum(pair.x.abs().amax(), pair.y.abs().amax())):.3g}; "
                f"the projector's {loc.dtype} arithmetic overflowed: rescale the inputs)"
            )
    return loc


def amortized_directions(
    pair: SlicedPair,
    projector: Callable[..., torch.Tensor],
    *,
    distribution: str,
    kappa: float,
    n_projections: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``(B, L, D)`` directions: the projector's location (``"max"``, ``L = 1``) or ``L`` vMF samples around it
    (``"vmf"``, :func:`geomot.ops.directions.sample_vmf`, differentiable in the location)."""
    draw = AMORTIZED_DISTRIBUTIONS.get(distribution, arg="distribution")
    return draw(_predict(pair, projector), kappa, n_projections, generator)


def _check_values(distribution: str, kappa: float, n_projections: int) -> float:
    AMORTIZED_DISTRIBUTIONS.get(distribution, arg="distribution")
    check_int(n_projections, "n_projections", at_least=1)
    return check_positive(kappa, "kappa")


def amortized_sliced_wasserstein(
    x: object,
    y: object,
    projector: Callable[..., torch.Tensor],
    *,
    distribution: str = "vmf",
    kappa: float = 1.0,
    n_projections: int = 100,
    p: float = 2.0,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Amortised max-SW or amortised vMF-DSW with the directions predicted by ``projector``.

    With ``epsilon = f_psi(X, Y)`` (one unit location per pair):

    - ``distribution="max"``: ``W_p^p(epsilon#mu, epsilon#nu)`` (amortised max-SW of the NeurIPS 2022 paper);
    - ``distribution="vmf"``: ``(1/L) sum_l W_p^p(theta_l#mu, theta_l#nu)``, ``theta_l ~ vMF(epsilon, kappa)``
      (amortised vMF-DSW of the ICML 2023 paper), reparameterised so that the value is differentiable in
      ``epsilon``.

    Each 1-D term is exact (:func:`geomot.losses.sliced.projected_costs`). The value is differentiable in the
    supports (through the projections and through the projector, which reads them as given) and in the
    projector's parameters: ``(-value).backward()`` is the ascent objective of ``psi``. For the min-max training
    protocol use :class:`AmortizedSlicedWasserstein`.

    Args:
        x: ``(N, D)`` or ``(B, N, D)`` tensor, :class:`~geomot.PointCloud`, :class:`~geomot.Measure` or
            :class:`~geomot.Mesh` (as :func:`geomot.sliced_wasserstein`).
        y: likewise (sizes may differ; a batch of 1 broadcasts).
        projector: callable ``(x (B, N, D), y (B, M, D), x_lengths=, y_lengths=) -> (B, D)``, e.g.
            :class:`geomot.models.AmortizedProjection`. It reads the padded supports (padding rows zero) and
            receives lengths only where there is padding; it sees the supports, not the weights.
        distribution: ``"vmf"`` or ``"max"`` (:data:`AMORTIZED_DISTRIBUTIONS`).
        kappa: vMF concentration ``> 0`` (large ``kappa`` tends to the max form); checked for both distributions.
            Default 1, the value of the paper's code: on a development split of our clouds an autoencoder trained
            with ``kappa = 1`` reconstructed held-out shapes 10% better (SW_2) than with 10, and 3 and 30 were
            worse (``docs/notes/amortized-dev-study.md``).
        n_projections: ``L``, vMF samples per pair (ignored by ``"max"``).
        p: order ``>= 1``.
        x_weights, y_weights: ``(N,)`` / ``(B, N)`` non-negative masses for tensor inputs (normalised per item).
        x_lengths, y_lengths: ``(B,)`` item sizes of padded inputs.
        measure: how a Mesh becomes a measure (None: its 6-D oriented varifold; ``"vertices"``, ``"faces"``,
            ``"samples"``, ``"varifold"``); irrelevant for other inputs. The projector's ``dim`` must match.
        measure_options: extra keywords of :func:`geomot.mesh_to_measure`.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        root: return the ``1/p`` root (default) or the ``p``-th power.
        generator: random generator for the vMF samples (and mesh sampling).

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input. NaN/Inf coordinates raise
        :class:`~geomot.ValidationError` while value checks are on, and give NaN inside ``geomot.data_checks(False)``.
    """
    p = check_order(p)
    kappa = _check_values(distribution, kappa, n_projections)
    REDUCTIONS.get(reduction, arg="reduction")
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    theta = amortized_directions(
        pair, projector, distribution=distribution, kappa=kappa, n_projections=n_projections, generator=generator
    )
    power = projected_costs(pair, theta, p).mean(-1)
    return finish(power, p=p, root=root, reduction=reduction, batched=pair.batched)


def check_betas(betas: object, name: str = "betas") -> tuple[float, float]:
    """Adam's ``betas``: two numbers in ``[0, 1)``, as a tuple (a ``ValidationError`` naming ``name`` otherwise)."""
    ok = isinstance(betas, (tuple, list)) and len(betas) == 2
    vals = tuple(check_positive(b, name, strict=False) for b in betas) if ok else ()
    if not ok or any(b >= 1.0 for b in vals):
        raise ValidationError(f"{name}: expected two numbers in [0, 1), got {betas!r}")
    return vals  # type: ignore[return-value]


def _average_gradients_across_processes(module: nn.Module) -> None:
    """Average the gradients of ``module`` over the processes of an initialised process group (no-op otherwise)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()
    for param in module.parameters():
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad.div_(world)


class AmortizedSlicedWasserstein(LossModule):
    """Amortised SW loss that owns its projector and trains it by the min-max protocol of the ICML 2023 paper.

    In training mode (``module.train()``, the default) each call

    1. prepares the pair once, then takes one ascent step of the projector on the **detached** supports:
       ``psi <- optimizer step on -mean_b D_b(psi)`` (``D`` the amortised distance, with ``root`` applied), run
       under ``torch.enable_grad()`` so that it also happens inside ``no_grad`` blocks;
    2. returns ``D`` with the directions of the updated projector **detached**, for the caller's backward
       (gradients reach the inputs, never the projector).

    In ``eval()`` mode step 1 is skipped. The ascent step uses the mean over the batch whatever ``reduction``.

    Settings (keyword-only): ``projector`` (an ``nn.Module``, registered as a submodule, so ``state_dict()``
    holds its parameters and ``.to()`` moves it), ``lr`` (1e-3) and ``betas`` ((0.0, 0.9)) of the default Adam,
    or ``optimizer``, a factory ``params -> torch.optim.Optimizer`` (``lr``/``betas`` then unused); and the
    settings of :func:`amortized_sliced_wasserstein`: ``distribution``, ``kappa``, ``n_projections``, ``p``,
    ``measure``, ``measure_options``, ``reduction``, ``root``. Per-call inputs of ``forward``: ``x_weights``,
    ``y_weights``, ``x_lengths``, ``y_lengths``, ``generator``.

    Attributes:
        projector: the projection network.
        optimizer: the projector's optimiser. Its state is part of ``state_dict()`` (as the module's extra state),
            so ``torch.save(loss.state_dict(), path)`` / ``loss.load_state_dict(torch.load(path))`` checkpoint
            and restore both; :meth:`projector_optimizer_state_dict` returns it alone.

    Example:
        >>> loss_fn = AmortizedSlicedWasserstein(projector=AmortizedProjection("attention", dim=3), kappa=1.0)
        >>> loss = loss_fn(model(x), x, generator=g)   # ascent step of the projector inside
        >>> loss.backward(); model_optimizer.step()
    """

    function = staticmethod(amortized_sliced_wasserstein)
    inputs = PAIR_INPUTS

    def __init__(
        self,
        *,
        projector: nn.Module,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.0, 0.9),
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(projector, nn.Module):
            raise ValidationError(f"projector: expected an nn.Module, got {type(projector).__name__}")
        params = [q for q in projector.parameters() if q.requires_grad]
        if not params:
            raise ValidationError("projector: has no trainable parameters; the ascent step needs some")
        lr = check_positive(lr, "lr")
        betas = check_betas(betas)
        if optimizer is not None and not callable(optimizer):
            raise ValidationError(f"optimizer: expected a factory params -> Optimizer, got {optimizer!r}")
        super().__init__(**settings)
        self.projector = projector
        self.lr, self.betas = lr, betas
        opt = optimizer(params) if optimizer is not None else torch.optim.Adam(params, lr=lr, betas=betas)
        if not isinstance(opt, torch.optim.Optimizer):
            raise ValidationError(f"optimizer: the factory returned {type(opt).__name__}, not a torch Optimizer")
        self.optimizer = opt

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        out = check_sliced_settings(settings)
        _check_values(out.get("distribution", "vmf"), out.get("kappa", 1.0), out.get("n_projections", 100))
        if "kappa" in out:
            out["kappa"] = float(out["kappa"])
        return out

    def _option(self, name: str, default: Any) -> Any:
        return self.settings.get(name, default)

    def _value(self, pair: SlicedPair, theta: torch.Tensor, reduction: str, batched: bool) -> torch.Tensor:
        p = self._option("p", 2.0)
        power = projected_costs(pair, theta, p).mean(-1)
        return finish(power, p=p, root=self._option("root", True), reduction=reduction, batched=batched)

    def ascent_step(self, pair: SlicedPair, generator: torch.Generator | None = None) -> torch.Tensor:
        """One optimiser step of the projector maximising the batch mean of the amortised distance on
        ``pair.detach()``; returns that mean (detached) before the step.

        In an initialised :mod:`torch.distributed` process group the projector's gradients are averaged over the
        processes before the step (what DistributedDataParallel does for the model), so every rank keeps the same
        projector."""
        detached = pair.detach()
        with torch.enable_grad():
            theta = self._directions(detached, generator)
            value = self._value(detached, theta, "mean", True)
            self.optimizer.zero_grad(set_to_none=True)
            (-value).backward()
            _average_gradients_across_processes(self.projector)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return value.detach()

    def _directions(self, pair: SlicedPair, generator: torch.Generator | None) -> torch.Tensor:
        return amortized_directions(
            pair, self.projector, distribution=self._option("distribution", "vmf"),
            kappa=self._option("kappa", 1.0), n_projections=self._option("n_projections", 100), generator=generator,
        )

    def forward(self, x: object, y: object, **inputs: Any) -> torch.Tensor:
        bad = sorted(set(inputs) - self.inputs)
        if bad:
            raise ValidationError(
                f"{type(self).__name__}.forward: {', '.join(map(repr, bad))}: not a per-call input; per-call inputs "
                f"are {', '.join(sorted(self.inputs))}"
            )
        generator = inputs.pop("generator", None)
        pair = prepare_pair(
            x, y, **inputs, measure=self._option("measure", None),
            measure_options=self._option("measure_options", None), generator=generator,
        )
        if self.training:
            self.ascent_step(pair, generator)
        with torch.no_grad():
            theta = self._directions(pair.detach(), generator)
        return self._value(pair, theta, self._option("reduction", "mean"), pair.batched)

    def projector_optimizer_state_dict(self) -> dict[str, Any]:
        """The projector optimiser's ``state_dict()`` (also stored in this module's ``state_dict()``)."""
        return self.optimizer.state_dict()

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or "optimizer" not in state:
            raise ValidationError("AmortizedSlicedWasserstein: the extra state has no 'optimizer' entry")
        # a copy: Optimizer.load_state_dict keeps the given tensors, which would tie two modules' states together
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))

    def extra_repr(self) -> str:
        return ", ".join(filter(None, [f"lr={self.lr}, betas={self.betas}", super().extra_repr()]))
