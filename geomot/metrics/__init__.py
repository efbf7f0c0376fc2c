"""L5: evaluation metrics (geodesic error, surface distances, self-intersections, exact EMD)."""

# Each block below belongs to one module; add names only inside your module's block.
# -- emd -------------------------------------------------------------------------------------------------
from geomot.metrics.emd import emd
# -- geodesic --------------------------------------------------------------------------------------------
# -- surface ---------------------------------------------------------------------------------------------
# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- emd --
    "emd",
    # -- geodesic --
    # -- surface --
]
