"""PointNet autoencoder for point clouds: a max-pooled per-point encoder and a fully connected decoder.

Encoder: shared per-point layers ``Conv1d`` (kernel 1) ``3 -> 64 -> 64 -> 64 -> 128 -> 1024`` with ReLU (batch norm
before each ReLU by default), a max-pool over the points, a linear map to a 256-d latent code, L2-normalised.
Decoder: ``256 -> 1024 -> 1024`` with ReLU (batch norm by default), then ``1024 -> n_out * 3`` and ``tanh``. These are
the sizes of the autoencoder of "Point-set Distances for Learning Representations of 3D Point Clouds" (Nguyen et
al., ICCV 2021) used by "Self-Attention Amortized Distributional Projection Optimization for Sliced Wasserstein
Point-Cloud Reconstruction" (Nguyen, Nguyen & Ho, ICML 2023); the encoder is PointNet's (Qi et al., CVPR 2017).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from geomot._core.batch import mask_from_lengths, to_batched
from geomot._core.checks import check_float_tensor, check_int
from geomot._core.errors import ShapeError, ValidationError
from geomot.models._seeded import seeded

__all__ = ["PointNetAutoencoder"]


def _widths(value: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
        raise ValidationError(f"{name}: expected a non-empty sequence of integers >= 1, got {value!r}")
    return tuple(check_int(v, name, at_least=1) for v in value)


class _MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm of per-point features ``(B, C, N)`` whose statistics count only the real points (``mask (B, N)``)."""

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if mask is None:
            return super().forward(h)
        rows = h.transpose(1, 2)  # (B, N, C)
        out = torch.zeros_like(rows)
        out[mask] = super().forward(rows[mask])  # (T, C): the real points only
        return out.transpose(1, 2)


class PointNetAutoencoder(nn.Module):
    """Point-cloud autoencoder ``x -> z = normalise(W max_i h(x_i) + b) -> decode(z) in R^{n_out x 3}``.

    Args:
        n_out: number of points of a reconstruction.
        in_dim: dimension of the input and output points.
        latent_dim: size of the code ``z`` (256 in the paper).
        encoder_widths: output widths of the per-point layers (``(64, 64, 64, 128, 1024)``).
        decoder_widths: hidden widths of the decoder (``(1024, 1024)``).
        batch_norm: batch norm after every hidden layer, as in the paper's code. Its statistics count only the real
            points of padded inputs; in training mode they depend on the other items of the batch (and torch's
            batch norm needs at least two items in training mode).
        normalize_latent: L2-normalise the code (an all-zero code stays zero).
        tanh_output: ``tanh`` on the decoder's output (coordinates in ``(-1, 1)``: inputs should be normalised
            into the unit ball), as in the paper; False gives an unbounded linear output.
        generator: source of the initial weights (torch's default initialisation; the global generator when None).

    Shapes:
        ``forward(x: (B, N, in_dim) | (N, in_dim), lengths: (B,) | None) -> (B, n_out, in_dim) | (n_out, in_dim)``;
        ``encode(x, lengths) -> (B, latent_dim)``; ``decode(z: (B, latent_dim)) -> (B, n_out, in_dim)``. The
        max-pool skips padding, so the code does not depend on the padding (with ``batch_norm``, exactly so in
        ``eval()`` mode; in training mode the batch statistics also skip it).
    """

    def __init__(
        self,
        *,
        n_out: int = 2048,
        in_dim: int = 3,
        latent_dim: int = 256,
        encoder_widths: Sequence[int] = (64, 64, 64, 128, 1024),
        decoder_widths: Sequence[int] = (1024, 1024),
        batch_norm: bool = True,
        normalize_latent: bool = True,
        tanh_output: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.n_out = check_int(n_out, "n_out", at_least=1)
        self.in_dim = check_int(in_dim, "in_dim", at_least=1)
        self.latent_dim = check_int(latent_dim, "latent_dim", at_least=1)
        enc, dec = _widths(encoder_widths, "encoder_widths"), _widths(decoder_widths, "decoder_widths")
        for name, flag in (("batch_norm", batch_norm), ("normalize_latent", normalize_latent),
                           ("tanh_output", tanh_output)):
            if not isinstance(flag, bool):
                raise ValidationError(f"{name}: expected True or False, got {flag!r}")
        self.normalize_latent, self.tanh_output = normalize_latent, tanh_output
        widths = (self.in_dim, *enc)
        self.point_layers = nn.ModuleList(
            seeded(nn.Conv1d, a, b, 1, generator=generator) for a, b in pairwise(widths)
        )
        self.point_norms = nn.ModuleList(_MaskedBatchNorm(b) if batch_norm else nn.Identity() for b in enc)
        self.to_latent = seeded(nn.Linear, enc[-1], self.latent_dim, generator=generator)
        widths = (self.latent_dim, *dec)
        self.hidden_layers = nn.ModuleList(
            seeded(nn.Linear, a, b, generator=generator) for a, b in pairwise(widths)
        )
        self.hidden_norms = nn.ModuleList(nn.BatchNorm1d(b) if batch_norm else nn.Identity() for b in dec)
        self.to_points = seeded(nn.Linear, dec[-1], self.n_out * self.in_dim, generator=generator)

    def _encode(self, xb: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        mask = None if lengths is None or bool((lengths == xb.shape[1]).all()) else mask_from_lengths(
            lengths, xb.shape[1]
        )
        h = xb.transpose(1, 2)  # (B, D, N)
        if mask is not None:
            h = h.masked_fill(~mask[:, None, :], 0.0)
        for layer, norm in zip(self.point_layers, self.point_norms):
            h = layer(h)
            h = norm(h, mask) if isinstance(norm, _MaskedBatchNorm) else norm(h)
            h = torch.relu(h)
        if mask is not None:
            h = h.masked_fill(~mask[:, None, :], float("-inf"))
        z = self.to_latent(h.amax(dim=2))
        if self.normalize_latent:
            z = z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
        return z

    def _check_input(self, x: torch.Tensor, lengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, bool]:
        check_float_tensor(x, "x", ndim=(2, 3), last_dim=self.in_dim)
        return to_batched(x, "x", lengths)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Codes ``(B, latent_dim)`` (``(latent_dim,)`` for an ``(N, in_dim)`` input) of the point sets ``x``."""
        xb, ln, batched = self._check_input(x, lengths)
        z = self._encode(xb, None if lengths is None else ln)
        return z if batched else z[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Point sets ``(B, n_out, in_dim)`` (``(n_out, in_dim)`` for a ``(latent_dim,)`` code) decoded from ``z``."""
        check_float_tensor(z, "z", ndim=(1, 2), last_dim=self.latent_dim)
        zb = z if z.dim() == 2 else z.unsqueeze(0)
        h = zb
        for layer, norm in zip(self.hidden_layers, self.hidden_norms):
            h = torch.relu(norm(layer(h)))
        out = self.to_points(h)
        if self.tanh_output:
            out = torch.tanh(out)
        out = out.view(zb.shape[0], self.n_out, self.in_dim)
        return out if z.dim() == 2 else out[0]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstructions ``(B, n_out, in_dim)`` of ``x`` ``(B, N, in_dim)`` (padded, with ``lengths``)."""
        xb, ln, batched = self._check_input(x, lengths)
        if self.training and xb.shape[0] < 2 and any(isinstance(m, nn.BatchNorm1d) for m in self.hidden_norms):
            raise ShapeError(
                "x: batch norm in training mode needs at least 2 point sets per batch, got 1; use a larger batch, "
                "model.eval(), or batch_norm=False"
            )
        out = self.decode(self._encode(xb, None if lengths is None else ln))
        return out if batched else out[0]

    def extra_repr(self) -> str:
        return f"n_out={self.n_out}, in_dim={self.in_dim}, latent_dim={self.latent_dim}"
