"""Every error raised on bad input in the core, correspondence, metrics, ops and viz helpers, with its message.

Modules whose losses or readers have their own test files cover their errors there; this file holds the raise
sites of the smaller helpers, one parametrised case per site.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geomot
from geomot._core.checks import check_finite, check_lengths, check_same_device, check_weights
from geomot._core.deprecation import apply_renames, renamed_kwargs
from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot._core.registry import Registry
from geomot.losses._shell import LossModule


def _basis(n: int = 20, k: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    evecs = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0]
    evals = torch.linspace(0.0, 1.0, k, dtype=torch.float64)
    return evals, evecs, torch.ones(n, dtype=torch.float64)


# -- _core -----------------------------------------------------------------------------------------------------
def _core_cases():
    x = torch.tensor([1.0, float("nan"), float("inf")])
    return [
        (lambda: check_finite(x, "pts"), ValidationError, r"pts: contains 2 NaN/Inf value\(s\) \(shape \(3,\)\)"),
        (lambda: check_same_device(a=None), ValidationError, "check_same_device: no tensor given"),
        (
            lambda: check_weights(torch.zeros(2, 3), "w", shape=(2, 3)),
            ValidationError,
            "w: every item needs a positive total mass",
        ),
        (
            lambda: check_lengths(torch.tensor([0, 3]), "x_lengths", batch=2, max_len=3, device=torch.device("cpu")),
            ValidationError,
            r"x_lengths: values must lie in \[1, 3\], got min 0 and max 3",
        ),
        (lambda: Registry("thing").get("nope", arg="kind"), ValidationError, "kind: unknown thing 'nope'; valid: "),
        (lambda: geomot.no_such_name, AttributeError, "module 'geomot' has no attribute 'no_such_name'"),
    ]


@pytest.mark.parametrize("call, error, message", _core_cases())
def test_core_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_renamed_kwargs_warns_and_forwards_and_rejects_both():
    @renamed_kwargs(n_iters="max_iter")
    def solve(*, max_iter: int = 3) -> int:
        return max_iter

    with pytest.warns(GeomotDeprecationWarning, match="'n_iters' is deprecated.*use 'max_iter'"):
        assert solve(n_iters=7) == 7
    assert solve(max_iter=5) == 5
    with pytest.raises(ValidationError, match=r"got both 'n_iters' \(deprecated\) and 'max_iter'"):
        solve(n_iters=1, max_iter=2)
    assert apply_renames("f", {"a": "b"}, {"c": 1}) == {"c": 1}


# -- the loss-shell base -----------------------------------------------------------------------------------------
def _toy(x, y, *, scale: float = 1.0, x_weights=None, generator=None):
    return scale * (x - y).square().sum()


class _Toy(LossModule):
    function = staticmethod(_toy)

    def check_settings(self, settings):
        if settings.get("scale", 1.0) <= 0:
            raise ValidationError("scale: expected a positive value")
        return settings


def test_loss_module_calls_function_with_settings_and_inputs():
    x, y = torch.ones(3), torch.zeros(3)
    assert float(_Toy(scale=2.0)(x, y, x_weights=None)) == 6.0
    assert "scale=2.0" in repr(_Toy(scale=2.0))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: _Toy(scael=2.0), r"_Toy: unknown setting\(s\) 'scael'; valid: scale"),
        (lambda: _Toy(x_weights=None), r"_Toy: 'x_weights' is a per-call input: pass it to forward\(\)"),
        (lambda: _Toy(scale=0.0), "scale: expected a positive value"),
        (lambda: _Toy()(torch.ones(1), torch.ones(1), scale=3.0), r"_Toy.forward: 'scale': set it at construction"),
        (lambda: _Toy()(torch.ones(1), torch.ones(1), bogus=1), r"_Toy.forward: 'bogus': unknown input"),
    ],
)
def test_loss_module_errors(build, message):
    with pytest.raises(ValidationError, match=message):
        build()


# -- correspondence ----------------------------------------------------------------------------------------------
def _correspondence_cases():
    from geomot.correspondence.anchors import anchor_refine
    from geomot.correspondence.descriptors import hks
    from geomot.correspondence.fmaps import fmap_from_descriptors
    from geomot.correspondence.zoomout import fixed_size_iterations

    evals, evecs, mass = _basis()
    verts = torch.randn(20, 3, dtype=torch.float64)
    desc = torch.randn(20, 4, dtype=torch.float64)
    big = torch.zeros(8, 8, dtype=torch.float64)
    return [
        (
            lambda: anchor_refine(big, evecs, evecs, mass, mass, verts, None, verts, None),
            ShapeError,
            r"fmap_12: shape \(8, 8\) exceeds the bases \(6, 6 columns\)",
        ),
        (
            lambda: hks(evals, evecs, times=torch.tensor([1.0, -1.0], dtype=torch.float64)),
            ValidationError,
            "times: diffusion times must be positive",
        ),
        (
            lambda: fmap_from_descriptors(desc, desc, evals, evecs, mass, evals, evecs, mass, w_desc=0.0, w_lap=0.0),
            ValidationError,
            "w_desc/w_lap: at least one of them must be positive",
        ),
        (
            lambda: fixed_size_iterations(big, evecs, evecs, mass),
            ShapeError,
            r"fmap_12: size 8 exceeds the bases \(6, 6 columns\)",
        ),
    ]


@pytest.mark.parametrize("call, error, message", _correspondence_cases())
def test_correspondence_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


# -- metrics, ops, viz ---------------------------------------------------------------------------------------------
def _misc_cases():
    from geomot.metrics.intersections import as_numpy_mesh
    from geomot.ops.sampling import farthest_point_sampling
    from geomot.viz._data import Trajectory, as_scalars, as_shapes, as_trajectory, check_cmap
    from geomot.viz._scene import trajectory_scene

    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    f = np.array([[0, 1, 2]])
    v_nan = v.copy()
    v_nan[1, 0] = np.nan
    cloud = geomot.PointCloud(torch.tensor(v))
    traj = Trajectory(np.stack([v, v]), f, np.array([0.0, 1.0]))
    shapes = as_shapes((v, f))
    return [
        (lambda: as_numpy_mesh((v_nan, f)), ValidationError, r"mesh: verts contain 1 NaN/Inf value\(s\)"),
        (
            lambda: farthest_point_sampling(torch.zeros(4, 3), 5),
            ValidationError,
            "k: cannot choose 5 points out of 4",
        ),
        (lambda: check_cmap("no-such-map"), ValidationError, "cmap: unknown matplotlib colour map 'no-such-map'"),
        (lambda: as_shapes(cloud, f), ValidationError, "faces: not accepted with a PointCloud shape"),
        (lambda: as_shapes((v, f), f), ValidationError, r"faces: given twice \(in the shape pair and as faces=\)"),
        (
            lambda: as_trajectory("flow.npz", faces=f),
            ValidationError,
            "faces/times: not accepted with a trajectory file",
        ),
        (lambda: as_scalars(np.array([0.0, np.inf, 1.0]), shapes), ValidationError, "scalars: contains NaN/Inf"),
        (
            lambda: trajectory_scene(
                traj, np.array([0.0, np.nan, 1.0]), cmap="viridis", clim=None, color=None, target=None, title=None,
                point_size=None,
            ),
            ValidationError,
            "scalars: contains NaN/Inf values",
        ),
    ]


@pytest.mark.parametrize("call, error, message", _misc_cases())
def test_metrics_ops_viz_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()
