"""Layers whose initial parameters come from an explicit ``torch.Generator``.

``nn.Linear`` and ``nn.Conv1d`` draw their initial weights from torch's global generator as they are constructed.
:func:`seeded` builds them without initialisation (``nn.utils.skip_init``) and then draws torch's default
initialisation (weight and bias uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``, what ``kaiming_uniform_(a=sqrt(5))``
gives) from ``generator``; with ``generator=None`` the global generator is used, as torch does.
"""

from __future__ import annotations

import math
from typing import TypeVar

import torch
from torch import nn

__all__ = ["seeded", "uniform_parameter"]

M = TypeVar("M", nn.Linear, nn.Conv1d)


def seeded(cls: type[M], *args: int, generator: torch.Generator | None = None, **kwargs: object) -> M:
    """``cls(*args, **kwargs)`` (``nn.Linear`` or ``nn.Conv1d``) with torch's default initialisation drawn from
    ``generator``; building it does not touch the global generator when ``generator`` is given."""
    device = generator.device if generator is not None else torch.empty(0).device  # torch's default device
    layer = nn.utils.skip_init(cls, *args, device=device, **kwargs)
    fan_in = layer.weight[0].numel()
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def uniform_parameter(*shape: int, bound: float, generator: torch.Generator | None = None) -> nn.Parameter:
    """A parameter of ``shape`` drawn uniformly in ``[-bound, bound]`` from ``generator``."""
    device = generator.device if generator is not None else None
    t = torch.empty(*shape, device=device)
    with torch.no_grad():
        t.uniform_(-bound, bound, generator=generator)
    return nn.Parameter(t)
