"""k-nearest neighbours between (batched, ragged) point sets with bounded memory.

The neighbour *indices* are found without gradient by one of the backends of :data:`KNN_BACKENDS`; the squared
distances are then recomputed in torch from the gathered neighbours, ``d_bij = |x_bi - y_{b, idx_bij}|^2``, so
every backend gives the same differentiable result (gradients reach ``x`` and ``y`` through ``dists``).

Backends:
    - ``"torch"``: blocks of ``chunk_size`` query rows against all of ``y``; ``|x|^2 + |y|^2 - 2 <x, y>`` by a
      batched matmul, then ``argmin`` (``k = 1``) or ``topk``. Memory ``O(B * chunk_size * M)``, never ``N x M``.
    - ``"kdtree"``: :class:`scipy.spatial.cKDTree` per batch item (CPU); ``O((N + M) log M)``, the fastest choice
      on CPU for large low-dimensional sets.
    - ``"pytorch3d"``: ``pytorch3d.ops.knn_points`` (CUDA kernels), imported lazily.
    - ``"triton"``: one streaming Triton kernel (:func:`geomot.ops._triton_kernels.knn_triton`) for ``D <= 8`` and
      ``k <= 16``: each program keeps the ``k`` best of a block of queries in registers while it streams over
      ``y``; ``O(B N M (D + k))`` work and ``O(B (N + M))`` memory. CUDA tensors, or CPU tensors under
      ``TRITON_INTERPRET=1`` (Triton's interpreter, for tests).
    - ``"auto"``: Triton on CUDA when :func:`geomot._core.accel.triton_usable` allows it (``D <= 8``,
      ``k <= 16``), else pytorch3d on CUDA when importable; the k-d tree on CPU for ``D <= 8`` and more than
      :data:`KDTREE_MIN_PAIRS` point pairs, else torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from geomot._core.accel import triton_usable
from geomot._core.batch import block_rows, mask_from_lengths, to_batched
from geomot._core.checks import check_finite, check_float_tensor
from geomot._core.errors import MissingDependencyError, ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.ops._triton_kernels import KNN_MAX_DIM, KNN_MAX_K, knn_triton

__all__ = ["KDTREE_MIN_PAIRS", "KNN_BACKENDS", "KNNResult", "knn_gather", "knn_points"]

#: ``auto`` switches to the k-d tree on CPU when ``B * N * M`` exceeds this (see benchmarks/bench_chamfer.py).
KDTREE_MIN_PAIRS = 1_000_000

KNN_BACKENDS: Registry[Callable[..., torch.Tensor]] = Registry("knn backend")


class KNNResult(NamedTuple):
    """Result of :func:`knn_points` (shapes for batched input; the batch axis is dropped for ``(N, D)`` input).

    Attributes:
        dists: ``(B, N, k)`` squared Euclidean distances, ascending along the last axis; 0 on padded rows of x.
        idx: ``(B, N, k)`` int64 indices into ``y``; 0 on padded rows of x.
        knn: ``(B, N, k, D)`` the neighbours ``y[idx]`` when ``return_nn=True``, else None.
    """

    dists: torch.Tensor
    idx: torch.Tensor
    knn: torch.Tensor | None


def _rescaled(
    x: torch.Tensor, y: torch.Tensor, xmask: torch.Tensor, ymask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x / s_b``, ``y / s_b`` with ``s_b`` the power of two nearest the largest finite coordinate of item ``b``
    (padding zeroed): the order of the distances is unchanged, and ``|x|^2 - 2 <x, y> + |y|^2`` cannot overflow
    for coordinates near the top of the dtype's range (float32 ``1e20``)."""
    x = x.masked_fill(~xmask[..., None], 0.0)
    y = y.masked_fill(~ymask[..., None], 0.0)

    def finite_max(t: torch.Tensor) -> torch.Tensor:
        return torch.nan_to_num(t.abs(), nan=0.0, posinf=0.0, neginf=0.0).amax(dim=(1, 2))

    m = torch.maximum(finite_max(x), finite_max(y))
    s = torch.where(m > 0, torch.exp2(torch.floor(torch.log2(torch.where(m > 0, m, torch.ones_like(m))))), 1.0)
    return x / s[:, None, None], y / s[:, None, None]


@KNN_BACKENDS.register("torch")
def _knn_torch(
    x: torch.Tensor, y: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, k: int, chunk_size: int
) -> torch.Tensor:
    """Indices ``(B, N, k)`` by blocked brute force (no grad)."""
    B, N, _ = x.shape
    M = y.shape[1]
    ymask = mask_from_lengths(y_lengths, M)
    x, y = _rescaled(x, y, mask_from_lengths(x_lengths, N), ymask)
    y2 = (y * y).sum(-1).masked_fill(~ymask, math.inf)  # (B, M): padding never wins
    out = torch.empty((B, N, k), dtype=torch.long, device=x.device)
    yt = y.transpose(1, 2)
    for s in range(0, N, chunk_size):
        xc = x[:, s : s + chunk_size]
        d = torch.baddbmm(y2[:, None, :], xc, yt, alpha=-2.0)  # |y|^2 - 2 <x, y>; |x|^2 does not change the order
        if k == 1:  # one pass over the block (topk is 2-3x slower on CUDA)
            out[:, s : s + chunk_size, 0] = d.argmin(-1)
        else:
            out[:, s : s + chunk_size] = torch.topk(d, k, dim=-1, largest=False, sorted=True).indices
    return out


@KNN_BACKENDS.register("kdtree")
def _knn_kdtree(
    x: torch.Tensor, y: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, k: int, chunk_size: int
) -> torch.Tensor:
    """Indices ``(B, N, k)`` from one :class:`scipy.spatial.cKDTree` per item (CPU, float64)."""
    import numpy as np
    from scipy.spatial import cKDTree

    B, N, _ = x.shape
    out = np.zeros((B, N, k), dtype=np.int64)
    # the tree needs finite coordinates; knn_points turns the results of non-finite points into NaN afterwards
    xs = np.nan_to_num(x.detach().cpu().double().numpy(), nan=0.0, posinf=0.0, neginf=0.0)
    ys = np.nan_to_num(y.detach().cpu().double().numpy(), nan=0.0, posinf=0.0, neginf=0.0)
    for b, (nx, ny) in enumerate(zip(x_lengths.tolist(), y_lengths.tolist())):
        _, ii = cKDTree(ys[b, :ny]).query(xs[b, :nx], k=k, workers=-1)
        out[b, :nx] = np.asarray(ii).reshape(nx, k)
    return torch.from_numpy(out).to(x.device)


@KNN_BACKENDS.register("pytorch3d")
def _knn_pytorch3d(
    x: torch.Tensor, y: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, k: int, chunk_size: int
) -> torch.Tensor:
    """Indices ``(B, N, k)`` from ``pytorch3d.ops.knn_points``."""
    try:
        from pytorch3d.ops import knn_points as p3d_knn
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise MissingDependencyError("backend='pytorch3d' needs pytorch3d (pip install geomot[pytorch3d])") from e
    return p3d_knn(x, y, lengths1=x_lengths, lengths2=y_lengths, K=k, return_nn=False).idx


@KNN_BACKENDS.register("triton")
def _knn_triton(
    x: torch.Tensor, y: torch.Tensor, x_lengths: torch.Tensor, y_lengths: torch.Tensor, k: int, chunk_size: int
) -> torch.Tensor:
    """Indices ``(B, N, k)`` from the streaming Triton kernel (coordinates rescaled first, as for torch)."""
    if not triton_usable(x):
        raise ValidationError(
            f"backend: 'triton' needs CUDA tensors and triton (or TRITON_INTERPRET=1 for CPU), got {x.device}"
        )
    xs, ys = _rescaled(x, y, mask_from_lengths(x_lengths, x.shape[1]), mask_from_lengths(y_lengths, y.shape[1]))
    return knn_triton(xs, ys, x_lengths, y_lengths, k)[1]


def _has_pytorch3d() -> bool:
    try:
        import pytorch3d.ops  # noqa: F401
    except ImportError:
        return False
    return True


def _auto_backend(x: torch.Tensor, y: torch.Tensor, k: int) -> str:
    if x.is_cuda and x.shape[-1] <= KNN_MAX_DIM and k <= KNN_MAX_K and triton_usable(x):
        return "triton"
    if x.is_cuda:
        return "pytorch3d" if _has_pytorch3d() else "torch"
    if x.device.type == "cpu" and x.shape[-1] <= 8 and x.shape[0] * x.shape[1] * y.shape[1] > KDTREE_MIN_PAIRS:
        return "kdtree"
    return "torch"


def knn_gather(y: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Gather neighbours: ``out[b, i, j] = y[b, idx[b, i, j]]``.

    Args:
        y: ``(B, M, D)``.
        idx: ``(B, N, k)`` int64 indices in ``[0, M)``.

    Returns:
        ``(B, N, k, D)``, differentiable with respect to ``y``.
    """
    B, N, k = idx.shape
    D = y.shape[-1]
    flat = idx.reshape(B, N * k, 1).expand(B, N * k, D)
    return y.gather(1, flat).reshape(B, N, k, D)


def knn_points(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    k: int = 1,
    x_lengths: torch.Tensor | None = None,
    y_lengths: torch.Tensor | None = None,
    return_nn: bool = False,
    chunk_size: int | None = None,
    backend: str = "auto",
) -> KNNResult:
    """The ``k`` nearest points of ``y`` to every point of ``x`` in squared Euclidean distance.

    ``idx_bi = argsort_j |x_bi - y_bj|^2 [:k]`` over the first ``y_lengths[b]`` points of ``y``, and
    ``dists_bij = |x_bi - y_{b, idx_bij}|^2``, recomputed in torch so that gradients flow to ``x`` and ``y``
    whatever the backend.

    Args:
        x: ``(N, D)`` queries or ``(B, N, D)`` padded queries.
        y: ``(M, D)`` or ``(B, M, D)`` points searched (same rank, dtype and device as ``x``).
        k: number of neighbours, ``1 <= k <= min(y_lengths)``.
        x_lengths: ``(B,)`` int64 sizes of the items of a padded ``x``.
        y_lengths: ``(B,)`` int64 sizes of the items of a padded ``y``.
        return_nn: also return the neighbours' coordinates.
        chunk_size: query rows per block for the torch backend; the default keeps a block under ``2^22`` entries on
            the CPU and ``2^26`` on CUDA (``geomot._core.batch.BLOCK_ENTRIES``).
        backend: ``"auto"``, or a name of :data:`KNN_BACKENDS` (``"torch"``, ``"kdtree"``, ``"pytorch3d"``,
            ``"triton"``); see the module docstring.

    Returns:
        a :class:`KNNResult` ``(dists (B, N, k), idx (B, N, k), knn (B, N, k, D) | None)``; the batch axis is
        dropped for ``(N, D)`` inputs. Ties are broken arbitrarily (backends may differ on exact ties).
        Non-finite coordinates (reachable with ``geomot.data_checks(False)``) give NaN/Inf distances, never a
        finite one: a NaN/Inf query gets non-finite ``dists``, and a NaN/Inf point in ``y`` item ``b`` makes every
        distance of that item NaN. Coordinates near the top of the dtype's range are rescaled for the search, so an
        overflow gives ``inf``, not a wrong neighbour.

    Raises:
        ShapeError: ranks, dimensions, batch sizes, dtypes or devices that do not match; empty inputs.
        ValidationError: NaN/Inf coordinates, ``k`` out of range, bad ``chunk_size``, unknown backend.
    """
    check_float_tensor(x, "x", ndim=(2, 3), finite=False)
    check_float_tensor(y, "y", ndim=(2, 3), finite=False)
    if x.dim() != y.dim():
        raise ShapeError(f"y: expected a {x.dim()}-D tensor like x {tuple(x.shape)}, got shape {tuple(y.shape)}")
    if x.shape[-1] != y.shape[-1]:
        raise ShapeError(f"y: expected last dimension {x.shape[-1]} (that of x), got shape {tuple(y.shape)}")
    if y.dtype != x.dtype or y.device != x.device:
        raise ShapeError(f"y: expected dtype {x.dtype} on {x.device} (that of x), got {y.dtype} on {y.device}")
    xb, xl, batched = to_batched(x, "x", x_lengths)
    yb, yl, _ = to_batched(y, "y", y_lengths)
    if xb.shape[0] != yb.shape[0]:
        raise ShapeError(f"y: expected batch size {xb.shape[0]} (that of x), got shape {tuple(y.shape)}")
    xmask = mask_from_lengths(xl, xb.shape[1])
    check_finite(xb[xmask], "x")
    check_finite(yb[mask_from_lengths(yl, yb.shape[1])], "y")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValidationError(f"k: expected a positive integer, got {k!r}")
    if k > int(yl.min()):
        raise ValidationError(f"k: expected k <= the smallest y length {int(yl.min())}, got k={k}")
    B, M = xb.shape[0], yb.shape[1]
    if chunk_size is None:
        chunk_size = block_rows(B * M, xb.device)
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError(f"chunk_size: expected a positive integer, got {chunk_size!r}")
    name = _auto_backend(xb, yb, k) if backend == "auto" else backend
    fn = KNN_BACKENDS.get(name, arg="backend")
    with torch.no_grad():
        idx = fn(xb.detach(), yb.detach(), xl, yl, k, chunk_size)
    idx = idx.masked_fill(~xmask[..., None], 0)
    nn = knn_gather(yb, idx)
    dists = ((xb[:, :, None, :] - nn) ** 2).sum(-1)
    # a set with a non-finite point has no defined nearest neighbour: NaN for every query (no host sync)
    y_bad = (~torch.isfinite(yb).all(-1) & mask_from_lengths(yl, M)).any(-1)
    dists = torch.where(y_bad[:, None, None], torch.full_like(dists, math.nan), dists)
    dists = dists.masked_fill(~xmask[..., None], 0.0)
    if not batched:
        return KNNResult(dists[0], idx[0], nn[0] if return_nn else None)
    return KNNResult(dists, idx, nn if return_nn else None)
