"""L1: tensors in, tensors out. Never imports structures."""

from geomot.ops.geometry import (
    boundary_loops,
    center_and_scale,
    edges,
    face_areas,
    face_areas_normals,
    face_centroids,
    face_normals,
    remove_unreferenced_vertices,
    total_area,
    vertex_areas,
    vertex_normals,
)
from geomot.ops.knn import KNNResult, knn_gather, knn_points
from geomot.ops.laplacian import cotangent_laplacian, cotangent_weights, uniform_laplacian
from geomot.ops.sampling import SurfaceSamples, farthest_point_sampling, sample_surface

__all__ = [
    "KNNResult",
    "SurfaceSamples",
    "boundary_loops",
    "center_and_scale",
    "cotangent_laplacian",
    "cotangent_weights",
    "edges",
    "face_areas",
    "face_areas_normals",
    "face_centroids",
    "face_normals",
    "farthest_point_sampling",
    "knn_gather",
    "knn_points",
    "remove_unreferenced_vertices",
    "sample_surface",
    "total_area",
    "uniform_laplacian",
    "vertex_areas",
    "vertex_normals",
]
