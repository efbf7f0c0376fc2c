"""Conversions between geomot shapes and the objects of other libraries, both ways.

=================  ======================================  ==========================================  ============
library            mesh                                    point cloud                                 extra
=================  ======================================  ==========================================  ============
trimesh            ``trimesh.Trimesh``                     ``trimesh.PointCloud``                      (core)
open3d             ``open3d.geometry.TriangleMesh``        ``open3d.geometry.PointCloud`` (+normals)   ``[o3d]``
pyvista            ``pyvista.PolyData`` (triangle polys)   ``pyvista.PolyData`` (vertex cells)         ``[viz]``
torch_geometric    ``Data(pos (V,3), face (3,F))``         ``Data(pos (N,3)[, normal (N,3)])``         ``[pyg]``
pytorch3d          ``pytorch3d.structures.Meshes``         ``pytorch3d.structures.Pointclouds``        ``[pytorch3d]``
=================  ======================================  ==========================================  ============

Each backend is imported inside the function that needs it; a missing one raises
:class:`~geomot._core.errors.MissingDependencyError` naming the extra to install. Vertex order is preserved both
ways. The numpy-based libraries (trimesh, open3d, pyvista) receive detached CPU float64 arrays; the torch-based
ones (torch_geometric, pytorch3d) share tensors, keep the autograd graph and support batches. Every ``from_*``
keeps the source's precision unless ``dtype`` is given: float64 arrays (trimesh and open3d always store float64)
give float64 shapes, float32 ones (a pyvista ``PolyData`` may hold either) float32.
"""

from __future__ import annotations

import numpy as np
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.io._optional import require
from geomot.structures import Mesh, PointCloud

__all__ = [
    "from_open3d",
    "from_pyg",
    "from_pytorch3d",
    "from_pyvista",
    "from_trimesh",
    "to_open3d",
    "to_pyg",
    "to_pytorch3d",
    "to_pyvista",
    "to_trimesh",
]

Shape = Mesh | PointCloud


def _single(obj: object, fn: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(verts (V,3) float64, faces (F,3) int64 | None, normals (V,3) float64 | None)`` of a single shape."""
    if isinstance(obj, Mesh):
        if len(obj) != 1:
            raise ShapeError(f"{fn}: expects a single mesh, got a batch of {len(obj)}; convert mesh[i]")
        return obj.verts.detach().cpu().double().numpy(), obj.faces.detach().cpu().numpy(), None
    if isinstance(obj, PointCloud):
        if len(obj) != 1:
            raise ShapeError(f"{fn}: expects a single point cloud, got a batch of {len(obj)}; convert cloud[i]")
        n = obj.normals_list()
        return (
            obj.points_list()[0].detach().cpu().double().numpy(),
            None,
            None if n is None else n[0].detach().cpu().double().numpy(),
        )
    raise ValidationError(f"{fn}: expected a geomot Mesh or PointCloud, got {type(obj).__name__}")


def _tensor(a: object, dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    """``a`` as a tensor of ``dtype``; ``None`` keeps a float32 / float64 array's precision (other dtypes, such as
    integer positions, become float32)."""
    arr = np.ascontiguousarray(np.asarray(a))
    if dtype is None:
        dtype = torch.float64 if arr.dtype == np.float64 else torch.float32
    return torch.as_tensor(arr, device=device).to(dtype)


def _build(
    verts: object, faces: object | None, normals: object | None, dtype: torch.dtype | None,
    device: torch.device | str | None,
) -> Shape:
    v = _tensor(verts, dtype, device)
    if faces is not None and np.asarray(faces).size:
        f = torch.as_tensor(np.ascontiguousarray(np.asarray(faces)).astype(np.int64), device=v.device)
        return Mesh(v, f)
    return PointCloud(v, None if normals is None else _tensor(normals, v.dtype, v.device))


# -- trimesh -----------------------------------------------------------------------------------------------
def to_trimesh(obj: Shape):
    """A ``trimesh.Trimesh`` (for a Mesh; built with ``process=False`` so no vertex is merged) or a
    ``trimesh.PointCloud`` (for a PointCloud; normals are not kept, trimesh clouds have none)."""
    trimesh = require("trimesh", what="to_trimesh")
    v, f, _ = _single(obj, "to_trimesh")
    if f is None:
        return trimesh.PointCloud(v)
    return trimesh.Trimesh(vertices=v, faces=f, process=False)


def from_trimesh(tm: object, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Shape:
    """A :class:`Mesh` from a ``trimesh.Trimesh`` or a :class:`PointCloud` from a ``trimesh.PointCloud``.

    ``dtype=None`` keeps the source's float precision (trimesh stores float64); pass ``torch.float32`` for float32.

    Raises:
        ValidationError: another type; NaN/Inf or bad faces (from the Mesh checks).
    """
    trimesh = require("trimesh", what="from_trimesh")
    if isinstance(tm, trimesh.Trimesh):
        return _build(tm.vertices, tm.faces if len(tm.faces) else None, None, dtype, device)
    if isinstance(tm, trimesh.PointCloud):
        return _build(tm.vertices, None, None, dtype, device)
    raise ValidationError(f"tm: expected a trimesh.Trimesh or trimesh.PointCloud, got {type(tm).__name__}")


# -- open3d ------------------------------------------------------------------------------------------------
def to_open3d(obj: Shape):
    """An ``open3d.geometry.TriangleMesh`` (Mesh) or ``open3d.geometry.PointCloud`` with normals (PointCloud)."""
    o3d = require("open3d", what="to_open3d")
    v, f, n = _single(obj, "to_open3d")
    if f is not None:
        return o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(f.astype(np.int32)))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(v))
    if n is not None:
        pc.normals = o3d.utility.Vector3dVector(n)
    return pc


def from_open3d(geom: object, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Shape:
    """A :class:`Mesh` from an open3d ``TriangleMesh`` or a :class:`PointCloud` (with its normals, if any) from an
    open3d ``PointCloud``."""
    o3d = require("open3d", what="from_open3d")
    if isinstance(geom, o3d.geometry.TriangleMesh):
        tri = np.asarray(geom.triangles)
        return _build(np.asarray(geom.vertices), tri if tri.size else None, None, dtype, device)
    if isinstance(geom, o3d.geometry.PointCloud):
        n = np.asarray(geom.normals) if geom.has_normals() else None
        return _build(np.asarray(geom.points), None, n, dtype, device)
    raise ValidationError(
        f"geom: expected an open3d.geometry.TriangleMesh or open3d.geometry.PointCloud, got {type(geom).__name__}"
    )


# -- pyvista -----------------------------------------------------------------------------------------------
def to_pyvista(obj: Shape):
    """A ``pyvista.PolyData``: triangles for a Mesh; one vertex cell per point for a PointCloud, whose normals go
    to ``point_data["Normals"]``."""
    pv = require("pyvista", what="to_pyvista")
    v, f, n = _single(obj, "to_pyvista")
    if f is None:
        poly = pv.PolyData(v)
        if n is not None:
            poly.point_data["Normals"] = n
        return poly
    cells = np.concatenate([np.full((f.shape[0], 1), 3, dtype=np.int64), f], axis=1).ravel()
    return pv.PolyData(v, faces=cells)


def from_pyvista(
    poly: object, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Shape:
    """A :class:`Mesh` from a ``pyvista.PolyData`` with polygons (triangulated by VTK when they are not all
    triangles; points keep their order), else a :class:`PointCloud` of its points (normals from
    ``point_data["Normals"]`` when present)."""
    pv = require("pyvista", what="from_pyvista")
    if not isinstance(poly, pv.PolyData):
        raise ValidationError(f"poly: expected a pyvista.PolyData, got {type(poly).__name__}")
    if np.asarray(poly.faces).size > 0:  # polygon connectivity only (vertex / line cells are elsewhere)
        if not poly.is_all_triangles:
            poly = poly.triangulate()
        faces = np.asarray(poly.faces).reshape(-1, 4)[:, 1:]
        return _build(np.asarray(poly.points), faces, None, dtype, device)
    normals = poly.point_data["Normals"] if "Normals" in poly.point_data else None
    return _build(np.asarray(poly.points), None, normals, dtype, device)


# -- torch_geometric ---------------------------------------------------------------------------------------
def to_pyg(obj: Shape):
    """``torch_geometric.data.Data`` with ``pos (V, 3)`` and ``face (3, F)`` (a Mesh) or ``pos (N, 3)`` and
    ``normal (N, 3)`` when present (a PointCloud, PyG's ``SamplePoints`` convention); a batch gives a
    ``torch_geometric.data.Batch``. Tensors are shared, not copied (``face`` is transposed)."""
    pyg = require("torch_geometric", what="to_pyg")
    Data, Batch = pyg.data.Data, pyg.data.Batch
    if isinstance(obj, Mesh):
        items = [Data(pos=v, face=f.t().contiguous()) for v, f in zip(obj.verts_list(), obj.faces_list())]
    elif isinstance(obj, PointCloud):
        nl = obj.normals_list()
        pts = obj.points_list()
        items = [Data(pos=p) if nl is None else Data(pos=p, normal=n) for p, n in zip(pts, nl or pts)]
    else:
        raise ValidationError(f"to_pyg: expected a geomot Mesh or PointCloud, got {type(obj).__name__}")
    return items[0] if len(items) == 1 else Batch.from_data_list(items)


def _retype(t: torch.Tensor, dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    return t.to(device=device if device is not None else t.device, dtype=dtype or t.dtype)


def from_pyg(
    data: object, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Shape:
    """A :class:`Mesh` from ``Data(pos, face (3, F))`` or a :class:`PointCloud` from ``Data(pos[, normal])``;
    a ``Batch`` gives a batched Mesh / PointCloud."""
    pyg = require("torch_geometric", what="from_pyg")
    if isinstance(data, pyg.data.Batch):
        items = data.to_data_list()
    elif isinstance(data, pyg.data.Data):
        items = [data]
    else:
        raise ValidationError(f"data: expected a torch_geometric Data or Batch, got {type(data).__name__}")
    if any(getattr(d, "pos", None) is None for d in items):
        raise ValidationError("data: expected a 'pos' attribute (N, 3) holding the positions")
    pos = [_retype(d.pos, dtype, device) for d in items]
    if all(getattr(d, "face", None) is not None for d in items):
        faces = []
        for d, p in zip(items, pos):
            if d.face.dim() != 2 or d.face.shape[0] != 3:
                raise ShapeError(f"data.face: expected shape (3, F), got {tuple(d.face.shape)}")
            faces.append(d.face.t().to(p.device))
        return Mesh(pos, faces)
    normals = [getattr(d, "normal", None) for d in items]
    nl = None if any(n is None for n in normals) else [_retype(n, p.dtype, p.device) for n, p in zip(normals, pos)]
    return PointCloud(pos, nl)


# -- pytorch3d ---------------------------------------------------------------------------------------------
def to_pytorch3d(obj: Shape):
    """``pytorch3d.structures.Meshes`` (a Mesh) or ``Pointclouds`` with normals when present (a PointCloud);
    batches map to batches, tensors are shared."""
    structs = require("pytorch3d.structures", what="to_pytorch3d")
    if isinstance(obj, Mesh):
        return structs.Meshes(verts=obj.verts_list(), faces=obj.faces_list())
    if isinstance(obj, PointCloud):
        return structs.Pointclouds(points=obj.points_list(), normals=obj.normals_list())
    raise ValidationError(f"to_pytorch3d: expected a geomot Mesh or PointCloud, got {type(obj).__name__}")


def from_pytorch3d(
    obj: object, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Shape:
    """A :class:`Mesh` from ``Meshes`` or a :class:`PointCloud` from ``Pointclouds`` (same batch size)."""
    structs = require("pytorch3d.structures", what="from_pytorch3d")
    if isinstance(obj, structs.Meshes):
        verts = [_retype(v, dtype, device) for v in obj.verts_list()]
        return Mesh(verts, [f.to(v.device) for f, v in zip(obj.faces_list(), verts)])
    if isinstance(obj, structs.Pointclouds):
        pts = [_retype(p, dtype, device) for p in obj.points_list()]
        nl = obj.normals_list()
        return PointCloud(pts, None if nl is None else [_retype(n, p.dtype, p.device) for n, p in zip(nl, pts)])
    raise ValidationError(f"obj: expected pytorch3d Meshes or Pointclouds, got {type(obj).__name__}")
