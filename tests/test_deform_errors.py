"""Every error raised by ``geomot.deformation`` and the velocity fields on bad input, with its message."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

import geomot
from geomot._core.errors import FileFormatError, NumericalError, ShapeError, ValidationError
from geomot.deformation import integrate
from geomot.deformation.dataset import deform_conditioned, train_conditioned
from geomot.deformation.fit import as_single_mesh
from geomot.deformation.losses import make_loss, parse_loss
from geomot.deformation.normalize import surface_frame
from geomot.deformation.trajectory import load_trajectory, save_trajectory
from geomot.models import KernelVelocity
from geomot.structures import Mesh
from tests.conftest import icosphere

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _Frozen(nn.Module):
    """A velocity field without trainable parameters."""

    def forward(self, t, x):
        return torch.zeros_like(x)


def test_as_single_mesh_errors():
    v, f = icosphere(0)
    with pytest.raises(ShapeError, match=r"source: expected verts as a torch\.Tensor, got"):
        as_single_mesh((v.numpy(), f), "source")
    with pytest.raises(ShapeError, match="source: expected a single mesh, got a batch of 2"):
        as_single_mesh(Mesh(torch.stack([v, v]), torch.stack([f, f])), "source")


def test_fit_field_without_parameters():
    v, f = icosphere(0)
    with pytest.raises(ValidationError, match="field: has no trainable parameter"):
        geomot.deform.fit((v, f), (v * 1.1, f), field=_Frozen(), max_iter=1, progress=False)


def test_integrate_errors():
    x0 = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ShapeError, match="times: expected a 1-D increasing sequence of at least 2 times"):
        integrate(_Frozen(), x0, times=[0.5])
    with pytest.raises(ValidationError, match="adjoint: the field has no trainable parameter; use adjoint=False"):
        integrate(_Frozen(), x0, adjoint=True)


def test_loss_spec_errors():
    with pytest.raises(ValidationError, match="loss: expected a name, 'a\\+b' or a \\{name: weight\\} mapping"):
        parse_loss(3)
    with pytest.raises(ValidationError, match="loss: no term given"):
        parse_loss({})
    v, f = icosphere(1)
    fn = make_loss("sw-varifold", int(f.shape[0]), {"atoms": "edges"})
    with pytest.raises(ValidationError, match="loss_options\\['atoms'\\]: expected 'faces' or 'samples', got 'edges'"):
        fn(v, f, Mesh(v, f), generator=torch.Generator().manual_seed(0))


def test_surface_frame_errors():
    v = torch.zeros(3, 3, dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    with pytest.raises(ValidationError, match="verts: the surface has zero total area"):
        surface_frame(v, f)
    a = torch.tensor([[1.0, 0.0, 0.0], [-0.5, 0.75**0.5, 0.0], [-0.5, -(0.75**0.5), 0.0]], dtype=torch.float64)
    two = torch.cat([a, -a])  # two triangles whose centroids coincide: positive area, zero RMS radius
    with pytest.raises(ValidationError, match="verts: the surface has zero extent"):
        surface_frame(two, torch.tensor([[0, 1, 2], [3, 4, 5]]))


def test_trajectory_errors(tmp_path):
    v, f = icosphere(0)
    t = torch.tensor([0.0, 1.0])
    traj = torch.stack([v, v])
    with pytest.raises(ShapeError, match="verts: expected a tensor or an array, got"):
        save_trajectory(tmp_path / "a.npz", traj.tolist(), f, t)
    with pytest.raises(ShapeError, match="verts: expected shape \\(T, V, 3\\), got \\(12, 3\\)"):
        save_trajectory(tmp_path / "a.npz", v, f, t)
    with pytest.raises(ShapeError, match="faces: expected shape \\(F, 3\\)"):
        save_trajectory(tmp_path / "a.npz", traj, f.reshape(-1), t)
    bad = traj.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValidationError, match="verts: the trajectory contains NaN/Inf"):
        save_trajectory(tmp_path / "a.npz", bad, f, t)
    with pytest.raises(FileFormatError, match="path: no trajectory file at"):
        load_trajectory(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(FileFormatError, match=r"path: cannot read .* as \.npz"):
        load_trajectory(tmp_path / "junk.npz")
    np.savez(tmp_path / "shapes.npz", verts=np.zeros((2, 4, 3)), faces=np.zeros((2, 3)), times=np.zeros(3))
    with pytest.raises(FileFormatError, match="has verts \\(2, 4, 3\\), faces \\(2, 3\\), times \\(3,\\)"):
        load_trajectory(tmp_path / "shapes.npz")


def test_kernel_velocity_control_index_errors():
    c = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ShapeError, match="control_index: expected shape \\(4,\\) \\(one per control point\\), got \\(3,\\)"):
        KernelVelocity(c, sigma=1.0, control_index=torch.arange(3))
    with pytest.raises(ValidationError, match="carry=False contradicts it"):
        KernelVelocity(c, sigma=1.0, control_index=torch.arange(4), carry=False)
    field = KernelVelocity(c, sigma=1.0, control_index=torch.tensor([0, 1, 2, 9]))
    with pytest.raises(ShapeError, match="x0: control_index refers to 10\\+ points, got 5"):
        field.initial_state(torch.zeros(5, 3, dtype=torch.float64))


def _tiny(**kw):
    return {"code_dim": 4, "n_points": 16, "n_time_steps": 2, "progress": False,
            "field_options": {"hidden": 8, "fourier_features": 0}, **kw}


def test_train_conditioned_errors(monkeypatch):
    v, f = icosphere(0)
    with pytest.raises(ValidationError, match="resume: needs a checkpoint path"):
        train_conditioned((v, f), [(v * 1.1, f)], max_iter=1, resume=True, **_tiny())
    ds = importlib.import_module("geomot.deformation.dataset")
    monkeypatch.setattr(ds, "make_loss", lambda *a, **k: lambda x, *b, **c: x.sum() * float("nan"))
    with pytest.raises(NumericalError, match="train_conditioned: the loss is NaN/Inf at step 0; lower lr"):
        train_conditioned((v, f), [(v * 1.1, f)], max_iter=1, **_tiny())


def test_deform_conditioned_needs_targets():
    v, f = icosphere(0)
    fitted = train_conditioned((v, f), [(v * 1.1, f)], max_iter=1, **_tiny())
    with pytest.raises(ValidationError, match="targets: expected at least one target mesh, got an empty sequence"):
        deform_conditioned(fitted, (v, f), [])
