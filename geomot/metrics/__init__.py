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
from geomot.metrics.intersections import (
    flipped_faces,
    intersecting_face_pairs,
    self_intersections,
    triangles_intersect,
)
from geomot.metrics.surface import (
    PointSurfaceDistance,
    SurfaceMetrics,
    assd,
    chamfer,
    hausdorff,
    hd90,
    normal_consistency,
    point_to_surface,
    point_triangle_distance,
    surface_metrics,
)

# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- emd --
    "emd",
    # -- geodesic --
    "PairEvaluation", "bijectivity", "coverage", "evaluate_pairs", "geodesic_distances", "geodesic_error",
    "pck_curve",
    # -- surface --
    "PointSurfaceDistance", "SurfaceMetrics", "assd", "chamfer", "flipped_faces", "hausdorff", "hd90",
    "intersecting_face_pairs", "normal_consistency", "point_to_surface", "point_triangle_distance",
    "self_intersections", "surface_metrics", "triangles_intersect",
]
