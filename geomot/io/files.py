"""``load`` / ``save``: meshes and point clouds from and to files, dispatched on the file suffix.

=============  =======================  ===========  ===========  ==========================================
suffix         format                   read         write        reader / writer
=============  =======================  ===========  ===========  ==========================================
``.off``       Object File Format       mesh/cloud   mesh         trimesh (+ header count check) / trimesh
``.obj``       Wavefront OBJ            mesh/cloud   mesh         geomot (keeps every ``v`` line) / trimesh
``.ply``       Stanford PLY             mesh/cloud   mesh, cloud  trimesh (+ header count check) / geomot
                                                                  (binary, float or double, cloud normals)
``.stl``       STL (triangle soup)      mesh         mesh         trimesh (corners merged) / trimesh
``.pcd``       PCL point cloud          cloud        cloud        open3d (optional)
``.xyz``       text, 3 or 6 columns     cloud        cloud        numpy
``.npy``       (N, 3) / (B, N, 3)       cloud(s)     cloud        numpy (never unpickles)
``.npz``       verts+faces / points     mesh/cloud   mesh, cloud  numpy (never unpickles; keeps cloud weights)
``.gii[.gz]``  GIFTI surface            mesh         mesh         nibabel (optional); written as float32
=============  =======================  ===========  ===========  ==========================================

Polygons are triangulated on load; vertex order is always the file's (nothing is merged or removed, except the
duplicated corners of STL triangle soups). Files without faces load as a :class:`~geomot.structures.PointCloud`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from geomot._core.checks import check_float_tensor
from geomot._core.errors import FileFormatError, GeomotError, MissingDependencyError, ShapeError, ValidationError
from geomot.io._formats import FORMATS, FileFormat, RawShape, format_for, register_format
from geomot.io.array_formats import ARRAY_FORMATS
from geomot.io.backend_formats import BACKEND_FORMATS
from geomot.io.trimesh_formats import MESH_FORMATS
from geomot.structures import Mesh, PointCloud

__all__ = ["file_format", "load", "save", "supported_formats"]

log = logging.getLogger(__name__)

for _fmt in (*MESH_FORMATS, *ARRAY_FORMATS, *BACKEND_FORMATS):
    register_format(_fmt)

_KINDS = (None, "mesh", "points")


def supported_formats() -> dict[str, FileFormat]:
    """Registered suffix -> :class:`~geomot.io._formats.FileFormat` (name, backend, what it can write)."""
    return {s: FORMATS.get(s) for s in FORMATS.names()}


def file_format(path: str | os.PathLike) -> FileFormat:
    """The :class:`~geomot.io._formats.FileFormat` that :func:`load` / :func:`save` use for ``path``'s suffix.

    Raises:
        FileFormatError: unsupported suffix; the message lists the supported ones.
    """
    return format_for(Path(path))


def _existing_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileFormatError(f"{p}: no such file")
    if p.is_dir():
        raise FileFormatError(f"{p}: is a directory, expected a file")
    return p


def _read_raw(p: Path, fmt: FileFormat) -> RawShape:
    try:
        raw = fmt.read(p)
    except GeomotError as e:
        if isinstance(e, MissingDependencyError) or str(p) in str(e):
            raise
        raise type(e)(f"{p}: {e}") from e
    except Exception as e:  # backend parsers raise anything from ValueError to struct.error / BadZipFile
        raise FileFormatError(f"{p}: cannot read as {fmt.name} ({type(e).__name__}: {e})") from e
    if not np.issubdtype(raw.verts.dtype, np.number) or (
        raw.faces is not None and not np.issubdtype(raw.faces.dtype, np.integer)
    ):
        raise FileFormatError(f"{p}: cannot read as {fmt.name} (non-numeric data; truncated or corrupted file?)")
    batch = raw.verts.ndim == 3 and raw.faces is None
    if raw.verts.ndim != 2 + batch or raw.verts.shape[-1] != 3:
        raise FileFormatError(f"{p}: expected (V, 3) vertex positions, read an array of shape {raw.verts.shape}")
    if 0 in raw.verts.shape:
        raise FileFormatError(f"{p}: the file holds no vertices (empty {fmt.name} file)")
    return raw


def load(
    path: str | os.PathLike,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    kind: str | None = None,
) -> Mesh | PointCloud:
    """Read a mesh or a point cloud; the reader is chosen by the file suffix (see the module table).

    Args:
        path: the file.
        dtype: floating dtype of the positions (and normals).
        device: device of the returned tensors (CPU by default).
        kind: ``None`` returns a :class:`Mesh` when the file has faces and a :class:`PointCloud` otherwise;
            ``"mesh"`` requires faces; ``"points"`` always returns a :class:`PointCloud` (for a mesh file: its
            vertices, with area-weighted vertex normals).

    Returns:
        a single :class:`Mesh` (verts ``(V, 3)``, faces ``(F, 3)`` int64) or :class:`PointCloud` (points
        ``(N, 3)``, normals ``(N, 3)`` when the file stores them); a ``(B, N, 3)`` ``.npy`` array gives a batched
        :class:`PointCloud` of ``B`` clouds.

    Raises:
        FileFormatError: unsupported suffix (the message lists the supported ones), missing file, a directory,
            a truncated / corrupted / empty file, ``kind="mesh"`` on a file without faces, or data that fails the
            checks of :class:`Mesh` / :class:`PointCloud` (NaN/Inf coordinates, negative or out-of-range face
            indices, negative weights; the message names the file and the check).
        ValidationError: bad arguments (``kind``, ``dtype``, ``path``).
        MissingDependencyError: the format's optional backend (open3d, nibabel) is not installed.
    """
    if kind not in _KINDS:
        raise ValidationError(f"kind: expected one of None, 'mesh', 'points', got {kind!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValidationError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    if Path(path).is_dir():
        raise FileFormatError(f"{path}: is a directory, expected a file")
    fmt = format_for(Path(path))
    p = _existing_file(path)
    raw = _read_raw(p, fmt)
    if kind == "mesh" and raw.faces is None:
        raise FileFormatError(f"{p}: kind='mesh' but the file has no faces (it is a point cloud)")
    try:
        verts = torch.as_tensor(np.ascontiguousarray(raw.verts), device=device).to(dtype)
        if raw.faces is not None:
            faces = np.ascontiguousarray(raw.faces)
            if faces.ndim != 2 or not np.issubdtype(faces.dtype, np.integer):
                raise FileFormatError(f"{p}: faces must be an integer (F, 3) array, read {faces.dtype} {faces.shape}")
            mesh = Mesh(verts, torch.as_tensor(faces.astype(np.int64), device=verts.device))
            if kind == "points":
                return PointCloud(mesh.verts, mesh.vertex_normals_list()[0])
            return mesh
        normals = None
        if raw.normals is not None:
            normals = torch.as_tensor(np.ascontiguousarray(raw.normals), device=verts.device).to(dtype)
        weights = None
        if raw.weights is not None:
            weights = torch.as_tensor(np.ascontiguousarray(raw.weights), device=verts.device).to(dtype)
            check_float_tensor(weights, "weights", ndim=1)
            if bool((weights < 0).any()):
                raise ValidationError(f"weights: must be non-negative, got min {float(weights.min()):.3g}")
        return PointCloud(verts, normals, weights)
    except (ShapeError, ValidationError) as e:  # the file's data is invalid: a corrupted file, whatever the check
        raise FileFormatError(f"{p}: {e}") from e


def _raw_of(obj: Mesh | PointCloud, name: str) -> RawShape:
    if isinstance(obj, Mesh):
        if len(obj) != 1:
            raise ValidationError(f"{name}: save writes one mesh per file, got a batch of {len(obj)}; save mesh[i]")
        return RawShape(obj.verts.detach().cpu().numpy(), obj.faces.detach().cpu().numpy())
    if isinstance(obj, PointCloud):
        if len(obj) != 1:
            raise ValidationError(f"{name}: save writes one cloud per file, got a batch of {len(obj)}; save cloud[i]")
        n, w = obj.normals_list(), obj.weights_padded()
        return RawShape(
            obj.points_list()[0].detach().cpu().numpy(),
            None,
            None if n is None else n[0].detach().cpu().numpy(),
            None if w is None else w[0, : int(obj.lengths[0])].detach().cpu().numpy(),
        )
    raise ValidationError(f"{name}: expected a geomot Mesh or PointCloud, got {type(obj).__name__}")


def save(obj: Mesh | PointCloud, path: str | os.PathLike) -> Path:
    """Write a single mesh or point cloud; the writer is chosen by the suffix (see the module table).

    Args:
        obj: a :class:`Mesh` or :class:`PointCloud` holding one item (positions are detached and moved to CPU).
        path: the destination; its folder must exist. An existing file is overwritten.

    Returns:
        the path written, as a :class:`pathlib.Path`.

    Raises:
        FileFormatError: unsupported suffix, a format that cannot hold this kind of object (e.g. a point cloud
            to ``.stl``, a mesh to ``.npy``), a missing destination folder, or a path that is a directory.
        ValidationError: ``obj`` is not a Mesh / PointCloud, or holds a batch of several items.
    """
    raw = _raw_of(obj, "obj")
    if not isinstance(path, (str, os.PathLike)):
        raise ValidationError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    fmt = format_for(p)
    is_mesh = raw.faces is not None
    if fmt.write is None:
        raise FileFormatError(f"{p}: geomot can read {fmt.name} files but not write them")
    if (is_mesh and not fmt.meshes) or (not is_mesh and not fmt.points):
        what = "meshes" if is_mesh else "point clouds"
        able = sorted(s for s, f in supported_formats().items() if (f.meshes if is_mesh else f.points))
        raise FileFormatError(f"{p}: {fmt.name} files cannot hold {what}; use one of {', '.join(able)}")
    if p.is_dir():
        raise FileFormatError(f"{p}: is a directory, expected a file name")
    if not p.parent.is_dir():
        raise FileFormatError(f"{p}: the folder {p.parent} does not exist")
    if raw.weights is not None and not fmt.weights:
        log.warning("%s: %s files do not store point weights; they are not saved (use .npz)", p, fmt.name)
    try:
        fmt.write(p, raw)
    except GeomotError:
        raise
    except Exception as e:  # OSError (permissions, disk full) or a backend exporter's error
        raise FileFormatError(f"{p}: cannot write as {fmt.name} ({type(e).__name__}: {e})") from e
    log.debug("wrote %s (%s, %d vertices)", p, fmt.name, raw.verts.shape[0])
    return p
