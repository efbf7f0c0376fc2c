"""Amortised projection models: a network that reads two point sets and predicts one slicing direction.

Amortised projection optimisation replaces the inner maximisation of max-SW (or of the location of vMF-DSW) by a
network ``f_psi(X, Y) in S^{d-1}`` trained jointly with the model ("Amortized Projection Optimization for Sliced
Wasserstein Generative Models", Nguyen & Ho, NeurIPS 2022; "Self-Attention Amortized Distributional Projection
Optimization for Sliced Wasserstein Point-Cloud Reconstruction", Nguyen, Nguyen & Ho, ICML 2023). Six kinds, in
the :data:`AMORTIZED_PROJECTIONS` registry:

- ``"linear"``: ``f(X, Y) = normalise(w_0 + X^T w_x + Y^T w_y)`` with ``w_x, w_y in R^m`` (one weight per point,
  so tied to ``n_points = m`` and to the order of the points) and ``w_0 in R^d``.
- ``"generalized_linear"``: ``normalise(w_0 + g(X)^T w_x + g(Y)^T w_y)`` with ``g`` applied to every point,
  ``g(x) = W_2 sigmoid(W_1 x + b_1) + b_2`` (``R^d -> R^d``).
- ``"nonlinear"``: ``normalise(h(w_0 + X^T w_x + Y^T w_y))`` with ``h`` of the same form as ``g``.
- ``"attention"``: ``normalise((A(X)^T 1/m + A(Y)^T 1/n) / 2)`` with single-head self-attention
  ``A(X) = softmax(Q K^T / sqrt(d_k)) V``, ``Q = X W_q + b_q``, ``K = X W_k + b_k`` (width ``d_k``),
  ``V = X W_v + b_v`` (width ``d``): the self-attention amortised model of the ICML 2023 paper.
- ``"efficient_attention"``: ``A(X) = softmax_row(Q) (softmax_col(K)^T V)`` ("Efficient Attention: Attention
  with Linear Complexities", Shen et al., WACV 2021): the softmax of ``Q`` over its ``d_k`` features, that of
  ``K`` over the points; time and memory linear in the number of points.
- ``"linformer"``: keys and values reduced to ``k`` landmarks before the attention ("Linformer: Self-Attention
  with Linear Complexity", Wang et al., 2020): ``A(X) = softmax(Q (E K)^T / sqrt(d_k)) (F V)``. The paper's
  ``E, F in R^{k x m}`` weigh points by their index, which ties them to ``m`` and to the point order; here the
  rows of ``E`` and ``F`` are computed from the points, ``E_{ji} = softmax_i(K_i . e_j / sqrt(d_k))`` and
  ``F_{ji} = softmax_i(K_i . f_j / sqrt(d_k))`` with learned ``e_j, f_j in R^{d_k}``, so the model accepts any
  number of points, in any order, with padding (the softmax over points skips padding).

The three attention kinds are symmetric in ``(X, Y)``, invariant to the order of the points, take any number of
points and ignore padding. The first three need exactly ``n_points`` points on each side, in a fixed order.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from geomot._core.batch import mask_from_lengths, to_batched
from geomot._core.checks import check_float_tensor, check_int
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.models._seeded import seeded, uniform_parameter
from geomot.ops.attention import pooled_attention_weights

__all__ = ["AMORTIZED_PROJECTIONS", "AmortizedProjection", "unit_directions"]

#: kind name -> factory ``(dim=, n_points=, d_k=, k=, share_kv=, generator=) -> nn.Module``; the module maps
#: ``(x (B, N, D), y (B, M, D), x_mask (B, N) | None, y_mask (B, M) | None)`` to unnormalised ``(B, D)``.
AMORTIZED_PROJECTIONS: Registry[Callable[..., nn.Module]] = Registry("amortized projection")


def unit_directions(v: torch.Tensor) -> torch.Tensor:
    """Rows of ``v`` ``(B, D)`` scaled to unit length.

    Rows are divided by their largest absolute entry before the norm (no overflow of ``|v|^2`` for large finite
    entries); an all-zero row becomes ``e_1`` (a valid direction rather than NaN); a row with NaN gives NaN.
    """
    scale = v.abs().amax(dim=-1, keepdim=True)
    zero = scale == 0
    u = v / torch.where(zero, torch.ones_like(scale), scale)
    u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True).clamp_min(torch.finfo(u.dtype).tiny)
    e1 = torch.zeros_like(u)
    e1[..., 0] = 1.0
    return torch.where(zero, e1, u)


def _pointwise_mlp(dim: int, generator: torch.Generator | None) -> nn.Sequential:
    """``x -> W_2 sigmoid(W_1 x + b_1) + b_2`` on ``R^d``, the ``g`` and ``h`` of the paper."""
    return nn.Sequential(
        seeded(nn.Linear, dim, dim, generator=generator), nn.Sigmoid(), seeded(nn.Linear, dim, dim, generator=generator)
    )


class _PointLinear(nn.Module):
    """``w_0 + pre(X)^T w_x + pre(Y)^T w_y`` followed by ``post``; weights over points, tied to ``n_points``."""

    ordered = True

    def __init__(self, dim: int, n_points: int, *, pre: nn.Module | None, post: nn.Module | None,
                 generator: torch.Generator | None) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(2 * n_points)  # torch's default for the paper's nn.Linear(2 m, 1)
        self.w_x = uniform_parameter(n_points, bound=bound, generator=generator)
        self.w_y = uniform_parameter(n_points, bound=bound, generator=generator)
        self.w_0 = uniform_parameter(dim, bound=bound, generator=generator)
        self.pre = pre if pre is not None else nn.Identity()
        self.post = post if post is not None else nn.Identity()

    def forward(self, x, y, x_mask, y_mask):
        a = torch.einsum("bnd,n->bd", self.pre(x), self.w_x) + torch.einsum("bnd,n->bd", self.pre(y), self.w_y)
        return self.post(self.w_0 + a)


@AMORTIZED_PROJECTIONS.register("linear")
def _linear(*, dim, n_points, generator, **_):
    return _PointLinear(dim, n_points, pre=None, post=None, generator=generator)


@AMORTIZED_PROJECTIONS.register("generalized_linear")
def _generalized_linear(*, dim, n_points, generator, **_):
    return _PointLinear(dim, n_points, pre=_pointwise_mlp(dim, generator), post=None, generator=generator)


@AMORTIZED_PROJECTIONS.register("nonlinear")
def _nonlinear(*, dim, n_points, generator, **_):
    return _PointLinear(dim, n_points, pre=None, post=_pointwise_mlp(dim, generator), generator=generator)


def _masked_mean(v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``(B, N, C) -> (B, C)`` mean over the real points (``mask (B, N)``, None for all)."""
    if mask is None:
        return v.mean(1)
    v = torch.where(mask[..., None], v, torch.zeros_like(v))
    return v.sum(1) / mask.sum(1, keepdim=True).to(v.dtype)


class _SetPooling(nn.Module, abc.ABC):
    """``(pool(X) + pool(Y)) / 2`` for a per-set pooling ``pool(X, mask) -> (B, D)``; padding rows are zeroed
    first so that whatever they hold cannot reach the result."""

    ordered = False

    @abc.abstractmethod
    def pool(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``(B, D)`` summary of the set ``x`` ``(B, N, D)`` (``mask``: ``(B, N)`` real points, or None)."""

    def forward(self, x, y, x_mask, y_mask):
        if x_mask is not None:
            x = torch.where(x_mask[..., None], x, torch.zeros_like(x))
        if y_mask is not None:
            y = torch.where(y_mask[..., None], y, torch.zeros_like(y))
        return 0.5 * (self.pool(x, x_mask) + self.pool(y, y_mask))


class _Attention(_SetPooling):
    """Mean over the points of ``softmax(Q K^T / sqrt(d_k)) V`` (the softmax skips padded keys).

    The scores have rank at most ``D + 1``: with ``x~ = [x, 1]``, ``q_i . k_j = x~_i^T G x~_j`` for
    ``G = [W_q, b_q]^T [W_k, b_k]`` (``(D+1) x (D+1)``), so they are formed from ``x~ G / sqrt(d_k)`` and ``x~``
    whenever ``d_k > D + 1`` (the same values, ``d_k / (D + 1)`` times fewer multiplications), and pooled by
    :func:`geomot.ops.attention.pooled_attention_weights` without an ``N x N`` matrix.
    """

    def __init__(self, dim: int, d_k: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self.d_k = d_k
        self.to_q = seeded(nn.Linear, dim, d_k, generator=generator)
        self.to_k = seeded(nn.Linear, dim, d_k, generator=generator)
        self.to_v = seeded(nn.Linear, dim, dim, generator=generator)

    def _queries_keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = 1.0 / math.sqrt(self.d_k)
        if self.d_k <= x.shape[-1] + 1:
            return self.to_q(x) * scale, self.to_k(x)
        aq = torch.cat([self.to_q.weight, self.to_q.bias[:, None]], dim=1)  # (d_k, D + 1)
        ak = torch.cat([self.to_k.weight, self.to_k.bias[:, None]], dim=1)
        xt = torch.cat([x, x.new_ones((*x.shape[:-1], 1))], dim=-1)  # (B, N, D + 1)
        return xt @ (aq.T @ ak * scale), xt

    def pool(self, x, mask):
        q, k = self._queries_keys(x)
        w = pooled_attention_weights(q, k, query_mask=mask, key_mask=mask)  # (B, N)
        return torch.bmm(w[:, None, :], self.to_v(x)).squeeze(1)


class _EfficientAttention(_SetPooling):
    """``mean_i softmax(Q_i) . (softmax_points(K)^T V)``: linear in the number of points."""

    def __init__(self, dim: int, d_k: int, generator: torch.Generator | None) -> None:
        super().__init__()
        self.to_q = seeded(nn.Linear, dim, d_k, generator=generator)
        self.to_k = seeded(nn.Linear, dim, d_k, generator=generator)
        self.to_v = seeded(nn.Linear, dim, dim, generator=generator)

    def pool(self, x, mask):
        q = torch.softmax(self.to_q(x), dim=-1)  # (B, N, d_k), over features
        k = self.to_k(x)
        if mask is not None:
            k = k.masked_fill(~mask[..., None], float("-inf"))
        k = torch.softmax(k, dim=1)  # over points
        context = torch.matmul(k.transpose(1, 2), self.to_v(x))  # (B, d_k, D)
        # the mean over queries commutes with the product by the context
        return torch.matmul(_masked_mean(q, mask)[:, None, :], context)[:, 0]


class _Linformer(_SetPooling):
    """Attention of every point over ``k`` landmarks ``E K`` / ``F V`` whose weights over the points are a softmax
    of the keys against learned vectors (see the module docstring)."""

    def __init__(self, dim: int, d_k: int, k: int, share_kv: bool, generator: torch.Generator | None) -> None:
        super().__init__()
        self.to_q = seeded(nn.Linear, dim, d_k, generator=generator)
        self.to_k = seeded(nn.Linear, dim, d_k, generator=generator)
        self.to_v = seeded(nn.Linear, dim, dim, generator=generator)
        bound = math.sqrt(6.0 / (k + d_k))  # Xavier-uniform, as the paper's projections
        self.e = uniform_parameter(k, d_k, bound=bound, generator=generator)
        self.f = self.e if share_kv else uniform_parameter(k, d_k, bound=bound, generator=generator)
        self.scale = 1.0 / math.sqrt(d_k)

    def _landmark_weights(self, keys, seeds, mask):
        logits = torch.matmul(keys, seeds.t()) * self.scale  # (B, N, k)
        if mask is not None:
            logits = logits.masked_fill(~mask[..., None], float("-inf"))
        return torch.softmax(logits, dim=1).transpose(1, 2)  # (B, k, N), rows sum to one over the points

    def pool(self, x, mask):
        q, keys, v = self.to_q(x), self.to_k(x), self.to_v(x)
        k_proj = torch.matmul(self._landmark_weights(keys, self.e, mask), keys)  # (B, k, d_k)
        v_proj = torch.matmul(self._landmark_weights(keys, self.f, mask), v)  # (B, k, D)
        out = F.scaled_dot_product_attention(q, k_proj, v_proj)  # (B, N, D)
        return _masked_mean(out, mask)


@AMORTIZED_PROJECTIONS.register("attention")
def _attention(*, dim, d_k, generator, **_):
    return _Attention(dim, d_k, generator)


@AMORTIZED_PROJECTIONS.register("efficient_attention")
def _efficient_attention(*, dim, d_k, generator, **_):
    return _EfficientAttention(dim, d_k, generator)


@AMORTIZED_PROJECTIONS.register("linformer")
def _linformer(*, dim, d_k, k, share_kv, generator, **_):
    return _Linformer(dim, d_k, k, share_kv, generator)


class AmortizedProjection(nn.Module):
    """A network ``f_psi(X, Y)`` that predicts one unit direction per pair of point sets.

    Used as the max-SW direction or the vMF location of
    :func:`geomot.losses.amortized.amortized_sliced_wasserstein` (see the module docstring for the six kinds and
    their formulas).

    Args:
        kind: one of :data:`AMORTIZED_PROJECTIONS` (``"linear"``, ``"generalized_linear"``, ``"nonlinear"``,
            ``"attention"``, ``"efficient_attention"``, ``"linformer"``).
        dim: ``D``, the dimension of the points (3 for clouds, 6 for varifolds).
        n_points: ``m``, the number of points of every input set; required by the three linear kinds (one weight
            per point), ignored by the attention kinds.
        d_k: width of queries and keys of the attention kinds (64 in the paper).
        k: number of landmarks of ``"linformer"`` (64 in the paper).
        share_kv: ``"linformer"``: one set of landmark vectors for keys and values (``E = F``).
        generator: source of the initial parameters (the global generator when None, as for ``nn.Linear``).

    Shapes:
        ``forward(x: (B, N, D) | (N, D), y: (B, M, D) | (M, D), x_lengths: (B,) | None, y_lengths: (B,) | None)
        -> (B, D) | (D,)`` unit rows (the output mirrors the input). The linear kinds need ``N = M = n_points``
        and no padding.

    Cost per pair: linear kinds ``O(m d)`` (``O(m d^2)`` with ``g``); ``"attention"`` ``O(N^2 d_k)`` time and, with
    torch's fused attention, ``O(N d_k)`` memory; ``"efficient_attention"`` ``O(N d_k d)``; ``"linformer"``
    ``O(N k d_k)``.

    Example:
        >>> proj = AmortizedProjection("attention", dim=3)
        >>> theta = proj(x, y)  # (B, 3), unit rows
    """

    def __init__(
        self,
        kind: str,
        *,
        dim: int = 3,
        n_points: int | None = None,
        d_k: int = 64,
        k: int = 64,
        share_kv: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        factory = AMORTIZED_PROJECTIONS.get(kind, arg="kind")
        self.kind = kind
        self.dim = check_int(dim, "dim", at_least=1)
        self.d_k = check_int(d_k, "d_k", at_least=1)
        self.k = check_int(k, "k", at_least=1)
        if not isinstance(share_kv, bool):
            raise ValidationError(f"share_kv: expected True or False, got {share_kv!r}")
        self.share_kv = share_kv
        if n_points is not None:
            check_int(n_points, "n_points", at_least=1)
        self.n_points = n_points
        if n_points is None and self._tied(kind):
            raise ValidationError(
                f"n_points: the {kind!r} projection has one weight per point and needs n_points (the number of "
                "points of every input set); the attention kinds take any number of points"
            )
        self.net = factory(dim=self.dim, n_points=n_points, d_k=self.d_k, k=self.k, share_kv=share_kv,
                           generator=generator)

    @staticmethod
    def _tied(kind: str) -> bool:
        return kind in ("linear", "generalized_linear", "nonlinear")

    @property
    def ordered(self) -> bool:
        """True for the kinds tied to ``n_points`` and to the order of the points."""
        return self._tied(self.kind)

    def _side(self, x, lengths, name):
        check_float_tensor(x, name, ndim=(2, 3), last_dim=self.dim)
        xb, ln, batched = to_batched(x, name, lengths)
        param = next(self.parameters())
        if xb.dtype != param.dtype or xb.device != param.device:
            raise ShapeError(
                f"{name}: dtype {xb.dtype} on {xb.device}, but the projection's parameters are {param.dtype} on "
                f"{param.device}; move it with .to(dtype=..., device=...)"
            )
        n = xb.shape[1]
        if self.ordered:
            if n != self.n_points:
                raise ShapeError(
                    f"{name}: the {self.kind!r} projection was built for n_points={self.n_points} points in a fixed "
                    f"order, got {n}; build it with n_points={n} or use an attention kind"
                )
            if lengths is not None and bool((ln < n).any()):
                raise ValidationError(
                    f"{name}_lengths: the {self.kind!r} projection weighs points by their index and cannot skip "
                    "padding; give full sets or use an attention kind"
                )
            return xb, None, batched
        mask = None if lengths is None else mask_from_lengths(ln, n)
        return xb, mask, batched

    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        x_lengths: torch.Tensor | None = None,
        y_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Unit directions ``(B, D)`` (``(D,)`` for two unbatched sets) predicted from the pair ``(x, y)``."""
        xb, x_mask, x_batched = self._side(x, x_lengths, "x")
        yb, y_mask, y_batched = self._side(y, y_lengths, "y")
        if xb.shape[0] != yb.shape[0]:
            raise ShapeError(f"y: expected a batch of {xb.shape[0]} sets (that of x), got {yb.shape[0]}")
        out = unit_directions(self.net(xb, yb, x_mask, y_mask))
        return out if (x_batched or y_batched) else out[0]

    def extra_repr(self) -> str:
        parts = [repr(self.kind), f"dim={self.dim}"]
        if self.ordered:
            parts.append(f"n_points={self.n_points}")
        else:
            parts.append(f"d_k={self.d_k}")
        if self.kind == "linformer":
            parts += [f"k={self.k}", f"share_kv={self.share_kv}"]
        return ", ".join(parts)
