"""L4: losses between shapes/measures: pure functions plus thin ``nn.Module`` shells."""

from geomot.losses.amortized import AMORTIZED_DISTRIBUTIONS, AmortizedSlicedWasserstein, amortized_sliced_wasserstein
from geomot.losses.chamfer import (
    ChamferLoss,
    ChamferTerms,
    HausdorffDistance,
    chamfer_distance,
    chamfer_terms,
    hausdorff_distance,
)
from geomot.losses.fmap import (
    FmapLossTerms,
    UnsupervisedFmapLoss,
    bijectivity_loss,
    coupling_loss,
    laplacian_commutativity_loss,
    orthogonality_loss,
    sw_alignment_loss,
    unsupervised_fmap_loss,
)
from geomot.losses.regularizers import (
    LAPLACIAN_WEIGHTS,
    MeshRegularizer,
    edge_length_loss,
    laplacian_residual,
    laplacian_smoothing_loss,
    normal_consistency_loss,
)
from geomot.losses.sinkhorn import SinkhornDivergence, sinkhorn_divergence
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
from geomot.losses.varifold import VARIFOLD_KERNELS, NormalKernel, VarifoldLoss, varifold_distance, varifold_inner

__all__: list[str] = [
    "AMORTIZED_DISTRIBUTIONS",
    "CONTROL_VARIATES",
    "ENERGIES",
    "LAPLACIAN_WEIGHTS",
    "VARIFOLD_KERNELS",
    "AmortizedSlicedWasserstein",
    "ChamferLoss",
    "ChamferTerms",
    "DistributionalSlicedWasserstein",
    "EnergyBasedSlicedWasserstein",
    "FmapLossTerms",
    "HausdorffDistance",
    "MaxSlicedWasserstein",
    "MeshRegularizer",
    "NormalKernel",
    "SinkhornDivergence",
    "SlicedWasserstein",
    "UnsupervisedFmapLoss",
    "VarifoldLoss",
    "VmfSlicedWasserstein",
    "amortized_sliced_wasserstein",
    "bijectivity_loss",
    "chamfer_distance",
    "chamfer_terms",
    "coupling_loss",
    "distributional_sliced_wasserstein",
    "edge_length_loss",
    "energy_based_sliced_wasserstein",
    "hausdorff_distance",
    "laplacian_commutativity_loss",
    "laplacian_residual",
    "laplacian_smoothing_loss",
    "max_sliced_wasserstein",
    "normal_consistency_loss",
    "orthogonality_loss",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "sw_alignment_loss",
    "unsupervised_fmap_loss",
    "varifold_distance",
    "varifold_inner",
    "vmf_sliced_wasserstein",
]
