"""Formats with an optional backend, imported only when such a file is read or written.

* ``.pcd`` (Point Cloud Library) through open3d (``pip install geomot[o3d]``).
* ``.gii`` / ``.gii.gz`` (GIFTI surfaces, e.g. FreeSurfer / fsaverage) through nibabel
  (``pip install geomot[neuro]``): the ``NIFTI_INTENT_POINTSET`` array gives the vertices, the
  ``NIFTI_INTENT_TRIANGLE`` array the faces.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from geomot._core.errors import FileFormatError
from geomot.io._formats import FileFormat, RawShape
from geomot.io._optional import require

__all__ = ["BACKEND_FORMATS"]


def _quiet_open3d():
    o3d = require("open3d", what="reading and writing .pcd point clouds")
    return o3d, o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error)


def read_pcd(path: Path) -> RawShape:
    o3d, quiet = _quiet_open3d()
    with quiet:
        pc = o3d.io.read_point_cloud(str(path), format="pcd", remove_nan_points=False, remove_infinite_points=False)
    pts = np.asarray(pc.points)
    if pts.shape[0] == 0:
        raise FileFormatError(f"{path}: open3d read no points (empty, truncated or corrupted PCD file)")
    normals = np.asarray(pc.normals) if pc.has_normals() else None
    return RawShape(pts, None, normals)


def write_pcd(path: Path, shape: RawShape) -> None:
    o3d, quiet = _quiet_open3d()
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(shape.verts, dtype=np.float64)))
    if shape.normals is not None:
        pc.normals = o3d.utility.Vector3dVector(np.asarray(shape.normals, dtype=np.float64))
    with quiet:
        ok = o3d.io.write_point_cloud(str(path), pc, write_ascii=False, compressed=False)
    if not ok:
        raise FileFormatError(f"{path}: open3d could not write the PCD file")


def _nibabel():
    return require("nibabel", what="reading and writing GIFTI (.gii) surfaces")


def read_gifti(path: Path) -> RawShape:
    nib = _nibabel()
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    img = nib.gifti.GiftiImage.from_bytes(data)
    pointset = nib.nifti1.intent_codes["NIFTI_INTENT_POINTSET"]
    triangle = nib.nifti1.intent_codes["NIFTI_INTENT_TRIANGLE"]
    verts = [d.data for d in img.darrays if d.intent == pointset]
    faces = [d.data for d in img.darrays if d.intent == triangle]
    if not verts:
        raise FileFormatError(f"{path}: the GIFTI file has no NIFTI_INTENT_POINTSET array (not a surface?)")
    return RawShape(np.asarray(verts[0]), np.asarray(faces[0]) if faces else None)


def write_gifti(path: Path, shape: RawShape) -> None:
    nib = _nibabel()
    arrays = [
        nib.gifti.GiftiDataArray(np.asarray(shape.verts, dtype=np.float32), intent="NIFTI_INTENT_POINTSET",
                                 datatype="NIFTI_TYPE_FLOAT32"),
        nib.gifti.GiftiDataArray(np.asarray(shape.faces, dtype=np.int32), intent="NIFTI_INTENT_TRIANGLE",
                                 datatype="NIFTI_TYPE_INT32"),
    ]
    data = nib.gifti.GiftiImage(darrays=arrays).to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


BACKEND_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("PCD", (".pcd",), read_pcd, write_pcd, meshes=False, points=True, backend="open3d"),
    FileFormat("GIFTI", (".gii", ".gii.gz"), read_gifti, write_gifti, meshes=True, points=False, backend="nibabel"),
)
