"""Neural-ODE integration of point sets: ``dx/dt = v_theta(x, t)``, ``x(0) = x_0``, solved with torchdiffeq.

The flow map ``phi_t: x_0 -> x(t)`` of a Lipschitz velocity field is a diffeomorphism (Younes, "Shapes and
Diffeomorphisms", 2010, Thm. 8.7); applied to the vertices of a mesh it gives a deformation without tearing or
self-intersection in the continuous limit. Fixed-step solvers (``"euler"``, ``"rk4"``, ``"midpoint"``) are the
default, as in CortexODE (Ma et al., 2022) and Le et al. (ICLR 2024); adaptive ``"dopri5"`` and the adjoint method
(Chen et al., "Neural Ordinary Differential Equations", NeurIPS 2018) are options.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from geomot._core.checks import check_float_tensor, check_positive
from geomot._core.errors import NumericalError, ShapeError, ValidationError
from geomot._core.registry import Registry

__all__ = ["SOLVERS", "Trajectory", "integrate"]

log = logging.getLogger(__name__)

#: Solver name -> fixed step (True) or adaptive (False). Names are torchdiffeq's.
SOLVERS: Registry[bool] = Registry("ODE solver")
for _name in ("euler", "midpoint", "rk4"):
    SOLVERS.add(_name, True)
for _name in ("dopri5", "bosh3", "adaptive_heun"):
    SOLVERS.add(_name, False)


class Trajectory(NamedTuple):
    """Result of :func:`integrate`.

    Attributes:
        points: ``(T, N, 3)`` (or ``(T, B, N, 3)``) positions at ``times``; ``points[-1]`` is the end state.
        times: ``(T,)`` the output times.
        n_evals: number of velocity-field evaluations of the forward solve.
    """

    points: torch.Tensor
    times: torch.Tensor
    n_evals: int


class _Guarded(nn.Module):
    """Wraps a field: counts evaluations, remembers the last finite state and raises on NaN/Inf velocities."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field = field
        self.n_evals = 0
        self.last_good: tuple[float, torch.Tensor] | None = None

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.n_evals += 1
        if not bool(torch.isfinite(y).all()):
            self._fail(t, "state")
        v = self.field(t, y)
        if not bool(torch.isfinite(v).all()):
            self._fail(t, "velocity")
        self.last_good = (float(t.detach()), y.detach())
        return v

    def _fail(self, t: torch.Tensor, what: str) -> None:
        err = NumericalError(
            f"integrate: the {what} became NaN/Inf at t={float(t):.4g} (field evaluation {self.n_evals}); "
            "the last finite state is in .last_good (time, state); reduce the learning rate or the step size, "
            "or bound the field (spectral_norm=True)"
        )
        err.last_good = self.last_good  # type: ignore[attr-defined]
        raise err


def _as_times(times: torch.Tensor | Sequence[float] | int, like: torch.Tensor) -> torch.Tensor:
    if isinstance(times, int) and not isinstance(times, bool):
        n = int(check_positive(times, "times", at_least=2))
        return torch.linspace(0.0, 1.0, n, dtype=like.dtype, device=like.device)
    t = torch.as_tensor(times, dtype=like.dtype, device=like.device)
    if t.dim() != 1 or t.numel() < 2:
        raise ShapeError(f"times: expected a 1-D increasing sequence of at least 2 times, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or not bool((t[1:] > t[:-1]).all()):
        raise ValidationError(f"times: expected strictly increasing finite times, got {t.tolist()[:6]}")
    return t


def integrate(
    field: nn.Module,
    x0: torch.Tensor,
    *,
    times: torch.Tensor | Sequence[float] | int = 2,
    method: str = "euler",
    n_steps: int = 10,
    adjoint: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-6,
) -> Trajectory:
    """Solve ``dx/dt = v(x, t)`` from ``x(times[0]) = x0`` and return the states at ``times``.

    Fixed-step solvers take ``n_steps`` steps of size ``h = (times[-1] - times[0]) / n_steps`` (torchdiffeq
    aligns them with the requested output times, interpolating in between); adaptive ones use ``rtol``/``atol``.
    With ``adjoint=True`` gradients come from the adjoint ODE (memory ``O(1)`` in the number of steps,
    ``torchdiffeq.odeint_adjoint``; the field's parameters are the adjoint parameters).

    Args:
        field: a velocity field with torchdiffeq's ``forward(t, y)`` (see :mod:`geomot.models.velocity`); fields
            with ``initial_state`` / ``points`` (control points) are handled.
        x0: ``(N, 3)`` or ``(B, N, 3)`` starting points.
        times: output times (strictly increasing), or an int ``T`` for ``linspace(0, 1, T)``.
        method: a name of :data:`SOLVERS`.
        n_steps: number of steps of a fixed-step solver over ``[times[0], times[-1]]``.
        adjoint: use the adjoint method for gradients.
        rtol: relative tolerance of adaptive solvers.
        atol: absolute tolerance of adaptive solvers.

    Returns:
        :class:`Trajectory` with ``points (T, N, 3)`` (``(T, B, N, 3)`` for batched ``x0``).

    Raises:
        NumericalError: the state or the velocity became NaN/Inf; the message names the time and the field
            evaluation, and ``err.last_good`` holds ``(t, state)`` of the last finite evaluation.
    """
    from torchdiffeq import odeint, odeint_adjoint

    check_float_tensor(x0, "x0", ndim=(2, 3), last_dim=3)
    fixed = SOLVERS.get(method, arg="method")
    t = _as_times(times, x0)
    guarded = _Guarded(field)
    y0 = field.initial_state(x0) if hasattr(field, "initial_state") else x0
    if fixed:
        h = float(t[-1] - t[0]) / int(check_positive(n_steps, "n_steps"))
        options: dict = {"step_size": h}
        kw: dict = {"method": method, "options": options}
    else:
        kw = {"method": method, "rtol": check_positive(rtol, "rtol"), "atol": check_positive(atol, "atol")}
    if adjoint:
        if not any(p.requires_grad for p in field.parameters()):
            raise ValidationError("adjoint: the field has no trainable parameter; use adjoint=False")
        ys = odeint_adjoint(guarded, y0, t, adjoint_params=tuple(field.parameters()), **kw)
    else:
        ys = odeint(guarded, y0, t, **kw)
    pts = field.points(ys) if hasattr(field, "points") else ys
    if not bool(torch.isfinite(pts).all()):
        bad = int((~torch.isfinite(pts.reshape(pts.shape[0], -1)).all(1)).nonzero()[0])
        err = NumericalError(f"integrate: the trajectory is NaN/Inf from output frame {bad} (t={float(t[bad]):.4g})")
        err.last_good = (float(t[bad - 1]), pts[bad - 1].detach()) if bad > 0 else None  # type: ignore[attr-defined]
        raise err
    log.debug("integrate: %s, %d field evaluations", method, guarded.n_evals)
    return Trajectory(pts, t, guarded.n_evals)
