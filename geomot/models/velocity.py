"""Time-dependent velocity fields ``v_theta(x, t)`` for neural-ODE deformations ``dx/dt = v(x, t)``.

Every field is an ``nn.Module`` whose ``forward(t, y)`` has torchdiffeq's signature: ``t`` a scalar tensor and
``y`` the ODE state ``(N, 3)`` or ``(B, N, 3)``. Fields that carry auxiliary points along the flow (control points)
build their state with ``initial_state(x0)`` and give the moving points back with ``points(y)``; for the others
both are the identity.

- :class:`MLPVelocity`: ``v(x, t) = MLP([gamma(x), t])`` with optional random Fourier features ``gamma`` (Tancik et
  al., NeurIPS 2020) and optional spectral normalisation (Miyato et al., ICLR 2018) bounding the Lipschitz constant;
  the field of "Diffeomorphic Mesh Deformation via Efficient Optimal Transport for Cortical Surface
  Reconstruction" (Le et al., ICLR 2024) and of CortexODE (Ma et al., 2022).
- :class:`KernelVelocity`: an RKHS field ``v(x, t) = sum_k K(x, c_k(t)) alpha_k(t)`` with a Gaussian kernel and
  control points ``c_k`` transported by the flow (LDDMM with control points, Durrleman et al., NeuroImage 2014).
- :class:`ConditionedVelocity`: ``v(x, t | z) = MLP([gamma(x), t, z])``, a field conditioned on a shape code ``z``
  (from :class:`geomot.models.PointNetEncoder`), for one model over a dataset of targets.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from geomot._core.checks import check_float_tensor, check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry

__all__ = [
    "VELOCITY_FIELDS",
    "ConditionedVelocity",
    "KernelVelocity",
    "MLPVelocity",
    "gaussian_kernel",
]

VELOCITY_FIELDS: Registry[Callable[..., nn.Module]] = Registry("velocity field")

_ACTIVATIONS: Registry[Callable[[], nn.Module]] = Registry("activation")
_ACTIVATIONS.add("softplus", lambda: nn.Softplus(beta=10.0))
_ACTIVATIONS.add("tanh", nn.Tanh)
_ACTIVATIONS.add("silu", nn.SiLU)
_ACTIVATIONS.add("relu", nn.ReLU)


def _mlp(
    n_in: int, hidden: int, layers: int, n_out: int, activation: str, spectral_norm: bool
) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden``; the output layer starts at zero (identity deformation)."""
    act = _ACTIVATIONS.get(activation, arg="activation")
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        lin = nn.Linear(width, hidden)
        mods += [nn.utils.parametrizations.spectral_norm(lin) if spectral_norm else lin, act()]
        width = hidden
    out = nn.Linear(width, n_out)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    mods.append(out)
    return nn.Sequential(*mods)


class _FourierFeatures(nn.Module):
    """``gamma(x) = [x, sin(2 pi B x), cos(2 pi B x)]`` with a fixed ``B (3, m) ~ N(0, scale^2)``."""

    def __init__(self, n_features: int, scale: float, generator: torch.Generator | None) -> None:
        super().__init__()
        self.register_buffer("B", torch.randn(3, n_features, generator=generator) * scale)
        self.out_dim = 3 + 2 * n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.B.shape[1] == 0:
            return x
        proj = 2 * math.pi * (x @ self.B.to(x.dtype))
        return torch.cat([x, proj.sin(), proj.cos()], -1)


class _PointState(nn.Module):
    """Fields whose state is the moving points themselves."""

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor:
        """ODE state for starting points ``x0 (N, 3)`` or ``(B, N, 3)``."""
        return x0

    def points(self, y: torch.Tensor) -> torch.Tensor:
        """The moving points ``(..., N, 3)`` of a state (or a trajectory of states)."""
        return y


@VELOCITY_FIELDS.register("mlp")
class MLPVelocity(_PointState):
    """Time-dependent MLP velocity ``v(x, t) = W_L s(... s(W_1 [gamma(x), t] + b_1) ...) + b_L``.

    With ``spectral_norm=True`` every hidden weight has spectral norm 1, so with 1-Lipschitz activations
    (tanh, relu; ``softplus`` here has slope <= 1) ``Lip_x(v) <= |W_L|_2 * Lip(gamma)``: the flow is
    bi-Lipschitz and discrete Euler steps ``x + h v`` stay injective while ``h Lip(v) < 1``.

    Args:
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        fourier_features: number ``m`` of random Fourier features (0 = raw coordinates).
        fourier_scale: standard deviation of their frequencies (in inverse units of the normalised coordinates).
        spectral_norm: spectral normalisation of the hidden layers.
        activation: ``"softplus"`` (smooth, default), ``"tanh"``, ``"silu"`` or ``"relu"``.
        generator: for the Fourier frequencies and the initial weights' reproducibility.

    Shapes:
        ``forward(t: (), x: (N, 3) | (B, N, 3)) -> (N, 3) | (B, N, 3)``.
    """

    def __init__(
        self,
        *,
        hidden: int = 128,
        layers: int = 3,
        fourier_features: int = 0,
        fourier_scale: float = 1.0,
        spectral_norm: bool = False,
        activation: str = "softplus",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        hidden, layers = int(check_positive(hidden, "hidden")), int(check_positive(layers, "layers"))
        check_positive(fourier_scale, "fourier_scale")
        self.features = _FourierFeatures(int(check_positive(fourier_features, "fourier_features", strict=False)),
                                         fourier_scale, generator)
        self.net = _mlp(self.features.out_dim + 1, hidden, layers, 3, activation, spectral_norm)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1).expand(*x.shape[:-1], 1)
        return self.net(torch.cat([feats, tt], -1))


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """``K(x_i, y_j) = exp(-|x_i - y_j|^2 / (2 sigma^2))``, shape ``(..., N, M)`` for ``x (..., N, 3)``,
    ``y (..., M, 3)``."""
    d2 = (x * x).sum(-1, keepdim=True) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * (x @ y.transpose(-1, -2))
    return torch.exp(-d2.clamp_min(0.0) / (2.0 * sigma * sigma))


@VELOCITY_FIELDS.register("kernel")
class KernelVelocity(nn.Module):
    """RKHS velocity carried by control points (LDDMM-like).

    ``v(x, t) = g sum_k exp(-|x - c_k(t)|^2 / (2 sigma^2)) alpha_k(t)`` where ``g = 1 / mean_k sum_l K(c_k, c_l)``
    (fixed at construction) makes the momenta velocities whatever the control-point density (so one learning
    rate fits every mesh), and the momenta ``alpha (n_bins, K, 3)``
    are piecewise constant in time (``n_bins`` equal intervals of ``[0, 1]``) and the control points follow the
    flow, ``dc_k/dt = v(c_k, t)`` (Durrleman et al., "Morphometry of anatomical shape complexes with dense
    deformations and sparse parameters", NeuroImage 2014). A Gaussian RKHS field is ``C^infinity``, so the flow
    is a diffeomorphism. The ODE state is ``[x; c]`` (``initial_state`` appends the control points).

    :meth:`kinetic_energy` gives ``int_0^1 |v_t|_V^2 dt = mean_bins alpha^T K(c, c) alpha`` at the initial control
    points, the usual LDDMM regulariser.

    Args:
        control_points: ``(K, 3)`` initial control points (e.g. a farthest-point subsample of the source).
        sigma: kernel width, in the unit of the coordinates.
        n_time_bins: number of time intervals with their own momenta (1 = stationary momenta).
        carry: move the control points with the flow (True) or keep them fixed (False).
        truncate: beyond ``dense_limit`` (point, control point) pairs, only pairs closer than ``truncate * sigma``
            are summed (k-d tree; relative error ``<= exp(-truncate^2 / 2)``, 3.4e-4 for 4); None = always dense.
        dense_limit: largest ``N x K`` evaluated densely.

    Shapes:
        ``forward(t: (), y: (N + K, 3)) -> (N + K, 3)`` when ``carry``; ``(N, 3) -> (N, 3)`` otherwise.
    """

    def __init__(
        self,
        control_points: torch.Tensor,
        *,
        sigma: float,
        n_time_bins: int = 4,
        carry: bool = True,
        truncate: float | None = 4.0,
        dense_limit: int = 2_000_000,
    ) -> None:
        super().__init__()
        check_float_tensor(control_points, "control_points", ndim=2, last_dim=3)
        self.sigma = check_positive(sigma, "sigma")
        self.truncate = None if truncate is None else check_positive(truncate, "truncate")
        self.dense_limit = int(check_positive(dense_limit, "dense_limit", strict=False))
        self.n_time_bins = int(check_positive(n_time_bins, "n_time_bins"))
        self.carry = bool(carry)
        self.register_buffer("control_points", control_points.detach().clone())
        self.momenta = nn.Parameter(control_points.new_zeros(self.n_time_bins, control_points.shape[0], 3))
        with torch.no_grad():  # 1 / mean_k sum_l K(c_k, c_l): momenta are in units of velocity
            c = self.control_points
            mass = torch.cat([gaussian_kernel(c[i : i + 1024], c, self.sigma).sum(1)
                              for i in range(0, c.shape[0], 1024)])
        self.register_buffer("gain", 1.0 / mass.mean())

    @property
    def n_control(self) -> int:
        return self.control_points.shape[0]

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor:
        if x0.dim() != 2:
            raise ShapeError(f"x0: KernelVelocity moves a single point set (N, 3), got shape {tuple(x0.shape)}")
        if not self.carry:
            return x0
        return torch.cat([x0, self.control_points.to(x0.dtype)], 0)

    def points(self, y: torch.Tensor) -> torch.Tensor:
        return y[..., : y.shape[-2] - self.n_control, :] if self.carry else y

    def _bin(self, t: torch.Tensor) -> int:
        return min(int(float(t) * self.n_time_bins), self.n_time_bins - 1) if self.n_time_bins > 1 else 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = y[-self.n_control :] if self.carry else self.control_points.to(y.dtype)
        alpha = self.momenta[self._bin(t)].to(y.dtype) * self.gain.to(y.dtype)
        if self.truncate is None or y.shape[0] * c.shape[0] <= self.dense_limit:
            return gaussian_kernel(y, c, self.sigma) @ alpha
        return self._truncated(y, c, alpha)

    def _truncated(self, y: torch.Tensor, c: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """Sum over the control points within ``truncate * sigma`` only (pairs found by k-d trees on detached
        positions; the kernel values stay differentiable). Relative error at most ``exp(-truncate^2 / 2)``."""
        r = self.truncate * self.sigma
        pairs = cKDTree(y.detach().cpu().numpy()).sparse_distance_matrix(
            cKDTree(c.detach().cpu().numpy()), r, output_type="coo_matrix"
        )
        i = torch.from_numpy(pairs.row.astype(np.int64)).to(y.device)
        j = torch.from_numpy(pairs.col.astype(np.int64)).to(y.device)
        w = torch.exp(-(y[i] - c[j]).pow(2).sum(-1) / (2.0 * self.sigma * self.sigma))
        return y.new_zeros(y.shape).index_add(0, i, w[:, None] * alpha[j])

    def kinetic_energy(self) -> torch.Tensor:
        """``mean_b g^2 sum_{k,l} K(c_k, c_l) alpha_{b,k} . alpha_{b,l}`` (RKHS norm at the initial control
        points)."""
        k = gaussian_kernel(self.control_points, self.control_points, self.sigma)
        return self.gain**2 * torch.einsum("kl,bkd,bld->b", k, self.momenta, self.momenta).mean()


@VELOCITY_FIELDS.register("conditioned")
class ConditionedVelocity(_PointState):
    """Velocity conditioned on a shape code: ``v(x, t | z) = MLP([gamma(x), t, z])``.

    Call :meth:`set_code` with ``z (code_dim,)`` or ``(B, code_dim)`` before integrating; a batch of codes deforms
    a batch of point sets ``(B, N, 3)`` (e.g. one template repeated) towards ``B`` targets.

    Args:
        code_dim: size of ``z``.
        hidden, layers, fourier_features, fourier_scale, spectral_norm, activation, generator: as in
            :class:`MLPVelocity`.

    Shapes:
        ``forward(t: (), x: (N, 3) | (B, N, 3)) -> same``.
    """

    def __init__(
        self,
        *,
        code_dim: int,
        hidden: int = 256,
        layers: int = 3,
        fourier_features: int = 32,
        fourier_scale: float = 1.0,
        spectral_norm: bool = False,
        activation: str = "softplus",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.code_dim = int(check_positive(code_dim, "code_dim"))
        self.features = _FourierFeatures(int(check_positive(fourier_features, "fourier_features", strict=False)),
                                         check_positive(fourier_scale, "fourier_scale"), generator)
        self.net = _mlp(self.features.out_dim + 1 + self.code_dim, int(hidden), int(layers), 3, activation,
                        spectral_norm)
        self._code: torch.Tensor | None = None

    def set_code(self, z: torch.Tensor) -> None:
        """Condition the field on ``z (code_dim,)`` or ``(B, code_dim)`` (kept in the autograd graph)."""
        check_float_tensor(z, "z", ndim=(1, 2), last_dim=self.code_dim)
        self._code = z

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self._code is None:
            raise ValidationError("ConditionedVelocity: no shape code; call set_code(z) before integrating")
        z = self._code.to(x.dtype)
        if z.dim() == 2 and x.dim() == 3:
            if z.shape[0] != x.shape[0]:
                raise ShapeError(f"z: expected {x.shape[0]} codes for a batch of {x.shape[0]}, got {z.shape[0]}")
            z = z[:, None, :].expand(x.shape[0], x.shape[1], self.code_dim)
        elif z.dim() == 1:
            z = z.expand(*x.shape[:-1], self.code_dim)
        else:
            raise ShapeError(f"z: a batch of codes {tuple(z.shape)} needs batched points (B, N, 3), got "
                             f"{tuple(x.shape)}")
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1).expand(*x.shape[:-1], 1)
        return self.net(torch.cat([self.features(x), tt, z], -1))
