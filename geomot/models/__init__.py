"""L5: trainable modules: velocity fields for neural-ODE deformations, a PointNet shape encoder, amortised
projection networks for sliced Wasserstein losses and a PointNet point-cloud autoencoder."""

from geomot.models.amortized import AMORTIZED_PROJECTIONS, AmortizedProjection
from geomot.models.autoencoder import PointNetAutoencoder
from geomot.models.velocity import (
    VELOCITY_FIELDS,
    ConditionedVelocity,
    KernelVelocity,
    MLPVelocity,
    gaussian_kernel,
)

__all__ = [
    "AMORTIZED_PROJECTIONS",
    "VELOCITY_FIELDS",
    "AmortizedProjection",
    "ConditionedVelocity",
    "KernelVelocity",
    "MLPVelocity",
    "PointNetAutoencoder",
    "gaussian_kernel",
]
