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
# -- varifold / chamfer / regularisers -------------------------------------------------------------------
# -- end -------------------------------------------------------------------------------------------------

__all__: list[str] = [
    # -- sliced --
    "CONTROL_VARIATES", "ENERGIES", "DistributionalSlicedWasserstein", "EnergyBasedSlicedWasserstein",
    "MaxSlicedWasserstein", "SlicedWasserstein", "VmfSlicedWasserstein", "distributional_sliced_wasserstein",
    "energy_based_sliced_wasserstein", "max_sliced_wasserstein", "sliced_wasserstein", "vmf_sliced_wasserstein",
    # -- sinkhorn --
    # -- varifold / chamfer / regularisers --
]
