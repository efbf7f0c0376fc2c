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
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from geomot._core.checks import check_float_tensor, check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.models._seeded import seeded
from geomot.models._spectral import spectral_norm as _spectral_norm

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
    n_in: int, hidden: int, layers: int, n_out: int, activation: str, spectral_norm: bool,
    generator: torch.Generator | None,
) -> nn.Sequential:
    """``layers`` hidden layers of width ``hidden`` (torch's default initialisation, drawn from ``generator``); the
    output layer starts at zero (identity deformation)."""
    act = _ACTIVATIONS.get(activation, arg="activation")
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        lin = seeded(nn.Linear, width, hidden, generator=generator)
        mods += [_spectral_norm(lin, generator=generator) if spectral_norm else lin, act()]
        width = hidden
    out = nn.utils.skip_init(nn.Linear, width, n_out)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    mods.append(out)
    return nn.Sequential(*mods)


class _FourierFeatures(nn.Module):
    """``gamma(x) = [x, sin(2 pi B x), cos(2 pi B x)]`` with a fixed ``B (3, m) ~ N(0, scale^2)``."""

    def __init__(self, n_features: int, scale: float, generator: torch.Generator | None) -> None:
        super().__init__()
        where = generator.device if generator is not None else None
        self.register_buffer("B", torch.randn(3, n_features, generator=generator, device=where) * scale)
        self.out_dim = 3 + 2 * n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.B.shape[1] == 0:
            return x
        proj = 2 * math.pi * (x @ self.B.to(x.dtype))
        return torch.cat([x, proj.sin(), proj.cos()], -1)


def _feature_mlp(
    n_extra: int, *, hidden: int, layers: int, fourier_features: int, fourier_scale: float, spectral_norm: bool,
    activation: str, generator: torch.Generator | None,
) -> tuple[_FourierFeatures, nn.Sequential]:
    """Validated ``(gamma, MLP)`` pair of the MLP fields: the MLP reads ``[gamma(x), t, extra (n_extra)]``."""
    hidden, layers = int(check_positive(hidden, "hidden")), int(check_positive(layers, "layers"))
    check_positive(fourier_scale, "fourier_scale")
    features = _FourierFeatures(int(check_positive(fourier_features, "fourier_features", strict=False)),
                                fourier_scale, generator)
    return features, _mlp(features.out_dim + 1 + n_extra, hidden, layers, 3, activation, spectral_norm, generator)


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
        generator: source of the Fourier frequencies, the initial weights and the spectral normalisation's
            starting vectors (torch's global generator when None, as for ``nn.Linear``).

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
        self.features, self.net = _feature_mlp(
            0, hidden=hidden, layers=layers, fourier_features=fourier_features, fourier_scale=fourier_scale,
            spectral_norm=spectral_norm, activation=activation, generator=generator)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)
        tt = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(1).expand(*x.shape[:-1], 1)
        return self.net(torch.cat([feats, tt], -1))


def gaussian_kernel(x: torch.Tensor, y: torch.Tensor, sigma: float, support: float | None = None) -> torch.Tensor:
    """``K(x_i, y_j) = exp(-d^2 / (2 sigma^2))`` with ``d = |x_i - y_j|``, times the window
    ``(1 - d^4 / R^4)^2`` (zero beyond ``R = support``) when ``support`` is given; shape ``(..., N, M)`` for
    ``x (..., N, 3)``, ``y (..., M, 3)``.

    The window is flat at the origin (it changes the kernel by less than 3 % within ``R / 3``) and reaches zero
    with a zero slope at ``R``, so the windowed kernel is ``C^1`` with compact support: sums over it are exact
    over the pairs closer than ``R`` and the fields built on it stay Lipschitz (their flows are diffeomorphisms).
    """
    d2 = ((x * x).sum(-1, keepdim=True) + (y * y).sum(-1).unsqueeze(-2) - 2.0 * (x @ y.transpose(-1, -2)))
    return _kernel_values(d2.clamp_min(0.0), sigma, support)[0]


def _kernel_values(
    d2: torch.Tensor, sigma: float, support: float | None, grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernel values ``k(d^2)`` and, with ``grad``, ``dk / d(d^2)`` (see :func:`gaussian_kernel`)."""
    g = torch.exp(d2 * (-0.5 / (sigma * sigma)))
    if support is None:
        return g, (g * (-0.5 / (sigma * sigma)) if grad else None)
    q = (d2 * d2) * (1.0 / support**4)
    win = (1.0 - q).clamp_min(0.0)
    k = g * win * win
    if not grad:
        return k, None
    # d/d(d2) [g w^2] = -g w^2 / (2 sigma^2) + g 2 w dw/d(d2), dw/d(d2) = -2 d2 / R^4
    dk = k * (-0.5 / (sigma * sigma)) - g * win * (4.0 / support**4) * d2
    return k, dk


class _Pairs(NamedTuple):
    """(point, control point) pairs closer than a radius, as CSR patterns of ``K (M, K)`` and of its transpose."""

    row: torch.Tensor  # (P,) point index, sorted
    col: torch.Tensor  # (P,) control index
    crow: torch.Tensor  # (M + 1,) CSR row pointers
    perm: torch.Tensor  # (P,) the pairs in the order of their control index
    row_t: torch.Tensor  # (P,) row[perm]
    crow_t: torch.Tensor  # (K + 1,) CSR row pointers of the transpose
    shape: tuple[int, int]


def _find_pairs(y: torch.Tensor, c: torch.Tensor, radius: float) -> _Pairs:
    """All pairs ``|y_i - c_j| <= radius`` (k-d trees on detached positions)."""
    yn, cn = y.detach().cpu().numpy(), c.detach().cpu().numpy()
    found = cKDTree(yn).sparse_distance_matrix(cKDTree(cn), radius, output_type="ndarray")
    i = torch.from_numpy(np.ascontiguousarray(found["i"]).astype(np.int32))
    j = torch.from_numpy(np.ascontiguousarray(found["j"]).astype(np.int32))
    order = torch.sort(i, stable=True).indices
    row, col = i[order].long(), j[order]
    perm = torch.sort(col, stable=True).indices
    col = col.long()
    m, k = yn.shape[0], cn.shape[0]
    crow, crow_t = torch.zeros(m + 1, dtype=torch.int64), torch.zeros(k + 1, dtype=torch.int64)
    crow[1:] = torch.bincount(row, minlength=m).cumsum(0)
    crow_t[1:] = torch.bincount(col, minlength=k).cumsum(0)
    dev = y.device
    return _Pairs(row.to(dev), col.to(dev), crow.to(dev), perm.to(dev), row[perm].to(dev), crow_t.to(dev), (m, k))


def _csr(p: _Pairs, values: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """The sparse ``(M, K)`` matrix of ``values`` on the pairs (or its transpose), in CSR layout."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
        if transpose:
            return torch.sparse_csr_tensor(p.crow_t, p.row_t, values.index_select(0, p.perm), size=p.shape[::-1],
                                           check_invariants=False)
        return torch.sparse_csr_tensor(p.crow, p.col, values, size=p.shape, check_invariants=False)


def _pair_dot(u: torch.Tensor, v: torch.Tensor, p: _Pairs) -> torch.Tensor:
    """``<u_{row_p}, v_{col_p}>`` for every pair (coordinates gathered as rows of ``(D, P)`` arrays)."""
    ut, vt = u.t().contiguous(), v.t().contiguous()
    out = ut[0].index_select(0, p.row) * vt[0].index_select(0, p.col)
    for d in range(1, ut.shape[0]):
        out.addcmul_(ut[d].index_select(0, p.row), vt[d].index_select(0, p.col))
    return out


def _pair_sqdist(u: torch.Tensor, v: torch.Tensor, p: _Pairs) -> torch.Tensor:
    """``|u_{row_p} - v_{col_p}|^2`` for every pair."""
    ut, vt = u.t().contiguous(), v.t().contiguous()
    out = None
    for d in range(ut.shape[0]):
        e = ut[d].index_select(0, p.row) - vt[d].index_select(0, p.col)
        out = e * e if out is None else out.addcmul_(e, e)
    return out


class _SparseKernelSum(torch.autograd.Function):
    """``v_i = sum_{j: (i, j) in pairs} k(|y_i - c_j|^2) a_j`` with a hand-written backward (CSR products):
    with ``s_ij = 2 k'(d_ij^2) <g_i, a_j>``, ``dL/dy_i = sum_j s_ij (y_i - c_j)``,
    ``dL/dc_j = -sum_i s_ij (y_i - c_j)``, ``dL/da_j = sum_i k_ij g_i``."""

    @staticmethod
    def forward(ctx, y, c, a, pairs, sigma, support):  # type: ignore[override]
        k, dk = _kernel_values(_pair_sqdist(y, c, pairs), sigma, support, grad=True)
        ctx.save_for_backward(y, c, a, k, dk)
        ctx.pairs = pairs
        return _csr(pairs, k) @ a

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        y, c, a, k, dk = ctx.saved_tensors
        p = ctx.pairs
        g = g.contiguous()
        grad_a = _csr(p, k, transpose=True) @ g if ctx.needs_input_grad[2] else None
        grad_y = grad_c = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            s = _pair_dot(g, a, p).mul_(dk).mul_(2.0)
            if ctx.needs_input_grad[0]:  # sum_j s_ij (y_i - c_j) = y_i sum_j s_ij - sum_j s_ij c_j
                sc = _csr(p, s) @ torch.cat([c, c.new_ones(c.shape[0], 1)], 1)
                grad_y = y * sc[:, 3:] - sc[:, :3]
            if ctx.needs_input_grad[1]:
                sy = _csr(p, s, transpose=True) @ torch.cat([y, y.new_ones(y.shape[0], 1)], 1)
                grad_c = c * sy[:, 3:] - sy[:, :3]
        return grad_y, grad_c, grad_a, None, None, None


@VELOCITY_FIELDS.register("kernel")
class KernelVelocity(nn.Module):
    """RKHS velocity carried by control points (LDDMM-like).

    ``v(x, t) = g sum_k K(x, c_k(t)) alpha_k(t)`` with the Gaussian kernel of width ``sigma``, windowed to the
    support ``R = truncate * sigma`` (:func:`gaussian_kernel`: ``K = exp(-d^2 / 2 sigma^2) (1 - d^4 / R^4)^2``
    for ``d < R``, 0 beyond), where ``g = 1 / mean_k sum_l K(c_k, c_l)`` (fixed at construction) makes the
    momenta velocities whatever the control-point density (so one learning rate fits every mesh). The momenta
    ``alpha (n_bins, K, 3)`` are piecewise constant in time (``n_bins`` equal intervals of ``[0, 1]``) and the
    control points follow the flow, ``dc_k/dt = v(c_k, t)`` (Durrleman et al., "Morphometry of anatomical shape
    complexes with dense deformations and sparse parameters", NeuroImage 2014). The windowed kernel is ``C^1``
    with bounded derivatives, so the field is Lipschitz and its flow a diffeomorphism. The ODE state is
    ``[x; c]`` (``initial_state`` appends the control points).

    Evaluation: densely for at most ``dense_limit`` (point, control point) pairs; beyond, only over the pairs
    closer than ``R`` — exact, since the kernel vanishes beyond ``R`` — with a hand-written backward. The pairs are
    found by k-d trees within ``R + margin`` and reused while no point has moved more than ``margin / 2`` since
    (one list per evaluation time, so successive optimisation steps, whose trajectories differ little, share
    them); ``margin = sigma / 2``. ``n_searches`` counts the neighbour searches done.

    :meth:`kinetic_energy` gives ``int_0^1 |v_t|_V^2 dt = mean_bins g^2 alpha^T K(c, c) alpha`` at the initial
    control points, the usual LDDMM regulariser.

    Args:
        control_points: ``(K, 3)`` initial control points (e.g. a farthest-point subsample of the source).
        sigma: kernel width, in the unit of the coordinates.
        n_time_bins: number of time intervals with their own momenta (1 = stationary momenta).
        carry: move the control points with the flow (True) or keep them fixed (False).
        control_index: ``(K,)`` indices when the control points are points of the moving set itself
            (``control_points = x0[control_index]``): they are then read from the state instead of being appended
            to it (same flow, ``K`` fewer rows to move); ``initial_state`` / ``points`` are the identity.
        truncate: support of the kernel in units of ``sigma`` (default 3: the window changes the Gaussian by
            less than 3 % within ``sigma`` and the Gaussian is at 1 % of its peak at ``3 sigma``); None = the
            plain Gaussian, always evaluated densely.
        dense_limit: largest ``N x K`` evaluated densely.

    Shapes:
        ``forward(t: (), y: (N + K, 3)) -> (N + K, 3)`` when ``carry``; ``(N, 3) -> (N, 3)`` otherwise or with
        ``control_index``.
    """

    def __init__(
        self,
        control_points: torch.Tensor,
        *,
        sigma: float,
        n_time_bins: int = 4,
        carry: bool = True,
        truncate: float | None = 3.0,
        dense_limit: int = 2_000_000,
        control_index: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        check_float_tensor(control_points, "control_points", ndim=2, last_dim=3)
        self.sigma = check_positive(sigma, "sigma")
        self.truncate = None if truncate is None else check_positive(truncate, "truncate")
        self.dense_limit = int(check_positive(dense_limit, "dense_limit", strict=False))
        self.n_time_bins = int(check_positive(n_time_bins, "n_time_bins"))
        self.carry = bool(carry)
        self.register_buffer("control_points", control_points.detach().clone())
        if control_index is not None:
            control_index = torch.as_tensor(control_index, dtype=torch.int64, device=control_points.device)
            if control_index.shape != control_points.shape[:1]:
                raise ShapeError(f"control_index: expected shape ({control_points.shape[0]},) (one per control "
                                 f"point), got {tuple(control_index.shape)}")
            if not self.carry:
                raise ValidationError("control_index: the control points are points of the moving set, so they "
                                      "move with it; carry=False contradicts it")
        self.register_buffer("control_index", control_index)
        self.momenta = nn.Parameter(control_points.new_zeros(self.n_time_bins, control_points.shape[0], 3))
        self._pairs: dict[float, tuple[torch.Tensor, _Pairs]] = {}
        self.n_searches = 0
        with torch.no_grad():  # 1 / mean_k sum_l K(c_k, c_l): momenta are in units of velocity
            c = self.control_points
            mass = self._sum(c, c, c.new_ones(c.shape[0], 1), key=-1.0)
        self.register_buffer("gain", 1.0 / mass.mean())

    @property
    def n_control(self) -> int:
        return self.control_points.shape[0]

    @property
    def support(self) -> float | None:
        """Radius ``R = truncate * sigma`` beyond which the kernel is zero (None: plain Gaussian)."""
        return None if self.truncate is None else self.truncate * self.sigma

    def initial_state(self, x0: torch.Tensor) -> torch.Tensor:
        if x0.dim() != 2:
            raise ShapeError(f"x0: KernelVelocity moves a single point set (N, 3), got shape {tuple(x0.shape)}")
        if self.control_index is not None:
            if self.n_control and int(self.control_index.max()) >= x0.shape[0]:
                raise ShapeError(f"x0: control_index refers to {int(self.control_index.max()) + 1}+ points, "
                                 f"got {x0.shape[0]}")
            return x0
        if not self.carry:
            return x0
        return torch.cat([x0, self.control_points.to(x0.dtype)], 0)

    def points(self, y: torch.Tensor) -> torch.Tensor:
        if self.control_index is not None or not self.carry:
            return y
        return y[..., : y.shape[-2] - self.n_control, :]

    def _bin(self, t: torch.Tensor) -> int:
        return min(int(float(t) * self.n_time_bins), self.n_time_bins - 1) if self.n_time_bins > 1 else 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.control_index is not None:
            c = y.index_select(0, self.control_index)
        else:
            c = y[-self.n_control :] if self.carry else self.control_points.to(y.dtype)
        alpha = self.momenta[self._bin(t)].to(y.dtype) * self.gain.to(y.dtype)
        return self._sum(y, c, alpha, key=round(float(t), 9))

    def _sum(self, y: torch.Tensor, c: torch.Tensor, alpha: torch.Tensor, key: float | None) -> torch.Tensor:
        """``sum_j K(y_i, c_j) alpha_j`` for ``y (M, 3)``, ``c (K, 3)``, ``alpha (K, D)``."""
        if self.truncate is None or y.shape[0] * c.shape[0] <= self.dense_limit:
            return gaussian_kernel(y, c, self.sigma, self.support) @ alpha
        return _SparseKernelSum.apply(y, c, alpha, self._neighbours(y, c, key), self.sigma, self.support)

    def _neighbours(self, y: torch.Tensor, c: torch.Tensor, key: float | None) -> _Pairs:
        """Pairs closer than ``R``: a cached list built within ``R + margin`` when no point moved more than
        ``margin / 2`` since it was built, else a new one."""
        margin = 0.5 * self.sigma
        state = torch.cat([y.detach(), c.detach()], 0)
        hit = self._pairs.get(key) if key is not None else None
        if hit is not None and hit[0].shape == state.shape and hit[0].dtype == state.dtype \
                and hit[0].device == state.device:
            if float((hit[0] - state).pow(2).sum(-1).amax()) <= (margin / 2) ** 2:
                return hit[1]
        pairs = _find_pairs(y, c, self.support + margin)  # type: ignore[operator]
        self.n_searches += 1
        if key is not None:
            if len(self._pairs) >= 64:
                self._pairs.clear()
            self._pairs[key] = (state.clone(), pairs)
        return pairs

    def kinetic_energy(self) -> torch.Tensor:
        """``mean_b g^2 sum_{k,l} K(c_k, c_l) alpha_{b,k} . alpha_{b,l}`` (RKHS norm at the initial control
        points)."""
        c = self.control_points
        m = self.momenta.to(c.dtype)
        ka = self._sum(c, c, m.permute(1, 0, 2).reshape(c.shape[0], -1), key=-1.0)
        return self.gain**2 * (ka.reshape(c.shape[0], self.n_time_bins, 3).permute(1, 0, 2) * m).sum((1, 2)).mean()


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
        self.features, self.net = _feature_mlp(
            self.code_dim, hidden=hidden, layers=layers, fourier_features=fourier_features,
            fourier_scale=fourier_scale, spectral_norm=spectral_norm, activation=activation, generator=generator)
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
