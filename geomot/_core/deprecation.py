"""Renamed keyword arguments: the old name keeps working for a while and warns.

geomot uses one name per concept across its API: ``max_iter`` for the iteration budget of every inner loop or
fit, ``lr`` for every step size, ``tol`` for every stopping tolerance. :func:`renamed_kwargs` keeps an older
spelling working with a :class:`GeomotDeprecationWarning` that names the new one.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from geomot._core.errors import GeomotDeprecationWarning, ValidationError

__all__ = ["apply_renames", "renamed_kwargs", "renames_of"]

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__geomot_renamed__"


def apply_renames(
    owner: str, renames: Mapping[str, str], kwargs: dict[str, Any], *, stacklevel: int = 3
) -> dict[str, Any]:
    """Return ``kwargs`` with every deprecated key of ``renames`` (old -> new) moved to its new name.

    Each old name used warns once per call with :class:`GeomotDeprecationWarning`; giving both the old and the new
    name raises :class:`~geomot._core.errors.ValidationError`.
    """
    if not renames or not any(k in kwargs for k in renames):
        return kwargs
    out = dict(kwargs)
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise ValidationError(f"{owner}: got both {old!r} (deprecated) and {new!r}; pass only {new!r}")
        warnings.warn(
            f"{owner}: the argument {old!r} is deprecated and will be removed in a future release; use {new!r}",
            GeomotDeprecationWarning,
            stacklevel=stacklevel,
        )
        out[new] = out.pop(old)
    return out


def renamed_kwargs(**renames: str) -> Callable[[F], F]:
    """Decorator: accept the deprecated keyword names ``old=new`` of a function and pass them on as ``new``.

    The wrapper's signature (``inspect.signature``) is that of the function, with the new names only; the mapping
    is kept on the wrapper so that Module shells apply the same renames to their settings.

    Example:
        >>> @renamed_kwargs(n_iters="max_iter")
        ... def solve(x, *, max_iter=10): ...
    """

    def deco(fn: F) -> F:
        owner = getattr(fn, "__qualname__", getattr(fn, "__name__", "function"))

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **apply_renames(owner, renames, kwargs))

        setattr(wrapper, _ATTR, dict(renames))
        return wrapper  # type: ignore[return-value]

    return deco


def renames_of(fn: Callable[..., Any]) -> dict[str, str]:
    """The ``old -> new`` keyword renames registered on ``fn`` by :func:`renamed_kwargs` (empty if none)."""
    return dict(getattr(fn, _ATTR, {}))
