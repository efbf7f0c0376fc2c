"""Error and warning classes of geomot.

Every error raised on bad input is a :class:`GeomotError`; the concrete classes also derive from the matching
builtin (``ValueError``, ``TypeError``, ``ImportError``...) so that ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConvergenceWarning",
    "FileFormatError",
    "GeomotDeprecationWarning",
    "GeomotError",
    "MissingDependencyError",
    "NumericalError",
    "ShapeError",
    "ValidationError",
]


class GeomotError(Exception):
    """Base class of every error geomot raises on purpose."""


class ValidationError(GeomotError, ValueError):
    """An argument has a bad value: NaN/Inf, negative weights, out-of-range indices, an unknown name..."""


class ShapeError(ValidationError):
    """A tensor has the wrong number of dimensions, the wrong size, dtype or device."""


class FileFormatError(GeomotError, ValueError):
    """A file is missing, truncated, corrupted or of an unsupported type."""


class MissingDependencyError(GeomotError, ImportError):
    """An optional dependency needed by the called function is not installed."""


class NumericalError(GeomotError, FloatingPointError):
    """A computation produced NaN or Inf (e.g. an ODE integration that blew up)."""


class ConvergenceWarning(UserWarning):
    """An iterative solver stopped before reaching its tolerance."""


class GeomotDeprecationWarning(FutureWarning):
    """A geomot argument or name is deprecated; the message names its replacement.

    A ``FutureWarning`` so that it is shown to users of scripts by default (``DeprecationWarning`` is hidden
    outside ``__main__``).
    """
