"""L5: reading and writing shapes, dataset folders, shipped and synthetic shapes, conversions to other libraries.

* :func:`load` / :func:`save` — OFF, OBJ, PLY, STL (trimesh), PCD (open3d), XYZ, NPY, NPZ (numpy), GIFTI (nibabel),
  chosen by suffix (:func:`supported_formats`); add one with ``register_format(FileFormat(...))``.
* :func:`read_vts` / :func:`write_vts` — 1-based correspondence files <-> 0-based index tensors.
* :class:`ShapeDataset` — ``off/`` + ``corres/`` benchmark folders (FAUST_r, TOSCA_r, SMAL_r...).
* :func:`load_fsaverage5` — FreeSurfer fsaverage5 surfaces, offline.
* ``to_*`` / ``from_*`` — trimesh, open3d, pyvista, torch_geometric, pytorch3d (imported lazily).
* :mod:`geomot.io.synthetic` — the generated shapes of ``data/``.

Optional backends are imported inside the functions that use them; importing this package imports trimesh only
when a file is actually read.
"""

from geomot.io._formats import FileFormat, RawShape, register_format
from geomot.io.convert import (
    from_open3d,
    from_pyg,
    from_pytorch3d,
    from_pyvista,
    from_trimesh,
    to_open3d,
    to_pyg,
    to_pytorch3d,
    to_pyvista,
    to_trimesh,
)
from geomot.io.dataset import GroundTruth, ShapeDataset
from geomot.io.files import file_format, load, save, supported_formats
from geomot.io.fsaverage import load_fsaverage5
from geomot.io.vts import read_vts, write_vts

__all__ = [
    "FileFormat",
    "GroundTruth",
    "RawShape",
    "ShapeDataset",
    "file_format",
    "from_open3d",
    "from_pyg",
    "from_pytorch3d",
    "from_pyvista",
    "from_trimesh",
    "load",
    "load_fsaverage5",
    "read_vts",
    "register_format",
    "save",
    "supported_formats",
    "to_open3d",
    "to_pyg",
    "to_pytorch3d",
    "to_pyvista",
    "to_trimesh",
    "write_vts",
]
