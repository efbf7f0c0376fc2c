"""Batched products of a large block with a narrow factor, in the form MKL runs fast on CPU.

MKL's batched product with a narrow right factor (a few columns) is slow, and very slow when the block is a
transposed view: at ``N = 2,048``, ``M = 20,480``, ``K = 5`` the product with ``mat^T`` takes 6x longer than the
same product written with a narrow left factor (1.3x for ``mat`` itself; 2-10x for one-column products of batches
of 2-16 blocks; equal for one column and one item). The narrow-left form reads the block row by row. On CUDA
both forms cost the same.
"""

from __future__ import annotations

import torch

__all__ = ["gemv", "narrow_bmm"]


def narrow_bmm(mat: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """``mat (B, N, M) @ rhs (B, M, K) -> (B, N, K)`` for a narrow ``rhs`` (small ``K``), computed as
    ``(rhs^T mat^T)^T``."""
    return torch.bmm(rhs.transpose(1, 2).contiguous(), mat.transpose(1, 2)).transpose(1, 2)


def gemv(mat: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``mat (B, N, M) @ v (B, M) -> (B, N)`` (batched matrix-vector product), as the row vector ``v^T mat^T``."""
    return torch.bmm(v.unsqueeze(1), mat.transpose(1, 2)).squeeze(1)
