"""Mesh simplification: quadric-error decimation to a target number of vertices.

:func:`decimate` runs VTK's ``vtkQuadricDecimation`` (Garland & Heckbert, "Surface Simplification Using Quadric
Error Metrics", SIGGRAPH 1997) through pyvista, imported when called. Used to train learned matchers on coarse
copies of fine meshes: DiffusionNet's features are largely independent of the discretisation, and the dense
``V x V`` soft maps of deep functional maps cost ``O(V^2)``.
"""

from __future__ import annotations

import numpy as np
import torch

from geomot._core.checks import check_float_tensor, check_index_tensor, check_int
from geomot._core.errors import MissingDependencyError, NumericalError

__all__ = ["decimate"]


def decimate(verts: torch.Tensor, faces: torch.Tensor, n_vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A mesh of about ``n_vertices`` vertices approximating ``(verts, faces)`` (quadric decimation).

    Meshes with at most ``n_vertices`` vertices are returned unchanged. VTK reaches the target to within a few
    vertices (it removes vertices by edge collapses until the requested fraction of faces is gone).

    Args:
        verts: ``(V, 3)`` float; faces: ``(F, 3)`` integer triangles.
        n_vertices: target vertex count, ``>= 4``.

    Returns:
        ``(verts (V', 3), faces (F', 3))`` in the dtype and on the device of the inputs (int64 faces).

    Raises:
        MissingDependencyError: pyvista is not installed.
        NumericalError: the decimation removed every face (a degenerate input).
    """
    check_float_tensor(verts, "verts", ndim=2, last_dim=3)
    check_index_tensor(faces, "faces", size=verts.shape[0])
    n = check_int(n_vertices, "n_vertices", at_least=4)
    if verts.shape[0] <= n:
        return verts, faces.long()
    try:
        import pyvista as pv
    except ImportError as e:  # pragma: no cover - pyvista is a dependency of the default install
        raise MissingDependencyError("decimate needs pyvista: pip install pyvista") from e
    f = faces.detach().cpu().numpy().astype(np.int64)
    mesh = pv.PolyData(verts.detach().cpu().double().numpy(), np.hstack([np.full((f.shape[0], 1), 3), f]).ravel())
    out = mesh.decimate(1.0 - n / verts.shape[0]).triangulate().clean()
    cells = np.asarray(out.faces).reshape(-1, 4)
    if cells.shape[0] == 0:
        raise NumericalError(f"decimate: no face left when decimating {verts.shape[0]} vertices to {n}")
    v = torch.as_tensor(np.array(out.points), dtype=verts.dtype, device=verts.device)
    return v, torch.as_tensor(np.array(cells[:, 1:]), dtype=torch.int64, device=verts.device)
