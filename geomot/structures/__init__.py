"""L2: batched, immutable shapes and measures, and the conversions of meshes into measures."""

from geomot.structures.convert import MESH_MEASURES, as_measure, check_pair_dims, mesh_to_measure, resolve_mesh_measure
from geomot.structures.measure import Measure
from geomot.structures.mesh import Mesh
from geomot.structures.pointcloud import PointCloud

__all__ = [
    "MESH_MEASURES",
    "Measure",
    "Mesh",
    "PointCloud",
    "as_measure",
    "check_pair_dims",
    "mesh_to_measure",
    "resolve_mesh_measure",
]
