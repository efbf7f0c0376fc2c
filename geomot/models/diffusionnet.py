"""DiffusionNet: a discretisation-agnostic network on surfaces (Sharp, Attaiki, Crane & Ovsjanikov, "DiffusionNet:
Discretization Agnostic Learning on Surfaces", ACM TOG 2022).

Per-vertex features ``x (V, C_in)`` go through a linear layer to the width ``W``, ``n_blocks`` blocks and a linear
layer to ``C_out``. One block, with ``u`` its ``(V, W)`` input:

1. learned diffusion (Sec. 3.2), one time ``t_c >= 0`` per channel, spectral acceleration:
   ``h_c = Phi diag(exp(-lambda t_c)) Phi^T M u_c`` with the first ``k`` eigenpairs ``(lambda, Phi)`` and the
   lumped mass ``M``;
2. spatial gradient features (Sec. 3.3): the tangent gradients ``g = grad_x h + i grad_y h`` (one complex number
   per vertex and channel, in the vertex's tangent frame), a learned complex ``W x W`` matrix ``A`` (or a real one
   without rotations) and ``q_c = tanh(Re(conj(g_c) (A g)_c))``; the features do not depend on the choice of the
   tangent basis at a vertex, only on the orientation of its normal;
3. a per-vertex MLP on ``[u, h, q]`` (``3 W`` channels; ReLU, dropout before every layer but the first) with a
   residual connection: ``u <- u + MLP([u, h, q])``.

The times are stored as parameters initialised to 0 (the paper's initialisation) and clamped at 0 in the forward
pass with a projected gradient: the clamp passes the gradient wherever it would move ``t`` upwards, so a time
pushed below 0 by an optimiser step can come back.

Inputs: any per-vertex features; :func:`xyz_input` (centred positions) and :func:`wks_input` (wave kernel
signatures, invariant to rigid motions) are the two of the paper. Operators come from
:func:`geomot.ops.operators.diffusion_operators` (one shape) and :func:`geomot.ops.operators.batch_operators`
(padded batches); the network never reads the vertex positions, so its output is invariant to rigid motions of
the shape whenever its input features are.

Cost per block for ``B`` shapes of ``V`` vertices: ``4 B V k W`` flops for the diffusion, one sparse product with
``~14 V`` nonzeros per channel for the gradients, ``B V (3 W h_1 + h_1 h_2 + h_2 W + 4 W^2)`` multiply-adds for
the MLP and the gradient features. The default model (width 128, 4 blocks, k 128) in float32 on one 5k-vertex mesh
takes ~0.6 s forward + backward and ~0.15 s forward on one CPU thread (``docs/diffusionnet.md``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from geomot._core.batch import mask_from_lengths
from geomot._core.checks import check_float_tensor, check_int, check_positive
from geomot._core.errors import ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.correspondence.descriptors import wks
from geomot.models._seeded import seeded
from geomot.ops.operators import DiffusionBatch, DiffusionOperators, batch_operators

__all__ = ["DIFFUSIONS", "DiffusionNet", "DiffusionNetBlock", "learned_diffusion", "wks_input", "xyz_input"]

Operators = DiffusionBatch | DiffusionOperators


# ---------------------------------------------------------------------------------------------------------------
# differentiable pieces


class _NonNegative(torch.autograd.Function):
    """``max(t, 0)``; the gradient passes where ``t > 0`` or where a descent step would increase ``t``."""

    @staticmethod
    def forward(ctx, t):  # type: ignore[override]
        ctx.save_for_backward(t)
        return t.clamp(min=0)

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (t,) = ctx.saved_tensors
        return torch.where((t > 0) | (g < 0), g, torch.zeros_like(g))


class _BlockGradient(torch.autograd.Function):
    """``G @ u`` for a fixed sparse ``G``, with the transpose given for the backward pass."""

    @staticmethod
    def forward(ctx, u, g, g_t):  # type: ignore[override]
        ctx.g_t = g_t
        return g @ u

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return ctx.g_t @ grad.contiguous(), None, None


def learned_diffusion(
    x: torch.Tensor, times: torch.Tensor, *, evals: torch.Tensor, evecs: torch.Tensor, mass: torch.Tensor
) -> torch.Tensor:
    """Spectral heat diffusion of each channel for its own time: ``Phi diag(exp(-lambda t_c)) Phi^T M x_c``.

    Args:
        x: ``(B, V, C)`` features (zero on padding rows, where ``mass`` is zero).
        times: ``(C,)`` non-negative diffusion times.
        evals: ``(B, k)``; evecs: ``(B, V, k)``; mass: ``(B, V)``.

    Returns:
        ``(B, V, C)``; cost ``4 B V k C`` flops.
    """
    spec = evecs.transpose(1, 2) @ (mass.unsqueeze(-1) * x)  # (B, k, C)
    coefs = torch.exp(-evals.unsqueeze(-1) * times)  # (B, k, C)
    return evecs @ (coefs * spec)


#: diffusion name -> ``fn(x (B, V, C), times (C,), *, evals, evecs, mass) -> (B, V, C)``.
DIFFUSIONS: Registry[Callable[..., torch.Tensor]] = Registry("diffusion")
DIFFUSIONS.add("spectral", learned_diffusion)


# ---------------------------------------------------------------------------------------------------------------
# modules


def _mlp(widths: Sequence[int], dropout: float, generator: torch.Generator | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for n, (a, b) in enumerate(itertools.pairwise(widths)):
        if n > 0 and dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(seeded(nn.Linear, a, b, generator=generator))
        if n < len(widths) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DiffusionNetBlock(nn.Module):
    """One DiffusionNet block: learned diffusion, spatial gradient features, per-vertex MLP with a residual.

    Args:
        width: channels ``W`` in and out.
        mlp_hidden: hidden widths of the per-vertex MLP (``3 W -> *mlp_hidden -> W``).
        dropout: dropout probability before every MLP layer but the first (masks from torch's global generator in
            training mode, as ``nn.Dropout``).
        with_gradient_features: add the gradient features ``q`` (else the MLP reads ``[u, h]``).
        with_gradient_rotations: complex ``A`` (rotation-aware inner products); else a real ``A``.
        diffusion: a name of :data:`DIFFUSIONS`.
        generator: source of the initial weights.

    Shapes:
        ``forward(u (B, V, W), evals (B, k), evecs (B, V, k), mass (B, V), gradient, gradient_t) -> (B, V, W)``
        with the block-diagonal gradient of :class:`geomot.ops.operators.DiffusionBatch`.
    """

    def __init__(
        self,
        width: int,
        *,
        mlp_hidden: Sequence[int] = (128, 128),
        dropout: float = 0.5,
        with_gradient_features: bool = True,
        with_gradient_rotations: bool = True,
        diffusion: str = "spectral",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.width = check_int(width, "width", at_least=1)
        self.diffuse = DIFFUSIONS.get(diffusion, arg="diffusion")
        self.with_gradient_features = bool(with_gradient_features)
        self.with_gradient_rotations = bool(with_gradient_rotations)
        device = generator.device if generator is not None else None
        self.diffusion_time = nn.Parameter(torch.zeros(self.width, device=device))
        self.a_re: nn.Linear | None = None
        self.a_im: nn.Linear | None = None
        if self.with_gradient_features:
            self.a_re = seeded(nn.Linear, self.width, self.width, bias=False, generator=generator)
            if self.with_gradient_rotations:
                self.a_im = seeded(nn.Linear, self.width, self.width, bias=False, generator=generator)
        n_in = (3 if self.with_gradient_features else 2) * self.width
        self.mlp = _mlp([n_in, *mlp_hidden, self.width], dropout, generator)

    def gradient_features(self, g: torch.Tensor) -> torch.Tensor:
        """``tanh(Re(conj(g) (A g)))`` per channel for ``g = g[0] + i g[1]`` (``g (2, B, V, W)``)."""
        W = self.width
        if self.a_im is None:
            return torch.tanh((g * self.a_re(g)).sum(0))
        # one product for the four real ones: [A_re g_x, A_im g_x] and [A_re g_y, A_im g_y]
        p = nn.functional.linear(g, torch.cat([self.a_re.weight, self.a_im.weight], 0))  # (2, B, V, 2W)
        gx, gy = g.unbind(0)
        px, py = p.unbind(0)
        b_re = px[..., :W] - py[..., W:]
        b_im = py[..., :W] + px[..., W:]
        return torch.tanh(gx * b_re + gy * b_im)

    def forward(
        self,
        u: torch.Tensor,
        evals: torch.Tensor,
        evecs: torch.Tensor,
        mass: torch.Tensor,
        gradient: torch.Tensor,
        gradient_t: torch.Tensor,
    ) -> torch.Tensor:
        times = _NonNegative.apply(self.diffusion_time)
        h = self.diffuse(u, times, evals=evals, evecs=evecs, mass=mass)
        parts = [u, h]
        if self.with_gradient_features:
            B, V, W = h.shape
            g = _BlockGradient.apply(h.reshape(B * V, W), gradient, gradient_t).view(2, B, V, W)
            parts.append(self.gradient_features(g))
        return u + self.mlp(torch.cat(parts, -1))


class DiffusionNet(nn.Module):
    """DiffusionNet (Sharp et al., ACM TOG 2022): per-vertex features of a surface or point cloud.

    ``y = last_activation(W_out u_N + b_out)``, ``u_0 = W_in x + b_in``, ``u_{n+1} = block_n(u_n)`` (see the
    module docstring for a block).

    Args:
        in_channels: ``C_in`` of the input features (3 for :func:`xyz_input`, ``n_scales`` for :func:`wks_input`).
        out_channels: ``C_out``.
        width: channels ``W`` inside the blocks.
        n_blocks: number of blocks.
        k_eig: eigenpairs used by the spectral diffusion; the operators must hold at least that many (the first
            ``k_eig`` are used).
        mlp_hidden: hidden widths of each block's per-vertex MLP (default ``(width, width)``).
        dropout: dropout probability inside the MLPs (the paper's 0.5; 0 disables it).
        with_gradient_features: use the spatial gradient features.
        with_gradient_rotations: rotation-aware (complex) gradient inner products.
        diffusion: a name of :data:`DIFFUSIONS` (``"spectral"``).
        last_activation: applied to the output (e.g. ``torch.nn.functional.log_softmax``); None for none.
        generator: source of the initial weights (torch's default initialisation of ``nn.Linear``; the global
            generator when None). Building the model with a generator does not touch the global generator.

    Shapes:
        ``forward(x (V, C_in), operators: DiffusionOperators | DiffusionBatch with B = 1) -> (V, C_out)`` and
        ``forward(x (B, Vmax, C_in), operators: DiffusionBatch) -> (B, Vmax, C_out)``; rows past
        ``operators.lengths[b]`` are padding, ignored in the input and zero in the output. The result for the real
        vertices of an item does not depend on the other items or on the padding. A :class:`DiffusionBatch` must
        have the dtype and device of ``x`` (see :func:`geomot.ops.operators.batch_operators`'s ``dtype``); a
        single shape's :class:`DiffusionOperators` is converted to them on every call (a few milliseconds for 5k
        vertices: build a batch once to avoid it).

    Example:
        >>> ops = [diffusion_operators(v, f, k_eig=128, cache_dir="cache") for v, f in shapes]
        >>> batch = batch_operators(ops, dtype=torch.float32)
        >>> feats = DiffusionNet(128, generator=torch.Generator().manual_seed(0))(wks_input(batch), batch)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        *,
        width: int = 128,
        n_blocks: int = 4,
        k_eig: int = 128,
        mlp_hidden: Sequence[int] | None = None,
        dropout: float = 0.5,
        with_gradient_features: bool = True,
        with_gradient_rotations: bool = True,
        diffusion: str = "spectral",
        last_activation: Callable[[torch.Tensor], torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", at_least=1)
        self.out_channels = check_int(out_channels, "out_channels", at_least=1)
        self.width = check_int(width, "width", at_least=1)
        self.n_blocks = check_int(n_blocks, "n_blocks", at_least=0)
        self.k_eig = check_int(k_eig, "k_eig", at_least=1)
        hidden = (self.width, self.width) if mlp_hidden is None else tuple(mlp_hidden)
        for h in hidden:
            check_int(h, "mlp_hidden", at_least=1)
        p = check_positive(dropout, "dropout", strict=False)
        if p >= 1:
            raise ValidationError(f"dropout: expected a probability in [0, 1), got {dropout!r}")
        if last_activation is not None and not callable(last_activation):
            raise ValidationError(f"last_activation: expected a callable or None, got {type(last_activation)}")
        self.last_activation = last_activation
        self.first = seeded(nn.Linear, self.in_channels, self.width, generator=generator)
        self.blocks = nn.ModuleList(
            DiffusionNetBlock(
                self.width,
                mlp_hidden=hidden,
                dropout=p,
                with_gradient_features=with_gradient_features,
                with_gradient_rotations=with_gradient_rotations,
                diffusion=diffusion,
                generator=generator,
            )
            for _ in range(self.n_blocks)
        )
        self.last = seeded(nn.Linear, self.width, self.out_channels, generator=generator)

    def _batch(self, x: torch.Tensor, operators: object) -> DiffusionBatch:
        if isinstance(operators, DiffusionOperators):
            operators = batch_operators([operators], dtype=x.dtype, device=x.device)
        if not isinstance(operators, DiffusionBatch):
            raise ShapeError(
                f"operators: expected a DiffusionBatch or DiffusionOperators (geomot.ops.operators), got "
                f"{type(operators).__name__}"
            )
        B, V, k = operators.evecs.shape
        want = (V,) if x.dim() == 2 else (B, V)
        if x.dim() == 2 and B != 1:
            raise ShapeError(f"x: a (V, C) input needs operators of one shape, got a batch of {B}; pass (B, V, C)")
        if tuple(x.shape[:-1]) != want:
            raise ShapeError(
                f"x: expected shape {(*want, self.in_channels)} (that of the operators), got {tuple(x.shape)}"
            )
        if x.dtype != operators.evecs.dtype or x.device != operators.evecs.device:
            raise ShapeError(
                f"x: expected dtype {operators.evecs.dtype} on {operators.evecs.device} (that of the operators), "
                f"got {x.dtype} on {x.device}; build the batch with batch_operators(..., dtype=x.dtype) or move it "
                "with .to()"
            )
        if k < self.k_eig:
            raise ShapeError(
                f"operators: the model uses k_eig={self.k_eig} eigenpairs but the operators hold {k}; compute them "
                f"with diffusion_operators(..., k_eig>={self.k_eig})"
            )
        return operators

    def forward(self, x: torch.Tensor, operators: Operators) -> torch.Tensor:
        check_float_tensor(x, "x", ndim=(2, 3), last_dim=self.in_channels, finite=False)
        ops = self._batch(x, operators)
        batched = x.dim() == 3
        xb = x if batched else x.unsqueeze(0)
        mask = mask_from_lengths(ops.lengths, xb.shape[1]).unsqueeze(-1)
        xb = torch.where(mask, xb, torch.zeros((), dtype=xb.dtype, device=xb.device))
        k = self.k_eig
        evals, evecs = ops.evals[:, :k], ops.evecs[..., :k]
        u = self.first(xb)
        for block in self.blocks:
            u = block(u, evals, evecs, ops.mass, ops.gradient, ops.gradient_t)
        y = self.last(u)
        if self.last_activation is not None:
            y = self.last_activation(y)
        y = torch.where(mask, y, torch.zeros((), dtype=y.dtype, device=y.device))
        return y if batched else y[0]


# ---------------------------------------------------------------------------------------------------------------
# input features


def xyz_input(verts: torch.Tensor, operators: Operators) -> torch.Tensor:
    """Positions centred on their mass-weighted mean: ``x_i = p_i - sum_j m_j p_j / sum_j m_j``.

    Args:
        verts: ``(V, 3)`` with :class:`~geomot.ops.operators.DiffusionOperators`, or padded ``(B, Vmax, 3)`` with
            a :class:`~geomot.ops.operators.DiffusionBatch`.
        operators: the operators of the shape(s) (their ``mass``).

    Returns:
        the shape of ``verts``, zero on padding rows; differentiable in ``verts``.
    """
    check_float_tensor(verts, "verts", ndim=(2, 3), last_dim=3)
    mass = operators.mass.to(verts.dtype)
    if tuple(mass.shape) != tuple(verts.shape[:-1]):
        raise ShapeError(
            f"verts: expected shape {(*mass.shape, 3)} (that of the operators' mass), got {tuple(verts.shape)}"
        )
    w = mass.unsqueeze(-1)
    center = (w * verts).sum(-2, keepdim=True) / w.sum(-2, keepdim=True)
    return torch.where(w > 0, verts - center, torch.zeros_like(verts))


def wks_input(operators: Operators, *, n_scales: int = 128, normalize: bool = True) -> torch.Tensor:
    """Wave kernel signatures (:func:`geomot.correspondence.descriptors.wks`) as input features.

    With ``normalize``, each channel is divided by its ``M``-norm ``sqrt(sum_i m_i f_i^2)``, which makes the
    features comparable between shapes of different sizes and resolutions.

    Args:
        operators: :class:`~geomot.ops.operators.DiffusionOperators` or a padded
            :class:`~geomot.ops.operators.DiffusionBatch`.
        n_scales: number of energies ``S``.
        normalize: scale each channel to unit ``M``-norm.

    Returns:
        ``(V, S)`` or ``(B, Vmax, S)`` in the dtype of the operators, zero on padding rows; invariant to rigid
        motions of the shape, to the signs of the eigenvectors and to the vertex order (up to the permutation).
    """
    check_int(n_scales, "n_scales", at_least=1)
    f = wks(operators.evals, operators.evecs, n_scales=n_scales)
    if normalize:
        norm = (operators.mass.unsqueeze(-1) * f * f).sum(-2, keepdim=True).sqrt()
        f = f / norm.clamp_min(torch.finfo(f.dtype).tiny)
    return f
