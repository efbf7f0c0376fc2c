"""Input validation. Each check raises a :mod:`geomot._core.errors` class whose message names the argument,
what was expected and what was received. Checks never assert and never cast silently.

Checks of shapes, dtypes and devices cost nothing. Checks of the *values* (NaN/Inf, negative or zero weights,
lengths and indices out of range) read a reduction back to the host, i.e. they synchronise with a CUDA device.
:func:`data_checks` switches those off for a block of code, e.g. an inner training loop on the GPU whose inputs are
known to be valid; everything else is still checked.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator, Sequence

import torch

from geomot._core.errors import ShapeError, ValidationError

__all__ = [
    "check_finite",
    "check_float_tensor",
    "check_index_tensor",
    "check_int",
    "check_lengths",
    "check_positive",
    "check_same_device",
    "check_weights",
    "data_checks",
    "data_checks_enabled",
    "describe",
]

_STATE = threading.local()


def data_checks_enabled() -> bool:
    """Whether the value checks (which synchronise with a CUDA device) run in this thread (default: True)."""
    return getattr(_STATE, "enabled", True)


@contextlib.contextmanager
def data_checks(enabled: bool) -> Iterator[None]:
    """Turn the value checks on or off in this thread inside a ``with`` block.

    With ``enabled=False`` NaN/Inf inputs, negative weights, zero total masses and out-of-range lengths or indices
    are no longer detected (results are then undefined), and the losses run without host synchronisation on CUDA.

    Example:
        >>> with geomot.data_checks(False):
        ...     loss = geomot.sliced_wasserstein(x, y)  # no device-to-host copy on CUDA
    """
    previous = data_checks_enabled()
    _STATE.enabled = bool(enabled)
    try:
        yield
    finally:
        _STATE.enabled = previous


def describe(x: object) -> str:
    """Short description of a value for error messages: shape, dtype and device of a tensor."""
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device}"
    return f"{type(x).__name__}"


def check_float_tensor(
    x: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    last_dim: int | None = None,
    finite: bool = True,
    allow_empty: bool = False,
) -> torch.Tensor:
    """Check that ``x`` is a floating-point tensor of the given rank / last dimension, finite and non-empty.

    Args:
        x: the value to check.
        name: the argument's name, used in messages.
        ndim: accepted number(s) of dimensions.
        last_dim: required size of the last dimension.
        finite: reject NaN / Inf entries.
        allow_empty: accept tensors with zero elements.

    Returns:
        ``x`` unchanged.
    """
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor, got {describe(x)}")
    if not x.is_floating_point():
        raise ShapeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if ndim is not None:
        dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in dims:
            want = " or ".join(f"{d}-D" for d in dims)
            raise ShapeError(f"{name}: expected a {want} tensor, got shape {tuple(x.shape)}")
    if last_dim is not None and (x.dim() == 0 or x.shape[-1] != last_dim):
        raise ShapeError(f"{name}: expected last dimension {last_dim}, got shape {tuple(x.shape)}")
    if not allow_empty and x.numel() == 0:
        raise ShapeError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if finite:
        check_finite(x, name)
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise :class:`ValidationError` if ``x`` holds NaN or Inf (one reduction; no host sync on success is
    impossible, so this is used at the public edge only)."""
    if x.numel() and data_checks_enabled() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValidationError(f"{name}: contains {n_bad} NaN/Inf value(s) (shape {tuple(x.shape)})")
    return x


def check_index_tensor(x: object, name: str, *, size: int | None = None, ncols: int | None = None) -> torch.Tensor:
    """Check an integer index tensor (e.g. faces) with entries in ``[0, size)``."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"{name}: expected a torch.Tensor of integers, got {describe(x)}")
    if x.is_floating_point() or x.dtype == torch.bool or x.is_complex():
        raise ShapeError(f"{name}: expected an integer tensor, got dtype {x.dtype}")
    if ncols is not None and (x.dim() < 1 or x.shape[-1] != ncols):
        raise ShapeError(f"{name}: expected last dimension {ncols}, got shape {tuple(x.shape)}")
    if x.numel() and size is not None and data_checks_enabled():
        lo, hi = int(x.min()), int(x.max())
        if lo < 0:
            raise ValidationError(f"{name}: negative index {lo} (indices must lie in [0, {size}))")
        if hi >= size:
            raise ValidationError(f"{name}: index {hi} out of range for {size} vertices")
    return x


def check_lengths(lengths: object, name: str, *, batch: int, max_len: int, device: torch.device) -> torch.Tensor:
    """Check a ``(B,)`` integer tensor of item sizes with ``1 <= lengths[b] <= max_len``."""
    if not isinstance(lengths, torch.Tensor):
        raise ShapeError(f"{name}: expected a (B,) integer tensor, got {describe(lengths)}")
    if lengths.is_floating_point() or lengths.dim() != 1 or lengths.shape[0] != batch:
        raise ShapeError(f"{name}: expected an integer tensor of shape ({batch},), got {describe(lengths)}")
    if lengths.device != device:
        raise ShapeError(f"{name}: expected device {device}, got {lengths.device}")
    if lengths.numel() and data_checks_enabled():
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > max_len:
            raise ValidationError(f"{name}: values must lie in [1, {max_len}], got min {lo} and max {hi}")
    return lengths.long()


def check_same_device(**tensors: torch.Tensor | None) -> torch.device:
    """Check that all the given (named) tensors live on one device; return it."""
    items = [(k, v) for k, v in tensors.items() if isinstance(v, torch.Tensor)]
    if not items:
        raise ValidationError("check_same_device: no tensor given")
    dev = items[0][1].device
    for k, v in items[1:]:
        if v.device != dev:
            raise ShapeError(f"{k}: expected device {dev} (that of {items[0][0]}), got {v.device}")
    return dev


def check_int(value: object, name: str, *, at_least: int) -> int:
    """Check an integer hyperparameter (a Python ``int``, not a ``bool``) ``>= at_least``; return it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < at_least:
        raise ValidationError(f"{name}: expected an integer >= {at_least}, got {value!r}")
    return value


def check_positive(value: float, name: str, *, strict: bool = True, at_least: float | None = None) -> float:
    """Check a scalar hyperparameter: finite and ``> 0`` (``>= 0`` if not strict), or ``>= at_least``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValidationError(f"{name}: expected a finite number, got {value!r}")
    if at_least is not None:
        if v < at_least:
            raise ValidationError(f"{name}: expected a value >= {at_least}, got {value!r}")
    elif (strict and v <= 0) or (not strict and v < 0):
        raise ValidationError(f"{name}: expected a {'positive' if strict else 'non-negative'} value, got {value!r}")
    return v


def check_weights(
    w: object,
    name: str,
    *,
    shape: tuple[int, ...],
    mask: torch.Tensor | None = None,
    normalize: bool = True,
    rtol: float = 1e-4,
) -> torch.Tensor:
    """Check a weight tensor: float, the given shape, finite, non-negative, positive total mass.

    With ``normalize=True`` each item is divided by its sum (so unnormalised masses are accepted); with
    ``normalize=False`` weights whose sum differs from 1 by more than ``rtol`` are rejected. Entries outside
    ``mask`` (padding) are set to zero.
    """
    w = check_float_tensor(w, name, allow_empty=True)
    if tuple(w.shape) != tuple(shape):
        raise ShapeError(f"{name}: expected shape {tuple(shape)}, got {tuple(w.shape)}")
    if mask is not None:
        w = w.masked_fill(~mask, 0.0)
    total = w.sum(-1, keepdim=True)
    if not data_checks_enabled():
        return w / total if normalize else w
    if w.numel() and bool((w < 0).any()):
        raise ValidationError(f"{name}: weights must be non-negative, got min {float(w.min()):.3g}")
    if bool((total <= 0).any()):
        raise ValidationError(f"{name}: every item needs a positive total mass, got a sum of 0")
    if normalize:
        return w / total
    if bool(((total - 1).abs() > rtol).any()):
        raise ValidationError(f"{name}: weights must sum to 1 per item, got sums {total.flatten().tolist()[:4]}")
    return w
