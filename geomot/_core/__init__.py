"""L0: errors, input checks, ragged-batch helpers, registries and typing aliases.

Nothing here imports any other geomot layer.
"""

from geomot._core.batch import (
    list_to_padded,
    mask_from_lengths,
    packed_to_padded,
    padded_to_list,
    padded_to_packed,
    to_batched,
)
from geomot._core.checks import (
    check_finite,
    check_float_tensor,
    check_index_tensor,
    check_int,
    check_lengths,
    check_positive,
    check_same_device,
    check_weights,
    data_checks,
    data_checks_enabled,
)
from geomot._core.errors import (
    ConvergenceWarning,
    FileFormatError,
    GeomotError,
    MissingDependencyError,
    NumericalError,
    ShapeError,
    ValidationError,
)
from geomot._core.registry import Registry

__all__ = [
    "ConvergenceWarning",
    "FileFormatError",
    "GeomotError",
    "MissingDependencyError",
    "NumericalError",
    "Registry",
    "ShapeError",
    "ValidationError",
    "check_finite",
    "check_float_tensor",
    "check_index_tensor",
    "check_int",
    "check_lengths",
    "check_positive",
    "check_same_device",
    "check_weights",
    "data_checks",
    "data_checks_enabled",
    "list_to_padded",
    "mask_from_lengths",
    "packed_to_padded",
    "padded_to_list",
    "padded_to_packed",
    "to_batched",
]
