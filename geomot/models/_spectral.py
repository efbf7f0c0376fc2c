"""Spectral normalisation whose power-iteration vectors come from an explicit ``torch.Generator``.

``nn.utils.parametrizations.spectral_norm`` draws its starting vectors from torch's global generator; this one
draws them from a given generator (the global one only when ``generator`` is None, as torch does), so that
building a model never touches the global generator (see also :func:`geomot.models._seeded.seeded`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["SpectralNorm", "spectral_norm"]


class SpectralNorm(nn.Module):
    """Parametrisation ``W -> W / sigma(W)`` with ``sigma`` the largest singular value estimated by power iteration
    (Miyato et al., "Spectral Normalization for Generative Adversarial Networks", ICLR 2018), as
    ``torch.nn.utils.parametrizations.spectral_norm`` with ``dim=0``: one power iteration per forward pass in
    training mode, the stored vectors in evaluation mode; the starting vectors come from ``generator``.

    Args:
        weight: ``(n_out, n_in)`` the weight it will parametrise.
        n_power_iterations: iterations per forward pass in training mode.
        eps: added to norms before dividing by them.
        generator: for the starting vectors.
    """

    def __init__(self, weight: torch.Tensor, *, n_power_iterations: int = 1, eps: float = 1e-12,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_power_iterations, self.eps = int(n_power_iterations), float(eps)
        w = weight.detach()
        where = generator.device if generator is not None else w.device
        u = torch.randn(w.shape[0], generator=generator, dtype=w.dtype, device=where).to(w.device)
        v = torch.randn(w.shape[1], generator=generator, dtype=w.dtype, device=where).to(w.device)
        self.register_buffer("_u", nn.functional.normalize(u, dim=0, eps=self.eps))
        self.register_buffer("_v", nn.functional.normalize(v, dim=0, eps=self.eps))
        self._power_method(w, 15)

    @torch.no_grad()
    def _power_method(self, w: torch.Tensor, n: int) -> None:
        for _ in range(n):
            self._u = nn.functional.normalize(torch.mv(w, self._v), dim=0, eps=self.eps, out=self._u)
            self._v = nn.functional.normalize(torch.mv(w.t(), self._u), dim=0, eps=self.eps, out=self._v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._power_method(weight.detach(), self.n_power_iterations)
        u, v = self._u.clone(), self._v.clone()
        sigma = torch.vdot(u, torch.mv(weight, v))
        return weight / sigma

    def right_inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value


def spectral_norm(module: nn.Linear, *, generator: torch.Generator | None = None) -> nn.Linear:
    """Register :class:`SpectralNorm` on ``module.weight`` (``nn.utils.parametrize``) and return the module."""
    parametrize.register_parametrization(module, "weight", SpectralNorm(module.weight, generator=generator))
    return module
