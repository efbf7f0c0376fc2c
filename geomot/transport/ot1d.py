"""Exact optimal transport on the real line, batched over leading dimensions.

For two probability measures ``mu, nu`` on ``R`` with quantile functions ``F^{-1}, G^{-1}``,

    ``W_p^p(mu, nu) = int_0^1 |F^{-1}(t) - G^{-1}(t)|^p dt``.

Two paths compute it:

- **sort path** (equal sizes, uniform weights): ``W_p^p = (1/n) sum_i |x_(i) - y_(i)|^p`` with the sorted values;
- **quantile path** (any sizes, any weights): the quantile functions are step functions that jump at the
  cumulative weights; merging both sets of jumps ``0 < q_1 <= ... <= q_{N+M}`` gives
  ``W_p^p = sum_k (q_k - q_{k-1}) |x_{i(q_k)} - y_{j(q_k)}|^p`` with ``i(t) = min{i : F_i >= t}``; the merge is
  one argsort of the ``N + M`` levels, the indices are running counts (no binary search).

Memory is ``O(N + M)`` per row; no ``N x M`` array is formed. On CPU the sorts run outside torch through
:func:`sort_last` (differentiable, the gradient is scattered back through the permutation): numba radix kernels
(:mod:`geomot.transport._radix`) for float32 rows when numba is installed, numpy's SIMD sort otherwise; the sort
path of the sliced losses is one fused kernel (:func:`projected_sorted_power`). On other devices ``torch.sort``
runs and nothing synchronises with the host.
"""

from __future__ import annotations

import numpy as np
import torch

from geomot._core.checks import check_float_tensor, check_positive, check_weights
from geomot._core.errors import ShapeError
from geomot._core.parallel import run_row_blocks
from geomot.transport import _radix

__all__ = [
    "projected_sorted_power",
    "quantile_power",
    "safe_root",
    "sort_last",
    "sort_values",
    "sorted_power",
    "wasserstein_1d",
]

_NUMPY_SORT_DTYPES = (torch.float32, torch.float64)


_U32, _U64 = np.uint32, np.uint64


def _packed_argsort_f32(arr: np.ndarray, out: np.ndarray, idx: np.ndarray) -> None:
    """Sort the float32 rows of ``arr`` and their permutation with ONE unsigned 64-bit sort.

    Each value is mapped to an unsigned 32-bit key with the same order (IEEE trick: flip every bit of a negative
    number, only the sign bit of a non-negative one), shifted into the high half of a uint64 whose low half holds
    the column index. numpy's SIMD sort of these words orders by value, breaks ties by index (a stable order), and
    the sorted values and the permutation are both read back from the result; measured ~30% cheaper than
    ``argsort`` + ``take_along_axis`` on 100 x 100,000 and 6,400 x 2,048 float32 rows.
    """
    n = arr.shape[-1]
    bits = arr.view(_U32)
    key = (_U32(0) - (bits >> _U32(31))) | _U32(0x80000000)
    np.bitwise_xor(bits, key, out=key)
    packed = key.astype(_U64)
    packed <<= _U64(32)
    packed |= np.arange(n, dtype=_U64)
    packed.sort(axis=-1)
    np.bitwise_and(packed, _U64(0xFFFFFFFF), out=idx, casting="unsafe")
    packed >>= _U64(32)
    key = packed.astype(_U32)
    mask = (key >> _U32(31)) - _U32(1)
    mask |= _U32(0x80000000)
    np.bitwise_xor(key, mask, out=key)
    out[...] = key.view(np.float32)


def _radix_length(n: int, with_indices: bool) -> bool:
    """Whether float32 rows of ``n`` values go to the radix kernels (numba installed, long enough, 32-bit index)."""
    shortest = _radix.MIN_LENGTH if with_indices else _radix.MIN_LENGTH_VALUES
    return _radix.AVAILABLE and shortest <= n < (1 << 31)


def _use_radix(arr: np.ndarray, with_indices: bool) -> bool:
    return arr.dtype == np.float32 and _radix_length(arr.shape[-1], with_indices)


def _np_sort(arr: np.ndarray, *, with_indices: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Row-wise sort of a 2-D array (and permutation): numba's radix kernels for float32 rows when installed,
    otherwise numpy, in cache-sized row blocks spread over the torch intra-op threads (both release the GIL)."""
    if _use_radix(arr, with_indices):
        return _radix.sort_rows(np.ascontiguousarray(arr), with_indices=with_indices)
    out = np.empty_like(arr)
    idx = np.empty(arr.shape, dtype=np.int64) if with_indices else None
    packed = with_indices and arr.dtype == np.float32 and arr.shape[-1] < (1 << 32)

    def job(sl: slice) -> None:
        if idx is None:
            out[sl] = np.sort(arr[sl], axis=-1)
        elif packed:
            _packed_argsort_f32(arr[sl], out[sl], idx[sl])
        else:
            idx[sl] = np.argsort(arr[sl], axis=-1)
            out[sl] = np.take_along_axis(arr[sl], idx[sl], axis=-1)

    run_row_blocks(arr.shape[0], arr.shape[-1] * (8 if with_indices else arr.itemsize), job)
    return out, idx


def _np_sort_tensor(values: torch.Tensor, *, with_indices: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    arr = values.detach().contiguous().numpy()
    flat = arr.reshape(-1, arr.shape[-1]) if arr.ndim != 2 else arr
    srt, idx = _np_sort(flat, with_indices=with_indices)
    srt_t = torch.from_numpy(srt).view(values.shape)
    return srt_t, (None if idx is None else torch.from_numpy(idx).view(values.shape))


class _NumpySort(torch.autograd.Function):
    """Sort along the last dimension with numpy's SIMD argsort; gradient = scatter through the permutation."""

    @staticmethod
    def forward(ctx, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        srt, idx = _np_sort_tensor(values, with_indices=True)
        ctx.save_for_backward(idx)
        ctx.mark_non_differentiable(idx)
        return srt, idx

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_sorted: torch.Tensor, _grad_idx: torch.Tensor | None) -> torch.Tensor:  # type: ignore[override]
        (idx,) = ctx.saved_tensors
        return torch.zeros_like(grad_sorted).scatter_(-1, idx, grad_sorted)


class _SortedPower(torch.autograd.Function):
    """Fused CPU sort path: ``(1/n) sum_i |x_(i) - y_(i)|^p`` per row, gradient built from the permutations.

    ``d/dx_k = (p/n) |x_k - y_(r(k))|^{p-1} sign(.)`` where ``r(k)`` is the rank of ``x_k``. float32 rows with
    numba installed: one compiled kernel sorts both rows and writes these derivatives at the original positions
    (:func:`geomot.transport._radix.sorted_power_rows`), the backward pass only scales them. Otherwise numpy sorts,
    the sorted differences are kept and scattered back once; no intermediate autograd graph either way.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        ctx.fused = False
        xa = x.detach().contiguous().numpy()
        if _use_radix(xa, True):
            ya = y.detach().contiguous().numpy()
            cost, gx, gy = _radix.sorted_power_rows(
                xa.reshape(-1, xa.shape[-1]), ya.reshape(-1, ya.shape[-1]), p,
                need_gx=ctx.needs_input_grad[0], need_gy=ctx.needs_input_grad[1],
            )
            ctx.fused = True
            ctx.save_for_backward(*(None if g is None else torch.from_numpy(g).view(x.shape) for g in (gx, gy)))
            return torch.from_numpy(cost).to(x.dtype).view(x.shape[:-1])
        xs, ix = _np_sort_tensor(x, with_indices=ctx.needs_input_grad[0])
        ys, iy = _np_sort_tensor(y, with_indices=ctx.needs_input_grad[1])
        diff = xs.sub_(ys)
        out = torch.linalg.vector_norm(diff, ord=p, dim=-1).pow(p) / diff.shape[-1]
        ctx.p = p
        ctx.save_for_backward(diff, ix, iy)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        if ctx.fused:
            scale = grad_out.unsqueeze(-1)
            gx, gy = (None if g is None else g * scale for g in ctx.saved_tensors)
            return gx, gy, None
        diff, ix, iy = ctx.saved_tensors
        p, n = ctx.p, diff.shape[-1]
        scale = (grad_out * (p / n)).unsqueeze(-1)
        if p == 2.0:
            g = diff.mul(scale)
        elif p == 1.0:
            g = diff.sign().mul_(scale)
        else:
            g = diff.abs().pow_(p - 1.0).mul_(diff.sign()).mul_(scale)
        # ix, iy are permutations: every entry is written, so no zero fill is needed
        gx = None if ix is None else torch.empty_like(g).scatter_(-1, ix, g)
        gy = None if iy is None else torch.empty_like(g).scatter_(-1, iy, g.neg_())
        return gx, gy, None


class _ProjectedPower(torch.autograd.Function):
    """CPU float32 + numba: ``W_p^p`` between the projections of ``x`` and ``y`` on every direction, the projected
    values computed inside the kernel (never stored). With ``G[b, l, j] = d cost[b, l] / d <theta_l, x_j>`` (``H``
    for ``y``) and ``s = grad_out``: ``d/dx_j = sum_l s[b, l] G[b, l, j] theta_l``,
    ``d/dtheta_l = s[b, l] sum_j (G[b, l, j] x_j + H[b, l, j] y_j)``. The forward kernel reduces these sums while
    it walks the sorted rows (:func:`geomot.transport._radix.projected_power_grads`) with ``s = 1``: the ``(B, n,
    D)`` and ``(B, L, D)`` results are all that is kept. The backward pass scales them when ``s`` is the same for
    all directions of an item (every mean over the directions); other weights (e.g. the control-variate
    estimator's) run the kernel again with ``s`` as the row weights."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, p: float) -> torch.Tensor:  # type: ignore[override]
        need_x, need_y, need_t = ctx.needs_input_grad[:3]
        xa, ya = x.detach().contiguous().numpy(), y.detach().contiguous().numpy()
        ta = theta.detach().contiguous().numpy()
        cost, dx, dy, dt = _radix.projected_power_grads(xa, ya, ta, p, need_x=need_x, need_y=need_y,
                                                        need_theta=need_t)
        ctx.p = p
        saved = [None if a is None else torch.from_numpy(a) for a in (dx, dy, dt)]
        ctx.save_for_backward(*saved, x, y, theta)
        return torch.from_numpy(cost).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        dx, dy, dt, x, y, theta = ctx.saved_tensors
        need_x, need_y, need_t = ctx.needs_input_grad[:3]
        s = grad_out.to(theta.dtype)  # (B, L)
        gx = gy = gt = None
        if need_x or need_y:
            if bool((s == s[:, :1]).all()):
                scale = s[:, :1, None]
                gx = dx * scale if need_x else None
                gy = dy * scale if need_y else None
            else:
                _, gx, gy, _ = _radix.projected_power_grads(
                    x.detach().contiguous().numpy(), y.detach().contiguous().numpy(),
                    theta.detach().contiguous().numpy(), ctx.p, weights=s.contiguous().numpy(),
                    need_x=need_x, need_y=need_y, need_theta=False,
                )
                gx = None if gx is None else torch.from_numpy(gx)
                gy = None if gy is None else torch.from_numpy(gy)
        if need_t:
            gt = (s.double()[..., None] * dt).to(theta.dtype)
            if theta.shape[0] == 1:
                gt = gt.sum(0, keepdim=True)
        return gx, gy, gt, None


def projected_sorted_power(x: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, p: float) -> torch.Tensor:
    """Sort path of the sliced losses: ``W_p^p`` between the projections of two equal-size uniform point sets.

    ``cost[b, l] = (1/n) sum_i |<theta_l, x_b>_(i) - <theta_l, y_b>_(i)|^p`` (sorted projected values).

    Args:
        x, y: ``(B, n, D)`` points.
        theta: ``(L, D)`` or ``(B, L, D)`` directions.
        p: order.

    Returns:
        ``(B, L)`` costs, differentiable in ``x``, ``y`` and ``theta``. On CPU with float32 and numba installed one
        compiled kernel projects, sorts and differentiates, reducing the derivatives to ``(B, n, D)`` and ``(B, L, D)``
        inside the kernel (nothing of size ``(B, L, n)`` is stored); otherwise ``theta @ x^T`` then
        :func:`sorted_power`.
    """
    t3 = theta if theta.dim() == 3 else theta.unsqueeze(0)
    if (
        x.device.type == "cpu"
        and x.dtype == y.dtype == t3.dtype == torch.float32
        and x.shape == y.shape
        and t3.shape[0] in (1, x.shape[0])
        and _radix_length(x.shape[1], True)
    ):
        if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad or t3.requires_grad):
            return _ProjectedPower.apply(x, y, t3, float(p))
        with torch.no_grad():
            return _ProjectedPower.apply(x, y, t3, float(p))
    return sorted_power(torch.matmul(theta, x.transpose(-1, -2)), torch.matmul(theta, y.transpose(-1, -2)), p)


def sort_values(values: torch.Tensor) -> torch.Tensor:
    """Sorted copy of ``values`` (..., N) along the last dimension; differentiable (see :func:`sort_last`).

    Without a gradient to track on CPU this is a plain ``numpy.sort``, the cheapest case.
    """
    if (
        values.device.type == "cpu"
        and values.dtype in _NUMPY_SORT_DTYPES
        and not (values.requires_grad and torch.is_grad_enabled())
    ):
        return _np_sort_tensor(values, with_indices=False)[0]
    return sort_last(values)[0]


def sort_last(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort along the last dimension, differentiably, and return the permutation.

    On CPU (float32/float64) this uses numpy's vectorised argsort, faster than ``torch.sort`` there; the
    gradient is scattered back through the permutation. Elsewhere (CUDA, half precision) ``torch.sort``.

    Args:
        values: ``(..., N)``.

    Returns:
        ``(sorted (..., N), indices (..., N) int64)`` with ``sorted = values.gather(-1, indices)``.
    """
    if values.device.type == "cpu" and values.dtype in _NUMPY_SORT_DTYPES:
        if torch.is_grad_enabled() and values.requires_grad:
            return _NumpySort.apply(values)
        with torch.no_grad():
            return _NumpySort.apply(values)
    return torch.sort(values, dim=-1)


def _cost(diff: torch.Tensor, p: float) -> torch.Tensor:
    """``|diff|^p`` with cheap special cases (their gradients are the same as the general formula's)."""
    if p == 2.0:
        return diff * diff
    if p == 1.0:
        return diff.abs()
    return diff.abs().pow(p)


def sorted_power(x: torch.Tensor, y: torch.Tensor, p: float) -> torch.Tensor:
    """Sort path: ``(1/n) sum_i |x_(i) - y_(i)|^p`` for (unsorted) ``(..., n)`` rows of equal length and uniform
    mass. On CPU one fused autograd node (numpy sorts); elsewhere ``torch.sort`` and plain autograd.

    Returns:
        ``(...)`` values of ``W_p^p``; differentiable in ``x`` and ``y``.
    """
    if x.device.type == "cpu" and x.dtype in _NUMPY_SORT_DTYPES and y.dtype == x.dtype:
        if torch.is_grad_enabled() and (x.requires_grad or y.requires_grad):
            return _SortedPower.apply(x, y, float(p))
        with torch.no_grad():
            return _SortedPower.apply(x, y, float(p))
    return _cost(torch.sort(x, dim=-1)[0] - torch.sort(y, dim=-1)[0], p).mean(-1)


def quantile_power(
    x_sorted: torch.Tensor,
    x_cum: torch.Tensor,
    y_sorted: torch.Tensor,
    y_cum: torch.Tensor,
    p: float,
    *,
    x_last: torch.Tensor | None = None,
    y_last: torch.Tensor | None = None,
) -> torch.Tensor:
    """Quantile path: ``sum_k (q_k - q_{k-1}) |x_{i(q_k)} - y_{j(q_k)}|^p`` over the merged cumulative weights.

    Args:
        x_sorted: ``(..., N)`` sorted values (padding, if any, at the end).
        x_cum: ``(..., N)`` cumulative weights in the sorted order (last real entry ~1).
        y_sorted: ``(..., M)``; y_cum: ``(..., M)``: the same for the second measure.
        p: the order.
        x_last: ``(...)`` int64 index of the last real atom of each row (``n - 1``); default ``N - 1``.
        y_last: ``(...)`` likewise for ``y``.

    Returns:
        ``(...)`` values of ``W_p^p``; differentiable in values and weights.
    """
    n, m = x_sorted.shape[-1], y_sorted.shape[-1]
    # merge the two sorted level sets with one (arg)sort; i(q_k) = number of x levels before position k, which
    # equals searchsorted(x_cum, q_k, "left") at the first position of every run of equal levels (the other
    # positions of a run have q_k - q_{k-1} = 0)
    levels, order = sort_last(torch.cat([x_cum, y_cum], dim=-1))  # (..., N + M)
    steps = torch.diff(levels, dim=-1, prepend=torch.zeros_like(levels[..., :1]))
    from_x = order < n
    ix = torch.cumsum(from_x, dim=-1) - from_x.long()
    iy = torch.arange(n + m, device=order.device) - ix
    ix = ix.clamp_max(n - 1) if x_last is None else torch.minimum(ix, x_last.unsqueeze(-1))
    iy = iy.clamp_max(m - 1) if y_last is None else torch.minimum(iy, y_last.unsqueeze(-1))
    diff = x_sorted.gather(-1, ix) - y_sorted.gather(-1, iy)
    return (steps * _cost(diff, p)).sum(-1)


def safe_root(power: torch.Tensor, p: float) -> torch.Tensor:
    """``power^(1/p)`` whose gradient at ``power == 0`` is 0 (a subgradient) instead of infinite.

    Only genuine zeros (and the negative values an estimator such as the control-variate one can return, taken as
    0) are guarded: NaN stays NaN and ``+inf`` stays ``+inf`` in the value, and a NaN power gives a NaN gradient,
    so a non-finite loss is never reported as a perfect one.

    Args:
        power: ``(...)`` values of ``W_p^p`` (or an estimate of ``SW_p^p``).
        p: the order.

    Returns:
        ``(...)`` ``max(power, 0)^(1/p)``, NaN where ``power`` is NaN or ``-inf``.
    """
    keep = (power > 0) | ~torch.isfinite(power)
    base = torch.where(keep, power, torch.ones_like(power))  # no pow at 0: its gradient would be inf * 0 = NaN
    return torch.where(keep, base.pow(1.0 / p), torch.zeros_like(power))


def wasserstein_1d(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    x_weights: torch.Tensor | None = None,
    y_weights: torch.Tensor | None = None,
    p: float = 2.0,
    root: bool = True,
) -> torch.Tensor:
    """Exact ``W_p`` between batches of 1-D discrete measures.

    ``W_p^p(mu, nu) = int_0^1 |F^{-1}(t) - G^{-1}(t)|^p dt`` with ``mu = sum_i a_i delta_{x_i}``,
    ``nu = sum_j b_j delta_{y_j}`` (module docstring: sort and quantile paths). Equal sizes without weights use
    the sort path; anything else the quantile path. Weights are normalised to sum to one per row (negative
    weights or a zero total raise).

    Args:
        x: ``(..., N)`` atoms of the first measures; ``y``: ``(..., M)``, same leading shape.
        x_weights: ``(..., N)`` non-negative masses, uniform when None.
        y_weights: ``(..., M)`` likewise.
        p: order ``>= 1``.
        root: return ``W_p`` (default) or ``W_p^p`` when False.

    Returns:
        ``(...)`` tensor; differentiable in ``x``, ``y`` and the weights. NaN/Inf atoms raise while value checks
        are on; inside ``geomot.data_checks(False)`` a row with a NaN atom gives NaN (value and gradient), an
        infinite atom or an overflow ``inf`` or NaN, never a finite number.
    """
    x = check_float_tensor(x, "x", ndim=tuple(range(1, 9)))
    y = check_float_tensor(y, "y", ndim=tuple(range(1, 9)))
    p = check_positive(p, "p", at_least=1.0)
    if x.shape[:-1] != y.shape[:-1]:
        raise ShapeError(f"y: expected leading shape {tuple(x.shape[:-1])} (that of x), got {tuple(y.shape[:-1])}")
    if x.dtype != y.dtype or x.device != y.device:
        raise ShapeError(f"y: expected dtype {x.dtype} and device {x.device} (those of x), got {y.dtype}, {y.device}")
    xw = None if x_weights is None else check_weights(x_weights, "x_weights", shape=tuple(x.shape))
    yw = None if y_weights is None else check_weights(y_weights, "y_weights", shape=tuple(y.shape))
    if xw is None and yw is None and x.shape[-1] == y.shape[-1]:
        power = sorted_power(x, y, p)
    else:
        xs, xc = _sorted_with_cum(x, xw)
        ys, yc = _sorted_with_cum(y, yw)
        power = quantile_power(xs, xc, ys, yc, p)
    return safe_root(power, p) if root else power


def _sorted_with_cum(v: torch.Tensor, w: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted values and cumulative weights in the sorted order (uniform when ``w`` is None)."""
    if w is None:
        vs = sort_values(v)
        n = v.shape[-1]
        cum = torch.arange(1, n + 1, dtype=v.dtype, device=v.device) / n
        return vs, cum.expand_as(vs)
    vs, idx = sort_last(v)
    return vs, torch.cumsum(w.gather(-1, idx), dim=-1)
