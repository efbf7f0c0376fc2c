"""L5: trainable modules: velocity fields for neural-ODE deformations and a PointNet shape encoder."""

from geomot.models.velocity import (
    VELOCITY_FIELDS,
    ConditionedVelocity,
    KernelVelocity,
    MLPVelocity,
    gaussian_kernel,
)

__all__ = [
    "VELOCITY_FIELDS",
    "ConditionedVelocity",
    "KernelVelocity",
    "MLPVelocity",
    "gaussian_kernel",
]
