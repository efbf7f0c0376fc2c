"""L3: optimal-transport solvers on tensors (1-D OT, Sinkhorn). Results are NamedTuples."""

# Each block below belongs to one module; add names only inside your module's block.
# -- ot1d ------------------------------------------------------------------------------------------------
from geomot.transport.ot1d import quantile_power, safe_root, sort_last, sort_values, sorted_power, wasserstein_1d
# -- sinkhorn --------------------------------------------------------------------------------------------
from geomot.transport._kernels import COSTS, pairwise_cost
from geomot.transport.sinkhorn import (
    SINKHORN_METHODS,
    SinkhornPlan,
    SinkhornResult,
    sinkhorn,
    sinkhorn_from_cost,
)
from geomot.transport.sinkhorn_init import SINKHORN_INITS
# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- ot1d --
    "quantile_power", "safe_root", "sort_last", "sort_values", "sorted_power", "wasserstein_1d",
    # -- sinkhorn --
    "COSTS", "SINKHORN_INITS", "SINKHORN_METHODS", "SinkhornPlan", "SinkhornResult", "pairwise_cost", "sinkhorn",
    "sinkhorn_from_cost",
]
