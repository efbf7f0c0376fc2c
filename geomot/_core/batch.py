"""Ragged batches: padded ``(B, N, D)`` + ``lengths (B,)`` <-> packed ``(sum N, D)`` <-> list of ``(N_b, D)``.

The padded layout is the working layout of every batched computation in geomot (PyTorch3D's convention).
Padding entries hold ``pad_value`` and are excluded through :func:`mask_from_lengths`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geomot._core.checks import check_lengths, describe
from geomot._core.errors import ShapeError

__all__ = [
    "block_rows",
    "list_to_padded",
    "mask_from_lengths",
    "packed_to_padded",
    "padded_to_list",
    "padded_to_packed",
    "to_batched",
]


def mask_from_lengths(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, max_len)`` boolean mask, True on the first ``lengths[b]`` entries of row b."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def list_to_padded(items: Sequence[torch.Tensor], *, pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack tensors of shapes ``(N_b, *F)`` into ``(B, max N_b, *F)``; return it with ``lengths (B,)``.

    Differentiable with respect to each item.
    """
    if len(items) == 0:
        raise ShapeError("list_to_padded: expected at least one tensor, got an empty list")
    first = items[0]
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise ShapeError(f"items[{i}]: expected a tensor, got {describe(t)}")
        if t.shape[1:] != first.shape[1:] or t.dtype != first.dtype or t.device != first.device:
            raise ShapeError(
                f"items[{i}]: expected trailing shape {tuple(first.shape[1:])}, dtype {first.dtype}, "
                f"device {first.device}; got {describe(t)}"
            )
    lengths = torch.tensor([t.shape[0] for t in items], dtype=torch.long, device=first.device)
    if all(t.shape[0] == first.shape[0] for t in items):
        return torch.stack(list(items)), lengths
    padded = torch.nn.utils.rnn.pad_sequence(list(items), batch_first=True, padding_value=pad_value)
    return padded, lengths


def padded_to_list(padded: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """Inverse of :func:`list_to_padded`."""
    return [padded[b, : int(n)] for b, n in enumerate(lengths.tolist())]


def padded_to_packed(padded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, N, *F)`` + lengths -> ``(sum lengths, *F)``."""
    mask = mask_from_lengths(lengths, padded.shape[1])
    return padded[mask]


def packed_to_padded(
    packed: torch.Tensor, lengths: torch.Tensor, *, pad_value: float = 0.0
) -> torch.Tensor:
    """``(sum lengths, *F)`` -> ``(B, max lengths, *F)``."""
    if int(lengths.sum()) != packed.shape[0]:
        raise ShapeError(
            f"packed: expected {int(lengths.sum())} rows (the sum of lengths), got {packed.shape[0]}"
        )
    n_max = int(lengths.max()) if lengths.numel() else 0
    out = packed.new_full((lengths.shape[0], n_max, *packed.shape[1:]), pad_value)
    mask = mask_from_lengths(lengths, n_max)
    return out.masked_scatter(mask.view(*mask.shape, *([1] * (packed.dim() - 1))), packed)


def to_batched(
    x: torch.Tensor, name: str, lengths: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Accept ``(N, D)`` or ``(B, N, D)`` (+ optional lengths) at the public edge.

    Returns:
        ``(padded (B, N, D), lengths (B,), was_batched)``; callers use ``was_batched`` to make the output mirror
        the input.
    """
    if x.dim() == 2:
        if lengths is not None:
            raise ShapeError(f"{name}_lengths: only valid with a batched (B, N, D) {name}, got shape {tuple(x.shape)}")
        return x.unsqueeze(0), torch.full((1,), x.shape[0], dtype=torch.long, device=x.device), False
    if x.dim() != 3:
        raise ShapeError(f"{name}: expected a (N, D) or (B, N, D) tensor, got shape {tuple(x.shape)}")
    if lengths is None:
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
    else:
        lengths = check_lengths(lengths, f"{name}_lengths", batch=x.shape[0], max_len=x.shape[1], device=x.device)
    return x, lengths, True


#: Entries of one block of a blocked pairwise computation (``rows x columns x batch``). On the CPU a block should stay
#: in cache; on CUDA every block costs a handful of kernel launches, so small blocks leave the GPU waiting for the
#: host (benchmarks/bench_cuda.py: the varifold distance on 20,480 faces takes 330 ms with CPU-sized blocks and 40 ms
#: with these, on an H200). A CUDA block of ``2^26`` float32 entries is 256 MiB.
BLOCK_ENTRIES = {"cpu": 1 << 22, "cuda": 1 << 26}


def block_rows(row_entries: int, device: torch.device) -> int:
    """Rows per block when one row holds ``row_entries`` entries: ``BLOCK_ENTRIES[device] // row_entries``, at
    least 1 (other devices use the CPU budget)."""
    return max(1, BLOCK_ENTRIES.get(device.type, BLOCK_ENTRIES["cpu"]) // max(1, row_entries))
