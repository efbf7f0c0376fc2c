"""PointNet shape encoder: a permutation-invariant code ``z`` of a point set.

``z = max_i h(x_i)`` with a shared MLP ``h`` (Qi et al., "PointNet: Deep Learning on Point Sets for 3D
Classification and Segmentation", CVPR 2017, Sec. 4.2), followed by a linear head. Used to condition a velocity
field on the target of a deformation (:class:`geomot.models.ConditionedVelocity`).
"""

from __future__ import annotations

import torch
from torch import nn

from geomot._core.batch import mask_from_lengths, to_batched
from geomot._core.checks import check_float_tensor, check_positive
from geomot.models._seeded import seeded

__all__ = ["PointNetEncoder"]


class PointNetEncoder(nn.Module):
    """``z = W max_i h(x_i) + b`` over the real (non-padding) points of each item.

    Args:
        code_dim: size of the code ``z``.
        hidden: widths of the shared per-point MLP ``h`` (ReLU between layers, layer norm on the pooled feature).
        in_dim: dimension of the input points (3, or 6 with normals).
        generator: source of the initial weights (torch's default initialisation of ``nn.Linear``; the global
            generator when None, as for ``nn.Linear``).

    Shapes:
        ``forward(x: (N, in_dim) | (B, N, in_dim), lengths: (B,) | None) -> (code_dim,) | (B, code_dim)``
        (output mirrors the input).
    """

    def __init__(
        self, *, code_dim: int = 64, hidden: tuple[int, ...] = (64, 128, 256), in_dim: int = 3,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.code_dim = int(check_positive(code_dim, "code_dim"))
        self.in_dim = int(check_positive(in_dim, "in_dim"))
        layers: list[nn.Module] = []
        width = self.in_dim
        for h in hidden:
            layers += [seeded(nn.Linear, width, int(check_positive(h, "hidden")), generator=generator), nn.ReLU()]
            width = int(h)
        self.point_mlp = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(width)
        self.head = seeded(nn.Linear, width, self.code_dim, generator=generator)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        check_float_tensor(x, "x", ndim=(2, 3), last_dim=self.in_dim)
        xb, lb, batched = to_batched(x, "x", lengths)
        h = self.point_mlp(xb)  # (B, N, H)
        mask = mask_from_lengths(lb, xb.shape[1])
        h = h.masked_fill(~mask[..., None], float("-inf"))
        z = self.head(self.norm(h.max(1).values))
        return z if batched else z[0]
