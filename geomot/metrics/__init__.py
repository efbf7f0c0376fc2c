"""L5: evaluation metrics (geodesic error, surface distances, self-intersections, exact EMD)."""

from geomot.metrics.emd import emd
from geomot.metrics.geodesic import (
    PairEvaluation,
    bijectivity,
    coverage,
    evaluate_pairs,
    geodesic_distances,
    geodesic_error,
    pck_curve,
)
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

__all__: list[str] = [
    "PairEvaluation",
    "PointSurfaceDistance",
    "SurfaceMetrics",
    "assd",
    "bijectivity",
    "chamfer",
    "coverage",
    "emd",
    "evaluate_pairs",
    "flipped_faces",
    "geodesic_distances",
    "geodesic_error",
    "hausdorff",
    "hd90",
    "intersecting_face_pairs",
    "normal_consistency",
    "pck_curve",
    "point_to_surface",
    "point_triangle_distance",
    "self_intersections",
    "surface_metrics",
    "triangles_intersect",
]
