"""L3: optimal-transport solvers on tensors (1-D OT, Sinkhorn). Results are NamedTuples."""

from geomot.transport._kernels import COSTS, pairwise_cost
from geomot.transport.ot1d import quantile_power, safe_root, sort_last, sort_values, sorted_power, wasserstein_1d
from geomot.transport.sinkhorn import (
    SINKHORN_METHODS,
    SinkhornPlan,
    SinkhornResult,
    sinkhorn,
    sinkhorn_from_cost,
)
from geomot.transport.sinkhorn_init import SINKHORN_INITS

__all__: list[str] = [
    "COSTS",
    "SINKHORN_INITS",
    "SINKHORN_METHODS",
    "SinkhornPlan",
    "SinkhornResult",
    "pairwise_cost",
    "quantile_power",
    "safe_root",
    "sinkhorn",
    "sinkhorn_from_cost",
    "sort_last",
    "sort_values",
    "sorted_power",
    "wasserstein_1d",
]
