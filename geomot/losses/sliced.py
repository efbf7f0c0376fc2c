"""Sliced-Wasserstein distance between point clouds, measures and meshes, with control-variate estimators.

``SW_p(mu, nu) = ( E_{theta ~ U(S^{d-1})} W_p^p(theta#mu, theta#nu) )^(1/p)``, estimated with ``L`` directions:
``SW_p^p ~ (1/L) sum_l W_p^p(theta_l#mu, theta_l#nu)`` ("Sliced and Radon Wasserstein barycenters of measures",
Bonneel et al., 2015). The 1-D problems are solved exactly by :mod:`geomot.transport.ot1d`.

The shared machinery (:func:`prepare_pair`, :func:`projected_costs`, :func:`finish`) is also used by the variants
in :mod:`geomot.losses.sliced_variants`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from geomot._core.checks import check_float_tensor, check_int, check_positive, data_checks_enabled
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.losses._shell import PAIR_INPUTS, LossModule
from geomot.ops.directions import DIRECTIONS
from geomot.structures.convert import as_measure, check_pair_dims, resolve_mesh_measure
from geomot.transport.ot1d import projected_sorted_power, quantile_power, safe_root, sort_last, sort_values

__all__ = [
    "CONTROL_VARIATES",
    "REDUCTIONS",
    "SlicedModule",
    "SlicedPair",
    "SlicedWasserstein",
    "check_settings",
    "finish",
    "make_directions",
    "prepare_pair",
    "project",
    "projected_costs",
    "sliced_wasserstein",
]

REDUCTIONS: Registry[Callable[[torch.Tensor], torch.Tensor]] = Registry("reduction")
REDUCTIONS.add("mean", lambda v: v.mean())
REDUCTIONS.add("sum", lambda v: v.sum())
REDUCTIONS.add("none", lambda v: v)


class SlicedPair(NamedTuple):
    """Two batches of measures ready for slicing (padded layout, padding rows zeroed).

    Attributes:
        x: ``(B, N, D)`` support of the first measures; ``x_weights``: ``(B, N)``; ``x_lengths``: ``(B,)``.
        y: ``(B, M, D)``; ``y_weights``: ``(B, M)``; ``y_lengths``: ``(B,)``.
        batched: False when both inputs were single ``(N, D)`` tensors (outputs are then scalars).
        x_uniform / y_uniform: every item has equal weights on its atoms.
        x_full / y_full: no padding (all lengths equal the padded size).
    """

    x: torch.Tensor
    x_weights: torch.Tensor
    x_lengths: torch.Tensor
    y: torch.Tensor
    y_weights: torch.Tensor
    y_lengths: torch.Tensor
    batched: bool
    x_uniform: bool
    y_uniform: bool
    x_full: bool
    y_full: bool

    @property
    def sort_path(self) -> bool:
        """Equal sizes, uniform weights, no padding: the sorted-difference path applies."""
        return (
            self.x_uniform and self.y_uniform and self.x_full and self.y_full and self.x.shape[1] == self.y.shape[1]
        )

    def detach(self) -> SlicedPair:
        return self._replace(
            x=self.x.detach(), y=self.y.detach(), x_weights=self.x_weights.detach(), y_weights=self.y_weights.detach()
        )


def _side(x, weights, lengths, measure, measure_options, generator, name):
    if isinstance(x, torch.Tensor) and weights is None and lengths is None:
        # the common training-loop case: a dense uniform cloud (``measure`` concerns meshes only); validate without
        # building a Measure
        check_float_tensor(x, name, ndim=(2, 3), finite=False, allow_empty=True)
        if x.shape[-2] == 0 or x.shape[-1] == 0:
            raise ValidationError(f"{name}: empty point set (shape {tuple(x.shape)})")
        check_float_tensor(x, name)
        xb = x if x.dim() == 3 else x.unsqueeze(0)
        bsz, n = xb.shape[0], xb.shape[1]
        w = xb.new_full((bsz, n), 1.0 / n)
        ln = torch.full((bsz,), n, dtype=torch.long, device=xb.device)
        return xb, w, ln, x.dim() == 3, True, True
    known_uniform = isinstance(x, torch.Tensor) and weights is None
    options = {"generator": generator, **(measure_options or {})}
    m, batched = as_measure(x, weights=weights, lengths=lengths, measure=measure, name=name, **options)
    support, w, ln = m.support, m.weights, m.lengths
    full = (isinstance(x, torch.Tensor) and lengths is None) or bool((ln == support.shape[1]).all())
    if not full:
        support = support.masked_fill(~m.mask[..., None], 0.0)
    uniform = known_uniform or m.is_uniform()
    return support, w, ln, batched, uniform, full


def prepare_pair(
    x: object,
    y: object,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    measure: str | None = None,
    measure_options: dict | None = None,
    generator: torch.Generator | None = None,
) -> SlicedPair:
    """Validate two loss inputs and bring them to one padded layout (see :class:`SlicedPair`).

    Inputs go through :func:`geomot.structures.as_measure` (tensors, PointClouds, Measures, Meshes; weights are
    normalised to sum to one per item, negative weights raise). A batch of one is broadcast against a batch of
    ``B``. ``generator`` drives the surface sampling of ``measure="samples"``. ``measure`` only concerns Mesh inputs
    (a Mesh with ``measure=None`` becomes its 6-D oriented varifold); when the two sides end up in different
    dimensions the :class:`ShapeError` says what a Mesh side became and how to compare it with a point cloud.
    """
    xs, xw, xl, xb, xu, xf = _side(x, x_weights, x_lengths, measure, measure_options, generator, "x")
    ys, yw, yl, yb, yu, yf = _side(y, y_weights, y_lengths, measure, measure_options, generator, "y")
    check_pair_dims(xs, ys, x, y, measure=measure)
    if xs.dtype != ys.dtype or xs.device != ys.device:
        raise ShapeError(f"y: expected dtype {xs.dtype} on {xs.device} (that of x), got {ys.dtype} on {ys.device}")
    bx, by = xs.shape[0], ys.shape[0]
    if bx != by:
        if by == 1:
            ys, yw, yl = ys.expand(bx, -1, -1), yw.expand(bx, -1), yl.expand(bx)
        elif bx == 1:
            xs, xw, xl = xs.expand(by, -1, -1), xw.expand(by, -1), xl.expand(by)
        else:
            raise ShapeError(f"y: expected a batch of {bx} items (that of x) or 1, got {by}")
    return SlicedPair(xs, xw, xl, ys, yw, yl, xb or yb, xu, yu, xf, yf)


def make_directions(
    projections: str | torch.Tensor | None,
    n_projections: int,
    dim: int,
    *,
    batch: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Directions as ``(L, D)`` (shared by the batch) or ``(B, L, D)`` unit rows from a strategy name or a tensor.

    Args:
        projections: None / ``"random"``, any name in :data:`geomot.ops.directions.DIRECTIONS`, or a tensor
            ``(D, L)`` / ``(B, D, L)`` of directions in POT's column convention. A tensor's columns are
            **normalised to unit length** (differentiably), so ``c * theta`` gives the value of ``theta``; a column
            of NaN/Inf or of zeros raises :class:`ValidationError` naming it while value checks are on
            (:func:`geomot.data_checks`), and gives NaN otherwise.
    """
    if isinstance(projections, torch.Tensor):
        return _directions_from_tensor(projections, dim, batch=batch, dtype=dtype, device=device)
    n_projections = check_int(n_projections, "n_projections", at_least=1)
    kind = "random" if projections is None else projections
    return DIRECTIONS.get(kind, arg="projections")(n_projections, dim, generator=generator, dtype=dtype, device=device)


def _directions_from_tensor(
    projections: torch.Tensor, dim: int, *, batch: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    t = check_float_tensor(projections, "projections", ndim=(2, 3))
    if t.shape[-2] != dim:
        raise ShapeError(f"projections: expected shape ({dim}, L) (columns are directions), got {tuple(t.shape)}")
    if t.dim() == 3 and t.shape[0] != batch:
        raise ShapeError(f"projections: expected a batch of {batch} direction sets, got {tuple(t.shape)}")
    if t.dtype != dtype or t.device != device:
        raise ShapeError(f"projections: expected dtype {dtype} on {device}, got {t.dtype} on {t.device}")
    norms = torch.linalg.vector_norm(t, dim=-2, keepdim=True)  # (1, L) or (B, 1, L)
    if data_checks_enabled():
        zero = norms == 0
        if bool(zero.any()):
            where = zero.nonzero()[0].tolist()
            item = f" of item {where[0]}" if t.dim() == 3 else ""
            raise ValidationError(
                f"projections: column {where[-1]}{item} is zero; every column must be a non-zero direction "
                f"(shape {tuple(t.shape)})"
            )
    return (t / norms).transpose(-1, -2)


def _uniform_cum(lengths: torch.Tensor, n: int, full: bool, like: torch.Tensor) -> torch.Tensor:
    """``(B or 1, 1, n)`` cumulative weights of uniform measures with padding sorted last."""
    k = torch.arange(1, n + 1, device=like.device, dtype=like.dtype)
    if full:
        return (k / n).view(1, 1, n)
    ln = lengths.to(like.dtype)[:, None, None]
    return torch.minimum(k.view(1, 1, n), ln) / ln


def _side_sorted(proj, weights, lengths, uniform, full):
    """Sorted projections (padding = +inf, sorted last) and cumulative weights in the sorted order."""
    n = proj.shape[-1]
    if not full:
        mask = torch.arange(n, device=proj.device)[None, None, :] < lengths[:, None, None]
        proj = torch.where(mask, proj, torch.full_like(proj, float("inf")))
    if uniform:
        return sort_values(proj), _uniform_cum(lengths, n, full, proj).expand_as(proj)
    srt, idx = sort_last(proj)
    w = weights[:, None, :].expand_as(proj).gather(-1, idx)
    return srt, torch.cumsum(w, dim=-1)


def project(pair: SlicedPair, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected supports ``(x_proj (B, L, N), y_proj (B, L, M))`` on ``theta`` ``(L, D)`` or ``(B, L, D)``."""
    return torch.matmul(theta, pair.x.transpose(-1, -2)), torch.matmul(theta, pair.y.transpose(-1, -2))


def projected_costs(pair: SlicedPair, theta: torch.Tensor, p: float) -> torch.Tensor:
    """Exact 1-D costs along each direction.

    Args:
        pair: the measures.
        theta: ``(L, D)`` or ``(B, L, D)`` directions.
        p: order.

    Returns:
        ``(B, L)`` costs ``W_p^p(theta_l#mu_b, theta_l#nu_b)``; differentiable in the supports, the weights and
        ``theta``. Equal sizes with uniform weights take the sort path
        (:func:`geomot.transport.ot1d.projected_sorted_power`), the rest the quantile path.
    """
    if pair.sort_path:
        return projected_sorted_power(pair.x, pair.y, theta, p)
    xp, yp = project(pair, theta)
    xs, xc = _side_sorted(xp, pair.x_weights, pair.x_lengths, pair.x_uniform, pair.x_full)
    ys, yc = _side_sorted(yp, pair.y_weights, pair.y_lengths, pair.y_uniform, pair.y_full)
    bsz, n_dir = xs.shape[0], xs.shape[1]
    x_last = None if pair.x_full else (pair.x_lengths - 1)[:, None].expand(bsz, n_dir)
    y_last = None if pair.y_full else (pair.y_lengths - 1)[:, None].expand(bsz, n_dir)
    return quantile_power(xs, xc, ys, yc, p, x_last=x_last, y_last=y_last)


def finish(power: torch.Tensor, *, p: float, root: bool, reduction: str, batched: bool) -> torch.Tensor:
    """``(B,)`` estimates of ``SW_p^p`` -> root (optional) -> reduction; unbatched inputs give a scalar."""
    reduce = REDUCTIONS.get(reduction, arg="reduction")
    value = safe_root(power, p) if root else power
    return reduce(value) if batched else value[0]


def check_order(p: float) -> float:
    """``p >= 1`` (the 1-D costs ``|t|^p`` are convex only then)."""
    return check_positive(p, "p", at_least=1.0)


def check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Check the settings shared by the sliced losses (those present among ``p``, ``n_projections``, ``projections``
    as a strategy name, ``control_variate``, ``measure``, ``measure_options``, ``reduction``, ``root``) with the
    functions' own checks; used by the Module shells at construction. Returns the settings (``p`` as a float)."""
    out = dict(settings)
    if "p" in out:
        out["p"] = check_order(out["p"])
    if "n_projections" in out:
        check_int(out["n_projections"], "n_projections", at_least=1)
    if out.get("projections") is not None:
        if isinstance(out["projections"], torch.Tensor):
            raise ValidationError(
                "projections: a tensor of directions is a per-call input, pass it to forward(); at construction "
                f"give a strategy name ({', '.join(DIRECTIONS.names())})"
            )
        DIRECTIONS.get(out["projections"], arg="projections")
    if out.get("control_variate") is not None:
        CONTROL_VARIATES.get(out["control_variate"], arg="control_variate")
    if out.get("measure") is not None:
        resolve_mesh_measure(out["measure"])
    if out.get("measure_options") is not None and not isinstance(out["measure_options"], dict):
        raise ValidationError(f"measure_options: expected a dict or None, got {type(out['measure_options']).__name__}")
    if "reduction" in out:
        REDUCTIONS.get(out["reduction"], arg="reduction")
    if "root" in out and not isinstance(out["root"], bool):
        raise ValidationError(f"root: expected True or False, got {out['root']!r}")
    return out


# -- control variates ----------------------------------------------------------------------------------------
# Each entry maps (pair, x_proj, y_proj) to (G (B, L), E_theta[G] (B,)) where G(theta) is a cheap function of the
# direction with a closed-form expectation under theta ~ U(S^{d-1}).
ControlVariate = Callable[[SlicedPair, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
CONTROL_VARIATES: Registry[ControlVariate] = Registry("control variate")


def _moments(support, weights, proj):
    """Weighted mean ``(B, D)``, trace of the covariance ``(B,)``, projected means and variances ``(B, L)``."""
    mean = (weights[..., None] * support).sum(1)
    trace = (weights * (support - mean[:, None, :]).square().sum(-1)).sum(-1)
    pmean = (proj * weights[:, None, :]).sum(-1)
    pvar = ((proj - pmean[..., None]).square() * weights[:, None, :]).sum(-1)
    return mean, trace, pmean, pvar


@CONTROL_VARIATES.register("lower")
def _lower_cv(pair: SlicedPair, xp: torch.Tensor, yp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G(theta) = (theta^T (m_x - m_y))^2``, ``E[G] = ||m_x - m_y||^2 / d``."""
    mx, _, pmx, _ = _moments(pair.x, pair.x_weights, xp)
    my, _, pmy, _ = _moments(pair.y, pair.y_weights, yp)
    d = pair.x.shape[-1]
    return (pmx - pmy).square(), (mx - my).square().sum(-1) / d


@CONTROL_VARIATES.register("upper")
def _upper_cv(pair: SlicedPair, xp: torch.Tensor, yp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G(theta) = (theta^T (m_x - m_y))^2 + theta^T S_x theta + theta^T S_y theta``,
    ``E[G] = (||m_x - m_y||^2 + tr S_x + tr S_y) / d``."""
    mx, tx, pmx, vx = _moments(pair.x, pair.x_weights, xp)
    my, ty, pmy, vy = _moments(pair.y, pair.y_weights, yp)
    d = pair.x.shape[-1]
    return (pmx - pmy).square() + vx + vy, ((mx - my).square().sum(-1) + tx + ty) / d


def control_variate_estimate(costs: torch.Tensor, g: torch.Tensor, g_mean: torch.Tensor) -> torch.Tensor:
    """``Z = mean_l W_l - alpha (mean_l G_l - E[G])`` with ``alpha = Cov(W, G) / Var(G)`` estimated from the same
    ``L`` slices (variance about the known mean ``E[G]``). ``costs``, ``g``: ``(B, L)``; ``g_mean``: ``(B,)``.

    Returns:
        ``(B,)`` estimates of ``SW_p^p``.
    """
    centred_g = g - g_mean[:, None]
    w_mean = costs.mean(-1)
    cov = ((costs - w_mean[:, None]) * centred_g).mean(-1)
    var = centred_g.square().mean(-1)
    alpha = cov / (var + torch.finfo(var.dtype).tiny)
    return w_mean - alpha * centred_g.mean(-1)


def sliced_wasserstein(
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
    control_variate: str | None = None,
    measure: str | None = None,
    measure_options: dict | None = None,
    reduction: str = "mean",
    root: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Monte Carlo sliced-Wasserstein distance ``SW_p`` (POT's convention: the ``1/p`` root of the mean).

    ``SW_p^p(mu, nu) ~ (1/L) sum_{l=1}^L W_p^p(theta_l#mu, theta_l#nu)``, each 1-D term exact (sorted
    differences for equal sizes and uniform weights, merged quantile functions otherwise). Memory
    ``O(L (N + M))`` per pair; no ``N x M`` array.

    With ``control_variate`` the plain mean is replaced by the control-variate estimator of "Sliced Wasserstein
    Estimation with Control Variates" (Nguyen & Ho, ICLR 2024): the projected measures are approximated by
    Gaussians ``N(theta^T m, theta^T S theta)``; ``"lower"`` uses ``G = (theta^T (m_x - m_y))^2`` (a lower bound
    of their ``W_2^2``) and ``"upper"`` adds ``theta^T S_x theta + theta^T S_y theta`` (an upper bound); both have
    closed-form expectations over the sphere (``||m_x - m_y||^2 / d`` and ``(||m_x - m_y||^2 + tr S_x + tr S_y)
    / d``), and ``SW_p^p ~ mean W - alpha (mean G - E G)`` with ``alpha = Cov(W, G) / Var(G)`` from the same
    slices (eq. 9-10 and Def. 3 of the paper; gradients flow through ``alpha`` as in the official code). The
    control variates come from ``W_2``; with ``p != 2`` the estimator stays consistent but reduces less variance.

    Args:
        x: ``(N, D)`` or ``(B, N, D)`` tensor, :class:`~geomot.PointCloud`, :class:`~geomot.Measure` or
            :class:`~geomot.Mesh`.
        y: likewise (``(M, D)`` / ``(B, M, D)``; sizes may differ; a batch of 1 broadcasts).
        x_weights: ``(N,)`` / ``(B, N)`` non-negative masses for tensor ``x``; **normalised** to sum to one per
            item (negative entries or a zero total raise). Uniform when None.
        y_weights: likewise for ``y``.
        x_lengths: ``(B,)`` item sizes of a padded ``x``; ``y_lengths`` likewise.
        p: order ``>= 1``.
        n_projections: ``L``, the number of directions (ignored when ``projections`` is a tensor).
        projections: a strategy of :data:`geomot.ops.directions.DIRECTIONS` (``"random"`` (default),
            ``"qmc"``, ``"orthogonal"``) or a tensor ``(D, L)`` / ``(B, D, L)`` of directions (POT's column
            convention). The columns are normalised to unit length, so only their directions matter (POT's
            ``ot.sliced_wasserstein_distance`` uses them as given: the two agree for unit columns); zero or
            non-finite columns raise :class:`ValidationError` (NaN result with value checks off).
        control_variate: None, ``"lower"`` or ``"upper"`` (:data:`CONTROL_VARIATES`).
        measure: how a Mesh becomes a measure: ``"vertices"``, ``"faces"``, ``"samples"`` or ``"varifold"``
            (default for meshes: varifold atoms ``(c_f, n_f)`` in ``R^6``, so a Mesh against a 3-D point cloud
            needs ``"vertices"``, ``"faces"`` or ``"samples"``). Irrelevant for other inputs.
        measure_options: extra keywords of :func:`geomot.mesh_to_measure` (``n_samples``, ``normal_weight``).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the batch.
        root: return ``SW_p`` (default) or ``SW_p^p`` when False (cheaper gradients, no root at zero).
        generator: random generator for the directions.

    Returns:
        a scalar, or ``(B,)`` with ``reduction="none"`` and batched input. At ``SW = 0`` the gradient of the root
        is taken as 0. NaN/Inf coordinates raise :class:`ValidationError` while value checks are on; inside
        ``geomot.data_checks(False)`` they give NaN (value and gradient), and an overflow gives ``inf`` or NaN,
        never a finite number.
    """
    p = check_order(p)
    pair = prepare_pair(
        x, y, x_weights=x_weights, y_weights=y_weights, x_lengths=x_lengths, y_lengths=y_lengths,
        measure=measure, measure_options=measure_options, generator=generator,
    )
    REDUCTIONS.get(reduction, arg="reduction")
    cv = None if control_variate is None else CONTROL_VARIATES.get(control_variate, arg="control_variate")
    theta = make_directions(
        projections, n_projections, pair.x.shape[-1], batch=pair.x.shape[0], generator=generator,
        dtype=pair.x.dtype, device=pair.x.device,
    )
    costs = projected_costs(pair, theta, p)
    if cv is None:
        power = costs.mean(-1)
    else:
        g, g_mean = cv(pair, *project(pair, theta))
        power = control_variate_estimate(costs, g, g_mean)
    return finish(power, p=p, root=root, reduction=reduction, batched=pair.batched)


class SlicedModule(LossModule):
    """Base of the sliced-loss shells: settings checked by :func:`check_settings` at construction; ``projections``
    is a setting when it names a strategy and a per-call input when it is a tensor of directions."""

    inputs = PAIR_INPUTS | {"projections"}

    def __init__(self, **settings: Any) -> None:
        strategy = settings.pop("projections", None)
        super().__init__(**settings)
        if strategy is not None:
            check_settings({"projections": strategy})
        #: the direction strategy used when ``forward`` gets no ``projections`` (None: the function's default)
        self.projections: str | None = strategy

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        return check_settings(settings)

    def forward(self, x: object, y: object, **inputs: Any) -> torch.Tensor:
        if self.projections is not None and inputs.get("projections") is None:
            inputs["projections"] = self.projections
        return super().forward(x, y, **inputs)

    def extra_repr(self) -> str:
        own = "" if self.projections is None else f"projections={self.projections!r}"
        return ", ".join(filter(None, [own, super().extra_repr()]))


class SlicedWasserstein(SlicedModule):
    """Module shell of :func:`sliced_wasserstein`: ``SlicedWasserstein(**settings)(x, y, **inputs)``.

    Settings (keyword-only, checked at construction): ``p``, ``n_projections``, ``projections`` (a strategy name),
    ``control_variate``, ``measure``, ``measure_options``, ``reduction``, ``root``. Per-call inputs of ``forward``:
    ``x_weights``, ``y_weights``, ``x_lengths``, ``y_lengths``, ``generator`` and ``projections`` as a ``(D, L)`` /
    ``(B, D, L)`` tensor of directions.

    Example:
        >>> loss_fn = SlicedWasserstein(n_projections=200, projections="qmc")
        >>> loss = loss_fn(pred, target, generator=g)
    """

    function = staticmethod(sliced_wasserstein)
