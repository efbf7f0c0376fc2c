"""Fused streaming Triton kernels for two ``N x M`` operations: the varifold kernel sum (with its gradients) and
k-nearest neighbours in low dimension.

Each kernel runs one program per block of ``BLOCK_N`` rows of one batch item and streams over that item's columns in
tiles, so memory is ``O(B (N + M) D)`` whatever ``N x M``; padded ``(B, N, D)`` inputs with ``(B,)`` lengths.
On CUDA tensors Triton compiles them (once per shape class, cached by Triton); with ``TRITON_INTERPRET=1`` in the
environment when ``triton`` is first imported, Triton's interpreter runs the same kernels on CPU tensors (slowly;
that is how they are tested without a GPU). :func:`geomot._core.accel.triton_usable` says which applies.

Costs: the varifold sum is ``O(B N M (D + c))`` flops for one value, three times that with the gradients (the
backward runs one pass over the rows and one over the columns, one for a self term ``<x, x>``); k-NN is
``O(B N M (D + k))``, with ``k`` selection rounds per column tile for ``k > 1``.

``triton`` is imported on first use, never by ``import geomot``.
"""

from __future__ import annotations

import torch

from geomot._core.accel import triton_usable
from geomot._core.errors import MissingDependencyError, ValidationError

__all__ = ["KNN_MAX_DIM", "KNN_MAX_K", "VARIFOLD_KINDS", "knn_triton", "varifold_sum_triton"]

#: Normal kernels of the fused varifold sum: ``k_n(t)`` by name (``t = <n, m>``; ``alpha``, ``beta`` for the last).
VARIFOLD_KINDS = {"linear": 0, "binet": 1, "exp_linear": 2}
#: Largest dimension and neighbour count of :func:`knn_triton`.
KNN_MAX_DIM = 8
KNN_MAX_K = 16

_VARIFOLD_BLOCKS = (32, 32)  # (rows per program, columns per tile)
_KNN_BLOCKS = (64, 32)


def _jit():
    try:
        from geomot.ops import _triton_jit
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise MissingDependencyError("backend='triton' needs triton (pip install geomot[triton])") from e
    return _triton_jit


def _check_device(t: torch.Tensor) -> None:
    if not triton_usable(t):
        raise ValidationError(
            f"backend='triton': needs CUDA tensors with triton installed (or TRITON_INTERPRET=1 for CPU tensors), "
            f"got a tensor on {t.device}"
        )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _rows(x, n, a, y, m, b, xl, yl, inv_s2: float, kind: int, alpha: float, beta: float, grad: bool):
    """``s0 (B, N)`` and, with ``grad``, ``gx, gn (B, N, D)`` of :func:`_triton_jit.varifold_rows_kernel`."""
    import triton

    B, N, D = x.shape
    M = y.shape[1]
    s0 = x.new_zeros(B, N)
    gx = x.new_zeros(B, N, D) if grad else s0
    gn = x.new_zeros(B, N, D) if grad else s0
    bn, bm = _VARIFOLD_BLOCKS
    if N and M:
        _jit().varifold_rows_kernel[(triton.cdiv(N, bn), B)](
            x, n, a, y, m, b, xl, yl, s0, gx, gn, N, M, float(inv_s2), float(alpha), float(beta),
            D=D, DP=_pow2(D), KIND=kind, GRAD=grad, BLOCK_N=bn, BLOCK_M=bm,
        )
    return s0, gx, gn


class _VarifoldSum(torch.autograd.Function):
    """``sum_ij a_i b_j K_ij`` per item, forward and backward by the streaming kernel (no ``N x M`` storage)."""

    @staticmethod
    def forward(ctx, x, n, a, y, m, b, xl, yl, inv_s2, kind, alpha, beta, symmetric):  # type: ignore[override]
        ctx.save_for_backward(x, n, a, y, m, b, xl, yl)
        ctx.args = (inv_s2, kind, alpha, beta)
        ctx.symmetric = symmetric
        s0 = _rows(x, n, a, y, m, b, xl, yl, inv_s2, kind, alpha, beta, grad=False)[0]
        return (a * s0).sum(-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # type: ignore[override]
        x, n, a, y, m, b, xl, yl = ctx.saved_tensors
        inv_s2 = ctx.args[0]
        need = ctx.needs_input_grad
        out = [None] * 13

        def side(p, q, pa, r, s, rb, pl, rl):  # gradients for the (p, q, pa) side against (r, s, rb)
            s0, gp, gq = _rows(p, q, pa, r, s, rb, pl, rl, *ctx.args, grad=True)
            ga = g[:, None] * pa
            return ga[..., None] * (-2.0 * inv_s2) * gp, ga[..., None] * gq, g[:, None] * s0

        if any(need[:3]) or (ctx.symmetric and any(need[3:6])):
            out[0:3] = side(x, n, a, y, m, b, xl, yl)
        if any(need[3:6]):
            out[3:6] = out[0:3] if ctx.symmetric else side(y, m, b, x, n, a, yl, xl)
        for i in range(6):
            if not need[i]:
                out[i] = None
        return tuple(out)


def varifold_sum_triton(
    x: torch.Tensor, n: torch.Tensor, a: torch.Tensor, y: torch.Tensor, m: torch.Tensor, b: torch.Tensor,
    x_lengths: torch.Tensor, y_lengths: torch.Tensor, *, inv_s2: float, kind: str, alpha: float = 0.0,
    beta: float = 0.0, symmetric: bool = False,
) -> torch.Tensor:
    """``<x, y> = sum_{i < nx_b, j < ny_b} a_i b_j exp(-|x_i - y_j|^2 inv_s2) k_n(<n_i, m_j>)`` for each item.

    ``k_n`` by ``kind``: ``"linear"`` ``t``, ``"binet"`` ``t^2``, ``"exp_linear"`` ``exp(alpha t + beta)`` (the
    oriented Gaussian kernel ``exp(-2 (1 - t) / sigma_n^2)`` is ``alpha = 2 / sigma_n^2 = -beta``).

    Args:
        x: ``(B, N, D)`` positions; n: ``(B, N, D)`` normals; a: ``(B, N)`` masses.
        y: ``(B, M, D)``; m: ``(B, M, D)``; b: ``(B, M)``: the same for the second varifold.
        x_lengths: ``(B,)`` int64 real rows of ``x``; y_lengths: ``(B,)`` of ``y`` (padding is skipped).
        inv_s2: ``1 / sigma^2``.
        symmetric: ``y, m, b, y_lengths`` are ``x, n, a, x_lengths`` (a self term): the backward pass then runs
            once instead of twice.

    Returns:
        ``(B,)``, differentiable with respect to positions, normals and masses (the backward pass streams again;
        only the inputs are kept). float32 accumulation (float64 for float64 inputs; half precision is computed
        in float32 and returned in its dtype).
    """
    if kind not in VARIFOLD_KINDS:
        raise ValidationError(f"kind: unknown fused normal kernel {kind!r}; valid: {', '.join(VARIFOLD_KINDS)}")
    _check_device(x)
    dt = _compute_dtype(x.dtype)
    ts = [t.to(dt).contiguous() for t in (x, n, a, y, m, b)]
    xl = x_lengths.to(device=x.device, dtype=torch.int64).contiguous()
    yl = y_lengths.to(device=x.device, dtype=torch.int64).contiguous()
    val = _VarifoldSum.apply(*ts, xl, yl, float(inv_s2), VARIFOLD_KINDS[kind], float(alpha), float(beta),
                             bool(symmetric))
    return val.to(x.dtype)


def knn_triton(
    x: torch.Tensor, y: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest of the first ``y_lengths[b]`` points of ``y`` to every point of ``x``, by one streaming
    kernel (no ``N x M`` matrix; no gradient).

    Args:
        x: ``(B, N, D)`` queries, ``D <= KNN_MAX_DIM``; y: ``(B, M, D)``.
        x_lengths: ``(B,)`` int64; y_lengths: ``(B,)`` int64, each ``>= k``.
        k: ``1 <= k <= KNN_MAX_K``.

    Returns:
        ``(dists (B, N, k), idx (B, N, k) int64)``: squared distances ``|x_i - y_idx|^2`` ascending (computed as
        ``sum_d (x_d - y_d)^2``, no cancellation), ties to the lower index; rows of padded queries are 0. NaN
        distances rank last.
    """
    import triton

    B, N, D = x.shape
    if D > KNN_MAX_DIM:
        raise ValidationError(f"x: the triton k-NN kernel takes dimension <= {KNN_MAX_DIM}, got {D}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= KNN_MAX_K:
        raise ValidationError(f"k: the triton k-NN kernel takes 1 <= k <= {KNN_MAX_K}, got {k!r}")
    _check_device(x)
    dt = _compute_dtype(x.dtype)
    xc, yc = x.detach().to(dt).contiguous(), y.detach().to(dt).contiguous()
    xl = x_lengths.to(device=x.device, dtype=torch.int64).contiguous()
    yl = y_lengths.to(device=x.device, dtype=torch.int64).contiguous()
    dists = xc.new_zeros(B, N, k)
    idx = torch.zeros(B, N, k, dtype=torch.int64, device=x.device)
    bn, bm = _KNN_BLOCKS
    if N and y.shape[1]:
        _jit().knn_rows_kernel[(triton.cdiv(N, bn), B)](
            xc, yc, xl, yl, dists, idx, N, y.shape[1],
            D=D, DP=_pow2(D), K=k, KP=_pow2(k), BLOCK_N=bn, BLOCK_M=bm,
        )
    return dists.to(x.dtype), idx
