"""L5: trainable modules: velocity fields for neural-ODE deformations, a PointNet shape encoder, amortised
projection networks for sliced Wasserstein losses, a PointNet point-cloud autoencoder and DiffusionNet (per-vertex
features of surfaces and point clouds)."""

from geomot.models.amortized import AMORTIZED_PROJECTIONS, AmortizedProjection
from geomot.models.autoencoder import PointNetAutoencoder
from geomot.models.diffusionnet import DIFFUSIONS, DiffusionNet, DiffusionNetBlock, wks_input, xyz_input
from geomot.models.velocity import (
    VELOCITY_FIELDS,
    ConditionedVelocity,
    KernelVelocity,
    MLPVelocity,
    gaussian_kernel,
)

__all__ = [
    "AMORTIZED_PROJECTIONS",
    "DIFFUSIONS",
    "VELOCITY_FIELDS",
    "AmortizedProjection",
    "ConditionedVelocity",
    "DiffusionNet",
    "DiffusionNetBlock",
    "KernelVelocity",
    "MLPVelocity",
    "PointNetAutoencoder",
    "gaussian_kernel",
    "wks_input",
    "xyz_input",
]
