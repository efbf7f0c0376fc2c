"""L4: losses between shapes/measures: pure functions plus thin ``nn.Module`` shells."""

# Each block below belongs to one module; add names only inside your module's block.
# -- sliced ----------------------------------------------------------------------------------------------
from geomot.losses.sliced import CONTROL_VARIATES, SlicedWasserstein, sliced_wasserstein
from geomot.losses.sliced_variants import (
    ENERGIES,
    DistributionalSlicedWasserstein,
    EnergyBasedSlicedWasserstein,
    MaxSlicedWasserstein,
    VmfSlicedWasserstein,
    distributional_sliced_wasserstein,
    energy_based_sliced_wasserstein,
    max_sliced_wasserstein,
    vmf_sliced_wasserstein,
)
# -- sinkhorn --------------------------------------------------------------------------------------------
from geomot.losses.sinkhorn import SinkhornDivergence, sinkhorn_divergence
# -- varifold / chamfer / regularisers -------------------------------------------------------------------
from geomot.losses.chamfer import (
    ChamferLoss,
    ChamferTerms,
    HausdorffDistance,
    chamfer_distance,
    chamfer_terms,
    hausdorff_distance,
)
from geomot.losses.regularizers import (
    LAPLACIAN_WEIGHTS,
    MeshRegularizer,
    edge_length_loss,
    laplacian_residual,
    laplacian_smoothing_loss,
    normal_consistency_loss,
)
from geomot.losses.varifold import VARIFOLD_KERNELS, NormalKernel, VarifoldLoss, varifold_distance, varifold_inner
# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- sliced --
    "CONTROL_VARIATES", "ENERGIES", "DistributionalSlicedWasserstein", "EnergyBasedSlicedWasserstein",
    "MaxSlicedWasserstein", "SlicedWasserstein", "VmfSlicedWasserstein", "distributional_sliced_wasserstein",
    "energy_based_sliced_wasserstein", "max_sliced_wasserstein", "sliced_wasserstein", "vmf_sliced_wasserstein",
    # -- sinkhorn --
    "SinkhornDivergence", "sinkhorn_divergence",
    # -- varifold / chamfer / regularisers --
    "ChamferLoss", "ChamferTerms", "HausdorffDistance", "LAPLACIAN_WEIGHTS", "MeshRegularizer", "NormalKernel",
    "VARIFOLD_KERNELS", "VarifoldLoss", "chamfer_distance", "chamfer_terms", "edge_length_loss",
    "hausdorff_distance", "laplacian_residual", "laplacian_smoothing_loss", "normal_consistency_loss",
    "varifold_distance", "varifold_inner",
]
