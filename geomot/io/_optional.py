"""Lazy import of optional backends with an error that says which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from geomot._core.errors import MissingDependencyError

__all__ = ["require"]

# module name -> (pip distribution, geomot extra)
_EXTRAS: dict[str, tuple[str, str]] = {
    "trimesh": ("trimesh", "geomot"),
    "open3d": ("open3d", "geomot[o3d]"),
    "pyvista": ("pyvista", "geomot[viz]"),
    "nibabel": ("nibabel", "geomot[neuro]"),
    "torch_geometric": ("torch-geometric", "geomot[pyg]"),
    "pytorch3d": ("pytorch3d", "geomot[pytorch3d]"),
}


def require(module: str, *, what: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``what`` needs it and the extra to install.

    Args:
        module name, e.g. ``"open3d"`` or ``"pytorch3d.structures"``.
        what: the feature that needs it, used in the message (e.g. ``"reading .pcd files"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        top = module.split(".")[0]
        dist, extra = _EXTRAS.get(top, (top, top))
        raise MissingDependencyError(
            f"{what} needs the optional package {dist!r}, which is not importable ({e}); "
            f"install it with `pip install {extra}`"
        ) from e
