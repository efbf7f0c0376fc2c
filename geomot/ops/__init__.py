"""L1: tensors in, tensors out. Never imports structures."""

from geomot.ops.alignment import RigidTransform, corresponding_points_alignment
from geomot.ops.directions import (
    DIRECTIONS,
    orthogonal_directions,
    qmc_directions,
    random_directions,
    sample_vmf,
    sphere_directions,
    vmf_mean_resultant_length,
)
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
from geomot.ops.operators import (
    DiffusionBatch,
    DiffusionOperators,
    batch_operators,
    diffusion_operators,
    spatial_gradient,
    tangent_frames,
)
from geomot.ops.sampling import SurfaceSamples, farthest_point_sampling, sample_surface
from geomot.ops.spectral import LAPLACIANS, SpectralBasis, laplacian_and_mass, non_manifold_edges, spectral_basis

__all__ = [
    "DIRECTIONS",
    "LAPLACIANS",
    "DiffusionBatch",
    "DiffusionOperators",
    "KNNResult",
    "RigidTransform",
    "SpectralBasis",
    "SurfaceSamples",
    "batch_operators",
    "boundary_loops",
    "center_and_scale",
    "corresponding_points_alignment",
    "cotangent_laplacian",
    "cotangent_weights",
    "diffusion_operators",
    "edges",
    "face_areas",
    "face_areas_normals",
    "face_centroids",
    "face_normals",
    "farthest_point_sampling",
    "knn_gather",
    "knn_points",
    "laplacian_and_mass",
    "non_manifold_edges",
    "orthogonal_directions",
    "qmc_directions",
    "random_directions",
    "remove_unreferenced_vertices",
    "sample_surface",
    "sample_vmf",
    "spatial_gradient",
    "spectral_basis",
    "sphere_directions",
    "tangent_frames",
    "total_area",
    "uniform_laplacian",
    "vertex_areas",
    "vertex_normals",
    "vmf_mean_resultant_length",
]
