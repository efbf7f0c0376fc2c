"""L5: trainable modules: velocity fields for neural-ODE deformations, a PointNet shape encoder, amortised
projection networks for sliced Wasserstein losses, a PointNet point-cloud autoencoder, DiffusionNet (per-vertex
features of surfaces and point clouds) and the learned matcher built on it."""

from geomot.models.amortized import AMORTIZED_PROJECTIONS, AmortizedProjection
from geomot.models.autoencoder import PointNetAutoencoder
from geomot.models.diffusionnet import DIFFUSIONS, DiffusionNet, DiffusionNetBlock, wks_input, xyz_input
from geomot.models.matcher import MATCHER_INPUTS, DeepMatcher, MatcherOutput, PreparedShape, prepare_shape
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
    "MATCHER_INPUTS",
    "VELOCITY_FIELDS",
    "AmortizedProjection",
    "ConditionedVelocity",
    "DeepMatcher",
    "DiffusionNet",
    "DiffusionNetBlock",
    "KernelVelocity",
    "MLPVelocity",
    "MatcherOutput",
    "PointNetAutoencoder",
    "PreparedShape",
    "gaussian_kernel",
    "prepare_shape",
    "wks_input",
    "xyz_input",
]
