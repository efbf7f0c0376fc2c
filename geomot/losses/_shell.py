"""The common base of the loss Modules: keyword-only settings checked at construction, ``forward(x, y, **inputs)``.

A shell stores the hyperparameters of one loss function and calls it. Settings are the function's keyword-only
parameters minus the per-call inputs (weights, lengths, a generator, a tensor of directions...); an unknown or
misspelt setting raises at construction, as does a bad value (each shell's :meth:`LossModule.check_settings`
runs the function's own checks). Per-call inputs go to ``forward`` and nowhere else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from geomot._core.deprecation import apply_renames, renames_of
from geomot._core.errors import ValidationError

__all__ = ["PAIR_INPUTS", "LossModule"]

#: per-call inputs of the two-measure losses (never stored as settings)
PAIR_INPUTS: frozenset[str] = frozenset({"x_weights", "y_weights", "x_lengths", "y_lengths", "generator"})


def _keyword_only(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    params = inspect.signature(fn).parameters
    return {k: p for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


class LossModule(nn.Module):
    """Base class: ``Loss(**settings)`` then ``loss(x, y, **inputs)`` == ``function(x, y, **settings, **inputs)``.

    Subclasses set :attr:`function` and, where the function takes per-call inputs beyond :data:`PAIR_INPUTS`,
    :attr:`inputs`; they override :meth:`check_settings` to validate the values (called once, at construction).
    """

    function: ClassVar[Callable[..., torch.Tensor]]
    inputs: ClassVar[frozenset[str]] = PAIR_INPUTS

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        cls = type(self)
        fn = cls.function
        settings = apply_renames(cls.__name__, renames_of(fn), settings, stacklevel=4)
        allowed = sorted(set(_keyword_only(fn)) - cls.inputs)
        unknown = sorted(set(settings) - set(allowed))
        if unknown:
            per_call = [k for k in unknown if k in cls.inputs]
            if per_call:
                raise ValidationError(
                    f"{cls.__name__}: {', '.join(map(repr, per_call))} is a per-call input: pass it to forward(), "
                    "not to the constructor"
                )
            raise ValidationError(
                f"{cls.__name__}: unknown setting(s) {', '.join(map(repr, unknown))}; valid: {', '.join(allowed)}"
            )
        self.settings: dict[str, Any] = self.check_settings(dict(settings))

    def check_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Validate (and normalise) the settings; raise :class:`ValidationError` on a bad value."""
        return settings

    def forward(self, x: object, y: object, **inputs: Any) -> torch.Tensor:
        cls = type(self)
        bad = sorted(set(inputs) - cls.inputs)
        if bad:
            where = "set it at construction" if set(bad) <= set(_keyword_only(cls.function)) else "unknown input"
            raise ValidationError(
                f"{cls.__name__}.forward: {', '.join(map(repr, bad))}: {where}; per-call inputs are "
                f"{', '.join(sorted(cls.inputs))}"
            )
        return cls.function(x, y, **self.settings, **inputs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
