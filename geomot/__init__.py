"""geomot: optimal transport for meshes and point clouds.

Public names are resolved lazily (PEP 562) so that ``import geomot`` is fast and imports neither torch-heavy
submodules nor any optional package (pyvista, open3d, torch_geometric, pytorch3d, pykeops) until used.

Each section of ``_LAZY`` below belongs to one subpackage; add a public name by adding one line to its section.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    # -- structures ----------------------------------------------------------------------------------------
    "Mesh": "geomot.structures",
    "PointCloud": "geomot.structures",
    "Measure": "geomot.structures",
    "as_measure": "geomot.structures",
    "mesh_to_measure": "geomot.structures",
    # -- io ------------------------------------------------------------------------------------------------
    "load": "geomot.io",
    "save": "geomot.io",
    "read_vts": "geomot.io",
    "write_vts": "geomot.io",
    "ShapeDataset": "geomot.io",
    "load_fsaverage5": "geomot.io",
    "to_trimesh": "geomot.io",
    "from_trimesh": "geomot.io",
    "to_open3d": "geomot.io",
    "from_open3d": "geomot.io",
    "to_pyvista": "geomot.io",
    "from_pyvista": "geomot.io",
    "to_pyg": "geomot.io",
    "from_pyg": "geomot.io",
    "to_pytorch3d": "geomot.io",
    "from_pytorch3d": "geomot.io",
    # -- losses: sliced family -----------------------------------------------------------------------------
    "sliced_wasserstein": "geomot.losses.sliced",
    "SlicedWasserstein": "geomot.losses.sliced",
    "max_sliced_wasserstein": "geomot.losses.sliced_variants",
    "MaxSlicedWasserstein": "geomot.losses.sliced_variants",
    "distributional_sliced_wasserstein": "geomot.losses.sliced_variants",
    "DistributionalSlicedWasserstein": "geomot.losses.sliced_variants",
    "vmf_sliced_wasserstein": "geomot.losses.sliced_variants",
    "VmfSlicedWasserstein": "geomot.losses.sliced_variants",
    "energy_based_sliced_wasserstein": "geomot.losses.sliced_variants",
    "EnergyBasedSlicedWasserstein": "geomot.losses.sliced_variants",
    "wasserstein_1d": "geomot.transport.ot1d",
    "amortized_sliced_wasserstein": "geomot.losses.amortized",
    "AmortizedSlicedWasserstein": "geomot.losses.amortized",
    # -- losses: entropic / kernel / chamfer / regularisers --------------------------------------------------
    "sinkhorn_divergence": "geomot.losses",
    "SinkhornDivergence": "geomot.losses",
    "varifold_distance": "geomot.losses.varifold",
    "VarifoldLoss": "geomot.losses.varifold",
    "chamfer_distance": "geomot.losses.chamfer",
    "ChamferLoss": "geomot.losses.chamfer",
    "hausdorff_distance": "geomot.losses.chamfer",
    "edge_length_loss": "geomot.losses.regularizers",
    "laplacian_smoothing_loss": "geomot.losses.regularizers",
    "normal_consistency_loss": "geomot.losses.regularizers",
    "MeshRegularizer": "geomot.losses.regularizers",
    # -- transport -----------------------------------------------------------------------------------------
    "sinkhorn": "geomot.transport",
    "sinkhorn_from_cost": "geomot.transport",
    "SinkhornResult": "geomot.transport",
    # -- correspondence ------------------------------------------------------------------------------------
    "match": "geomot.correspondence",
    "MatchResult": "geomot.correspondence",
    "MatchConfig": "geomot.correspondence",
    "zoomout": "geomot.correspondence",
    "wks": "geomot.correspondence",
    "hks": "geomot.correspondence",
    "spectral_basis": "geomot.ops.spectral",
    # -- deformation ---------------------------------------------------------------------------------------
    "deform": "geomot.deformation",  # the package itself: geomot.deform.fit(...) (handled in __getattr__)
    # -- validation ----------------------------------------------------------------------------------------
    "data_checks": "geomot._core.checks",
    # -- end -----------------------------------------------------------------------------------------------
}

_SUBMODULES = {
    "ops", "structures", "transport", "losses", "correspondence", "models", "deformation", "metrics", "io", "viz",
    "train", "errors",
}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "deform":  # an alias of the package geomot.deformation (see its _LAZY entry)
        globals()[name] = __getattr__("deformation")
        return globals()[name]
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"geomot.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'geomot' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - static analysers see the real names
    from geomot.structures import Measure, Mesh, PointCloud, as_measure, mesh_to_measure  # noqa: F401
