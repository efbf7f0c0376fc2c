"""The ``reduction="mean"|"sum"|"none"`` argument shared by every loss and metric (house style point 3)."""

from __future__ import annotations

import torch

from geomot._core.errors import ValidationError

__all__ = ["REDUCTIONS", "check_reduction", "reduce"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: object, name: str = "reduction") -> str:
    """Raise :class:`ValidationError` unless ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``."""
    if reduction not in REDUCTIONS:
        raise ValidationError(f"{name}: expected 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def reduce(values: torch.Tensor, reduction: str, *, batched: bool = True) -> torch.Tensor:
    """Reduce per-item values ``(B,)``: mean, sum, or ``"none"`` (``(B,)``, or a 0-d tensor when the input was an
    unbatched ``(N, D)`` tensor, ``batched=False``, so that outputs mirror inputs)."""
    check_reduction(reduction)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values if batched else values[0]
