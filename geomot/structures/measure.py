"""Batched discrete probability measures: ``mu_b = sum_i weights[b, i] delta_{support[b, i]}``."""

from __future__ import annotations

import torch

from geomot._core.batch import list_to_padded, mask_from_lengths, padded_to_list
from geomot._core.checks import check_float_tensor, check_lengths, check_weights
from geomot._core.errors import ShapeError

__all__ = ["Measure"]


class Measure:
    """A batch of ``B`` discrete probability measures on ``R^D`` in the padded layout.

    Attributes:
        support: ``(B, N, D)`` atom positions (padding rows are ignored).
        weights: ``(B, N)`` non-negative masses, zero on padding, summing to 1 per item.
        lengths: ``(B,)`` int64 number of atoms of each item.

    Construction validates once (finite support, non-negative weights, positive mass) and normalises the
    weights of each item to sum to one (pass ``normalize=False`` to require that instead). Measures are
    immutable; gradients flow to ``support`` and ``weights``.

    Args:
        support: ``(N, D)``, ``(B, N, D)`` or a list of ``(N_b, D)`` tensors.
        weights: matching ``(N,)``, ``(B, N)`` or list of ``(N_b,)``; uniform when None.
        lengths: ``(B,)`` sizes for a padded ``support``.
        normalize: divide each item's weights by their sum (default) or reject sums other than 1.
    """

    __slots__ = ("_lengths", "_mask", "_support", "_weights")

    def __init__(
        self,
        support: torch.Tensor | list[torch.Tensor],
        weights: torch.Tensor | list[torch.Tensor] | None = None,
        *,
        lengths: torch.Tensor | None = None,
        normalize: bool = True,
    ) -> None:
        if isinstance(support, (list, tuple)):
            if lengths is not None:
                raise ShapeError("lengths: not accepted with a list of supports (the list gives the lengths)")
            for i, s in enumerate(support):
                check_float_tensor(s, f"support[{i}]", ndim=2)
            support, lengths = list_to_padded(list(support))
            if weights is not None:
                if not isinstance(weights, (list, tuple)) or len(weights) != len(lengths):
                    raise ShapeError(f"weights: expected a list of {len(lengths)} tensors to match the support list")
                weights = list_to_padded(list(weights))[0]
        else:
            support = check_float_tensor(support, "support", ndim=(2, 3), finite=False)
            if support.dim() == 2:
                if lengths is not None:
                    raise ShapeError("lengths: only valid with a batched (B, N, D) support")
                support = support.unsqueeze(0)
                if weights is not None:
                    if not isinstance(weights, torch.Tensor) or weights.dim() != 1:
                        raise ShapeError(
                            f"weights: expected shape ({support.shape[1]},) for a (N, D) support, "
                            f"got {tuple(getattr(weights, 'shape', ()))}"
                        )
                    weights = weights.unsqueeze(0)
        B, N, _ = support.shape
        if lengths is None:
            lengths = torch.full((B,), N, dtype=torch.long, device=support.device)
        else:
            lengths = check_lengths(lengths, "lengths", batch=B, max_len=N, device=support.device)
        mask = mask_from_lengths(lengths, N)
        check_float_tensor(support[mask], "support")
        if weights is None:
            weights = mask.to(support.dtype) / lengths[:, None].to(support.dtype)
        else:
            if isinstance(weights, torch.Tensor) and weights.device != support.device:
                raise ShapeError(f"weights: expected device {support.device}, got {weights.device}")
            if isinstance(weights, torch.Tensor) and weights.is_floating_point() and weights.dtype != support.dtype:
                raise ShapeError(f"weights: expected dtype {support.dtype} (that of support), got {weights.dtype}")
            weights = check_weights(weights, "weights", shape=(B, N), mask=mask, normalize=normalize)
        self._support = support
        self._weights = weights
        self._lengths = lengths
        self._mask = mask

    # -- views -------------------------------------------------------------------------------------------
    @property
    def support(self) -> torch.Tensor:
        """``(B, N, D)`` padded atom positions."""
        return self._support

    @property
    def weights(self) -> torch.Tensor:
        """``(B, N)`` masses (zero on padding)."""
        return self._weights

    @property
    def lengths(self) -> torch.Tensor:
        """``(B,)`` number of atoms per item."""
        return self._lengths

    @property
    def mask(self) -> torch.Tensor:
        """``(B, N)`` True on real atoms."""
        return self._mask

    @property
    def dim(self) -> int:
        """Dimension ``D`` of the ambient space."""
        return self._support.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self._support.dtype

    @property
    def device(self) -> torch.device:
        return self._support.device

    def __len__(self) -> int:
        return self._support.shape[0]

    def __getitem__(self, i: int) -> Measure:
        n = int(self._lengths[i])
        return Measure(self._support[i, :n], self._weights[i, :n], normalize=False)

    def support_list(self) -> list[torch.Tensor]:
        return padded_to_list(self._support, self._lengths)

    def weights_list(self) -> list[torch.Tensor]:
        return padded_to_list(self._weights, self._lengths)

    def is_uniform(self) -> bool:
        """True when every item has equal weights on its atoms (enables the quantile-free 1-D OT path)."""
        ref = self._mask.to(self._weights.dtype) / self._lengths[:, None].to(self._weights.dtype)
        return bool(torch.allclose(self._weights, ref, rtol=1e-6, atol=0))

    def to(self, *args, **kwargs) -> Measure:
        """Move / cast like ``torch.Tensor.to`` (lengths keep int64)."""
        s = self._support.to(*args, **kwargs)
        out = Measure.__new__(Measure)
        out._support = s
        out._weights = self._weights.to(device=s.device, dtype=s.dtype)
        out._lengths = self._lengths.to(s.device)
        out._mask = self._mask.to(s.device)
        return out

    def __repr__(self) -> str:
        return (
            f"Measure(batch={len(self)}, max_atoms={self._support.shape[1]}, dim={self.dim}, "
            f"dtype={self.dtype}, device={self.device})"
        )
