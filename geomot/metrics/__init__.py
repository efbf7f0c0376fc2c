"""L5: evaluation metrics (geodesic error, surface distances, self-intersections, exact EMD)."""

# Each block below belongs to one module; add names only inside your module's block.
# -- emd -------------------------------------------------------------------------------------------------
from geomot.metrics.emd import emd
# -- geodesic --------------------------------------------------------------------------------------------
from geomot.metrics.geodesic import (
    PairEvaluation,
    bijectivity,
    coverage,
    evaluate_pairs,
    geodesic_distances,
    geodesic_error,
    pck_curve,
)
# -- surface ---------------------------------------------------------------------------------------------
# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- emd --
    "emd",
    # -- geodesic --
    "PairEvaluation", "bijectivity", "coverage", "evaluate_pairs", "geodesic_distances", "geodesic_error",
    "pck_curve",
    # -- surface --
]
