"""``argmin`` along the last or the middle axis of a CPU float tensor with torch's exact result, faster.

torch's ``argmin`` on CPU is a scalar loop (about 1.5 ns a value along rows of 5,000 values, twice that along a
middle axis), while its ``amin`` is vectorised (about 0.1 ns a value). Long rows (at least :data:`TWO_LEVEL_MIN`
values) go in two levels, in torch: the ``amin`` of each chunk of 64 values, ``argmin`` over the chunk minima
(64 times fewer values), then ``argmin`` within the chosen chunk; every pass is parallel. Shorter rows, with numba
installed: the row minima from ``amin``, then a compiled scan for the first column equal to the minimum (half a
row on average). Along the middle axis (numba): a branch-free sweep from the last row to the first that keeps
the smallest row index equal to each column's minimum. Same indices as ``torch.argmin``: the first minimum, the
first NaN of a row (column) that holds one (``amin`` propagates NaN; the middle-axis sweep leaves such columns to
torch); ``-0.0`` and ``+0.0`` compare equal. Without numba (or with ``GEOMOT_NUMBA=0``), on other devices and for
other dtypes the short rows and the middle axis use ``torch.argmin``. The kernels release the GIL and run on the
calling thread.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from geomot._core.accel import numba_available

__all__ = ["TWO_LEVEL_MIN", "argmin_along", "row_argmin"]

TWO_LEVEL_MIN = 2048  # rows at least this long go in two levels (measured faster than the scan from here)
_CHUNK = 64  # values per chunk of the two-level argmin


@functools.cache
def _kernels() -> tuple[Any, Any] | None:
    """The compiled scans ``(rows, middle)``, or None without numba (imported on first use, not with geomot)."""
    if not numba_available():
        return None
    import numba

    jit = numba.njit(nogil=True, cache=True, boundscheck=False)

    @jit
    def first_in_rows(a, m, out):  # pragma: no cover - compiled
        for i in range(a.shape[0]):
            target = m[i]
            found = 0
            if target == target:
                for j in range(a.shape[1]):
                    if a[i, j] == target:
                        found = j
                        break
            else:  # the row holds a NaN: torch.argmin returns the first one
                for j in range(a.shape[1]):
                    if a[i, j] != a[i, j]:
                        found = j
                        break
            out[i] = found

    @jit
    def first_in_columns(a, m, out):  # pragma: no cover - compiled
        n_rows = a.shape[1]
        for b in range(a.shape[0]):
            ob, mb = out[b], m[b]
            for j in range(ob.shape[0]):
                ob[j] = n_rows
            for s in range(n_rows - 1, -1, -1):  # the last write is the first row with the minimum
                row = a[b, s]
                for j in range(ob.shape[0]):
                    ob[j] = s if row[j] == mb[j] else ob[j]

    return first_in_rows, first_in_columns


def _compiled(a: torch.Tensor) -> tuple[Any, Any] | None:
    if a.device.type != "cpu" or a.dtype not in (torch.float32, torch.float64) or not a.is_contiguous():
        return None
    return _kernels()


def _two_level(a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``torch.argmin(a, 1)`` by chunk minima: the first chunk holding the row's minimum (or its first NaN) holds
    its first occurrence. The last, shorter chunk is padded with copies of the last column, which come after it."""
    n_cols = a.shape[1]
    full = n_cols - n_cols % _CHUNK
    mins = torch.amin(a[:, :full].unflatten(1, (full // _CHUNK, _CHUNK)), 2)
    if full < n_cols:
        mins = torch.cat([mins, torch.amin(a[:, full:], 1, keepdim=True)], 1)
    start = torch.argmin(mins, 1) * _CHUNK
    cols = (start[:, None] + torch.arange(_CHUNK, device=a.device)).clamp_max(n_cols - 1)
    return torch.add(start, torch.argmin(torch.take_along_dim(a, cols, 1), 1), out=out)


def row_argmin(a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``torch.argmin(a, 1)`` of ``a (R, C)`` written into ``out (R,)`` int64 (contiguous), returned."""
    if a.device.type != "cpu" or a.dtype not in (torch.float32, torch.float64) or a.requires_grad:
        return torch.argmin(a, 1, out=out)
    if a.shape[1] >= TWO_LEVEL_MIN:
        return _two_level(a, out)
    kernels = _compiled(a)
    if kernels is None or a.shape[1] == 0 or not out.is_contiguous():
        return torch.argmin(a, 1, out=out)
    kernels[0](a.numpy(), torch.amin(a, 1).numpy(), out.numpy())
    return out


def argmin_along(a: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.argmin(a, dim)`` of ``a (B, S, Y)`` for ``dim`` 1 or 2 (``(B, Y)`` or ``(B, S)`` int64)."""
    a = a.detach()
    kernels = _compiled(a)
    if kernels is None or a.dim() != 3 or dim not in (1, 2) or a.shape[dim] == 0:
        return torch.argmin(a, dim)
    if dim == 2:
        out = torch.empty(a.shape[:2], dtype=torch.long)
        row_argmin(a.view(-1, a.shape[2]), out.view(-1))
        return out
    mins = torch.amin(a, 1)
    if bool(torch.isnan(mins).any()):  # the first NaN of a column: left to torch
        return torch.argmin(a, 1)
    out = torch.empty(mins.shape, dtype=torch.long)
    kernels[1](a.numpy(), mins.numpy(), out.numpy())
    return out
