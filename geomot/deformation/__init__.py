"""L5: neural-ODE diffeomorphic deformations driven by OT losses.

``geomot.deform.fit(source, target, loss="sw-varifold")`` (``geomot.deform`` is this package) fits one flow
(:func:`quick_fit`: a few seconds, for demos);
:func:`train_conditioned` learns one shape-conditioned flow over a dataset of targets; :func:`integrate` solves
the ODE; :func:`save_trajectory` / :func:`load_trajectory` read and write the ``.npz`` trajectories of
``geomot deform``.
"""

from geomot.deformation.fit import DeformResult, as_single_mesh, auto_steps, fit, make_field, quick_fit
from geomot.deformation.integrate import SOLVERS, Trajectory, integrate
from geomot.deformation.losses import DEFORM_LOSSES, DEFORM_REGULARIZERS, default_loss_options
from geomot.deformation.normalize import NORMALIZATIONS, Frame, Normalization, choose_frames, surface_frame
from geomot.deformation.trajectory import load_trajectory, save_trajectory

__all__ = [
    "DEFORM_LOSSES",
    "DEFORM_REGULARIZERS",
    "NORMALIZATIONS",
    "SOLVERS",
    "DeformResult",
    "Frame",
    "Normalization",
    "Trajectory",
    "as_single_mesh",
    "auto_steps",
    "choose_frames",
    "default_loss_options",
    "fit",
    "integrate",
    "load_trajectory",
    "make_field",
    "quick_fit",
    "save_trajectory",
    "surface_frame",
]
