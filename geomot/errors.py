"""geomot's exceptions and warnings (public home; defined in :mod:`geomot._core.errors`).

Every error derives from :class:`GeomotError` and from the matching built-in exception, so ``except ValueError``
still catches a bad argument::

    from geomot.errors import FileFormatError, ValidationError
"""

from geomot._core.errors import (
    ConvergenceWarning,
    FileFormatError,
    GeomotDeprecationWarning,
    GeomotError,
    MissingDependencyError,
    NumericalError,
    ShapeError,
    ValidationError,
)

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
