"""max-SW, DSW, vMF-DSW, EBSW: closed forms on translations, orderings, gradcheck after the ascent, non-finite
inputs, module shells, renamed arguments, CLI, errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch

import geomot
import geomot.losses.sliced_variants as sv
from geomot._core.errors import GeomotDeprecationWarning, ShapeError, ValidationError
from geomot.cli import main as cli_main
from geomot.cli.distance import DISTANCES, compute_distance
from geomot.ops.directions import random_directions
from geomot.structures import Mesh, PointCloud
from tests.conftest import icosphere

D64 = torch.float64
T = torch.tensor([1.0, -2.0, 0.5], dtype=D64)  # ||T|| = 2.29...


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cloud(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, generator=gen(seed), dtype=D64) * torch.tensor([0.3, 0.2, 0.1], dtype=D64)


def test_max_sw_of_a_translation_is_its_length():
    """max_theta W_2(theta#mu, theta#(mu + t)) = max_theta |theta . t| = ||t||."""
    x = cloud(200)
    val = geomot.max_sliced_wasserstein(x, x + T, max_iter=200, lr=0.5, generator=gen(1))
    assert float(val) == pytest.approx(float(T.norm()), rel=1e-4)
    sw = geomot.sliced_wasserstein(x, x + T, n_projections=500, generator=gen(1))
    assert float(sw) < float(val)


def test_max_sw_batched_and_stops_early():
    x = torch.stack([cloud(50, 1), cloud(50, 2)])
    y = x + torch.stack([T, -2 * T])[:, None, :]
    out = geomot.max_sliced_wasserstein(x, y, max_iter=300, lr=0.5, tol=1e-9, reduction="none", generator=gen(0))
    torch.testing.assert_close(out, torch.stack([T.norm(), 2 * T.norm()]), rtol=1e-4, atol=0)


def test_vmf_dsw_of_a_translation_closed_form():
    """At the optimum eps = t/|t|: vMF-DSW_2^2 = |t|^2 E[w^2] with E[w^2] = 1 - 2 A_3(kappa)/kappa on S^2."""
    x = cloud(40)
    y = x + T
    mx = float(T.norm())
    for kappa in (5.0, 200.0):
        a3 = 1.0 / np.tanh(kappa) - 1.0 / kappa
        exact = mx * np.sqrt(1.0 - 2.0 * a3 / kappa)
        got = float(geomot.vmf_sliced_wasserstein(x, y, kappa=kappa, n_projections=2000, max_iter=25, lr=0.3,
                                                  generator=gen(0)))
        assert got == pytest.approx(exact, rel=0.02)
    sw = float(geomot.sliced_wasserstein(x, y, n_projections=3000, generator=gen(0)))
    assert sw < got <= mx + 1e-9


def test_vmf_dsw_stops_at_tol():
    """One fixed set of samples moved by the ascent: a tolerance larger than any move stops after one step."""
    x, y = cloud(30, 1), cloud(30, 2) + T
    one = VMF(x, y, n_projections=20, max_iter=1, lr=0.2, generator=gen(0))
    assert float(VMF(x, y, n_projections=20, max_iter=50, lr=0.2, tol=10.0, generator=gen(0))) == float(one)
    many = VMF(x, y, n_projections=20, max_iter=50, lr=0.2, generator=gen(0))
    assert float(many) > float(one)


def test_dsw_improves_on_uniform_directions():
    x = cloud(150)
    y = x + T
    sw = float(geomot.sliced_wasserstein(x, y, n_projections=30, generator=gen(3)))
    dsw = float(geomot.distributional_sliced_wasserstein(
        x, y, n_projections=30, max_iter=30, lr=0.1, regularization=0.1, generator=gen(3)))
    assert sw < dsw <= float(T.norm()) + 1e-9


def test_dsw_module_trains_its_push_forward():
    mod = geomot.DistributionalSlicedWasserstein(dim=3, n_projections=20, max_iter=5, lr=0.05).double()
    before = mod.push_forward.weight.detach().clone()
    x = cloud(40)
    out = mod(x, x + T, generator=gen(0))
    assert out.shape == () and torch.isfinite(out)
    assert not torch.equal(before, mod.push_forward.weight.detach())


def test_ebsw_between_sw_and_largest_slice():
    x, y = cloud(60, 1), cloud(70, 2) + T
    theta = random_directions(40, 3, generator=gen(0), dtype=D64).T
    sw = geomot.sliced_wasserstein(x, y, projections=theta, root=False)
    for energy in ("exp", "identity", "square"):
        eb = geomot.energy_based_sliced_wasserstein(x, y, projections=theta, energy=energy, root=False)
        # Chebyshev's sum inequality: weights increasing in W_l give a weighted mean >= the plain mean
        assert float(sw) <= float(eb) + 1e-12
        assert float(eb) <= float(geomot.max_sliced_wasserstein(x, y, max_iter=100, lr=0.5, root=False,
                                                                  generator=gen(0))) + 1e-9
    # the identity energy in closed form: sum_l (W_l / sum W) W_l = sum W^2 / sum W
    w = geomot.sliced_wasserstein(x, y, projections=theta, root=False, reduction="none")  # mean W_l
    per_slice = torch.stack([geomot.sliced_wasserstein(x, y, projections=theta[:, i:i + 1], root=False)
                             for i in range(theta.shape[1])])
    assert float(per_slice.mean()) == pytest.approx(float(w), rel=1e-12)
    eb_id = geomot.energy_based_sliced_wasserstein(x, y, projections=theta, energy="identity", root=False)
    assert float(eb_id) == pytest.approx(float(per_slice.square().sum() / per_slice.sum()), rel=1e-12)


def test_ebsw_exp_matches_manual_softmax():
    x, y = cloud(30, 1), cloud(30, 2) + T
    theta = random_directions(8, 3, generator=gen(0), dtype=D64).T
    xs, ys = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    w = (xs - ys).square().mean(0)
    manual = (torch.softmax(w, 0) * w).sum().sqrt()
    got = geomot.energy_based_sliced_wasserstein(x, y, projections=theta)
    assert float(got) == pytest.approx(float(manual), rel=1e-12)


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (geomot.max_sliced_wasserstein, dict(max_iter=0)),
        (geomot.distributional_sliced_wasserstein, dict(max_iter=0, n_projections=4)),
        (geomot.vmf_sliced_wasserstein, dict(max_iter=0, n_projections=4, kappa=3.0)),
        (geomot.energy_based_sliced_wasserstein, dict(n_projections=4, detach_weights=False)),
        (geomot.energy_based_sliced_wasserstein, dict(n_projections=4, energy="identity", detach_weights=False)),
    ],
)
def test_gradcheck_variants(fn, kwargs):
    """Directions fixed by a fresh generator per call (the inner ascent is held fixed by design)."""
    x = cloud(5, 1).requires_grad_(True)
    y = (cloud(4, 2) + T).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, generator=gen(0), **kwargs), (x, y))


@pytest.mark.parametrize(
    "fn",
    [geomot.max_sliced_wasserstein, geomot.distributional_sliced_wasserstein, geomot.vmf_sliced_wasserstein,
     geomot.energy_based_sliced_wasserstein],
)
def test_variants_after_ascent_have_finite_gradients_with_ties(fn):
    base = cloud(6)
    x = torch.cat([base, base]).requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x, torch.cat([base, base]) + T, generator=gen(0)), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


X10, Y12 = cloud(10), cloud(12)
MSW, DSW, VMF, EBSW = (geomot.max_sliced_wasserstein, geomot.distributional_sliced_wasserstein,
                       geomot.vmf_sliced_wasserstein, geomot.energy_based_sliced_wasserstein)


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "error", "match"),
    [
        (MSW, (X10, Y12), dict(max_iter=-1), ValidationError, "max_iter: expected an integer >= 0"),
        (MSW, (X10, Y12), dict(lr=0.0), ValidationError, "lr: expected a positive value"),
        (MSW, (X10, Y12), dict(tol=-1.0), ValidationError, "tol: expected a non-negative value"),
        (MSW, (X10, Y12), dict(p=0.9), ValidationError, "p: expected a value >= 1"),
        (VMF, (X10, Y12), dict(kappa=-1.0), ValidationError, "kappa: expected a positive value"),
        (VMF, (X10, Y12), dict(n_projections=0), ValidationError, "n_projections: expected an integer >= 1"),
        (VMF, (X10, Y12), dict(max_iter=1.5), ValidationError, "max_iter: expected an integer >= 0"),
        (VMF, (X10, Y12), dict(tol=-1.0), ValidationError, "tol: expected a non-negative value"),
        (VMF, (X10[:, :1], Y12[:, :1]), {}, ShapeError, "x: vmf_sliced_wasserstein needs points of dimension >= 2"),
        (DSW, (X10, Y12), dict(n_projections=0), ValidationError, "n_projections: expected an integer >= 1"),
        (DSW, (X10, Y12), dict(regularization=-1.0), ValidationError, "regularization: expected a non-negative"),
        (DSW, (X10, Y12), dict(push_forward=lambda u: u), ValidationError, "push_forward: expected an nn.Module"),
        (DSW, (X10, Y12), dict(n_projections=7, push_forward=torch.nn.Linear(3, 2).double(), max_iter=1), ShapeError,
         r"push_forward: expected an output of shape \(7, 3\)"),
        (DSW, (X10, Y12), dict(push_forward=torch.nn.Linear(3, 3)), ShapeError,
         r"push_forward: parameters are torch\.float32"),
        (EBSW, (X10, Y12), dict(energy="cubic"), ValidationError, "energy: unknown energy 'cubic'"),
        (EBSW, (X10, torch.randn(5, 2, dtype=D64)), {}, ShapeError, "y: expected points of dimension 3"),
        (MSW, (torch.zeros(0, 3, dtype=D64), Y12), {}, ValidationError, "x: empty point set"),
        (MSW, (X10, Y12), dict(n_iters=3, max_iter=3), ValidationError, "got both 'n_iters' .deprecated. and 'max_iter'"),
    ],
)
def test_bad_input(fn, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


# -- non-finite inputs -------------------------------------------------------------------------------------------
ALL_LOSSES = {
    "sw": lambda x, y, **k: geomot.sliced_wasserstein(x, y, n_projections=8, **k),
    "cv-sw": lambda x, y, **k: geomot.sliced_wasserstein(x, y, n_projections=8, control_variate="upper", **k),
    "max-sw": lambda x, y, **k: MSW(x, y, max_iter=5, **k),
    "dsw": lambda x, y, **k: DSW(x, y, n_projections=8, max_iter=3, **k),
    "vmf-dsw": lambda x, y, **k: VMF(x, y, n_projections=8, max_iter=3, **k),
    "ebsw": lambda x, y, **k: EBSW(x, y, n_projections=8, **k),
}


@pytest.mark.parametrize("name", list(ALL_LOSSES))
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("m", [20, 17])  # sort path, quantile path
def test_non_finite_input_raises_or_gives_nan(name, bad, m):
    """Checks on: ValidationError naming the input. Checks off: a NaN coordinate gives a NaN value, an infinite one
    a non-finite value (inf or NaN), never 0 or another finite number; the gradient is not finite either."""
    fn = ALL_LOSSES[name]
    x, y = cloud(20, 1), cloud(m, 2) + T
    x[3, 1] = bad
    with pytest.raises(ValidationError, match=r"x: contains 1 NaN/Inf"):
        fn(x, y, generator=gen(0))
    xr = x.clone().requires_grad_(True)
    with geomot.data_checks(False):
        val = fn(xr, y, generator=gen(0))
        (g,) = torch.autograd.grad(val, xr)
    assert (torch.isnan(val) if bad != bad else not torch.isfinite(val)), (name, float(val.detach()))
    assert not torch.isfinite(g).all()
    with geomot.data_checks(False):  # one bad item of a batch spoils that item only
        out = fn(torch.stack([x, cloud(20, 3)]), y, reduction="none", generator=gen(0))
    assert not torch.isfinite(out[0]) and torch.isfinite(out[1])


@pytest.mark.parametrize("name", list(ALL_LOSSES))
@pytest.mark.parametrize("m", [600, 17])
def test_float32_overflow_is_never_a_finite_number(name, m):
    """float32 coordinates ~1e20: the squared differences overflow; the loss says so (inf/NaN), never 0."""
    fn = ALL_LOSSES[name]
    x = torch.randn(600, 3, generator=gen(1)) * 1e20
    y = torch.randn(m, 3, generator=gen(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow warning on the CPU paths
        for checks in (True, False):
            with geomot.data_checks(checks):
                val = fn(x, y, generator=gen(0))
            assert not torch.isfinite(val), (name, checks, float(val))


def test_dsw_push_forward_survives_a_nan_batch():
    f = sv._identity_push_forward(3, D64, torch.device("cpu"))
    with torch.no_grad():
        f.weight.add_(0.1)
    before = copy.deepcopy(f.state_dict())
    x = cloud(20, 1)
    x[0, 0] = float("nan")
    with geomot.data_checks(False):
        val = DSW(x, cloud(20, 2), push_forward=f, max_iter=3, lr=0.1, generator=gen(0))
    assert torch.isnan(val)
    for k, v in f.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    DSW(cloud(20, 1), cloud(20, 2), push_forward=f, max_iter=3, lr=0.1, generator=gen(0))
    assert not torch.equal(f.weight, before["weight"])  # a finite batch still trains it


# -- gradients after the ascent --------------------------------------------------------------------------------
@pytest.fixture
def frozen_ascent(monkeypatch):
    """The first ascent of a test runs for real; later calls reuse its result (the chosen directions held fixed
    while gradcheck perturbs the inputs)."""
    real, memo = sv._projected_ascent, []

    def once(objective, start, max_iter, lr, tol):
        if not memo:
            memo.append(real(objective, start, max_iter, lr, tol))
        return memo[0]

    monkeypatch.setattr(sv, "_projected_ascent", once)
    return memo


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (VMF, dict(n_projections=4, kappa=3.0, max_iter=30, lr=0.1)),
        (MSW, dict(max_iter=30, lr=0.3)),
    ],
)
def test_gradcheck_after_the_ascent(fn, kwargs, frozen_ascent):
    """After a real ascent the value is a smooth function of the inputs with the chosen directions held fixed,
    and its gradient is exactly that one."""
    x = cloud(5, 1).requires_grad_(True)
    y = (cloud(4, 2) + T).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, generator=gen(0), **kwargs), (x, y))
    start = sv.random_directions(1, 3, generator=gen(0), dtype=D64)
    assert float((frozen_ascent[0] - start).norm()) > 1e-2  # the ascent moved away from its random start


def test_gradcheck_dsw_after_training_its_push_forward():
    """The push-forward trained by a call defines the directions of the next calls; DSW through a trained,
    non-identity push-forward passes gradcheck, and the gradient of a call that trains is the gradient with the
    trained push-forward held fixed."""
    x = cloud(5, 1).requires_grad_(True)
    y = (cloud(4, 2) + T).requires_grad_(True)
    f = sv._identity_push_forward(3, D64, torch.device("cpu"))
    f0 = copy.deepcopy(f)
    kw = dict(n_projections=4, lr=0.1, regularization=0.1)
    val = DSW(x, y, push_forward=f, max_iter=10, generator=gen(0), **kw)
    gx, gy = torch.autograd.grad(val, (x, y))
    assert not torch.allclose(f.weight, f0.weight)
    replay = gen(0)  # the generator as the final draw of that call saw it: 10 draws of the ascent before
    for _ in range(10):
        sv.random_directions(4, 3, generator=replay, dtype=D64)
    ref = DSW(x, y, push_forward=f, max_iter=0, generator=replay, **kw)
    torch.testing.assert_close(ref, val)
    torch.testing.assert_close(torch.autograd.grad(ref, (x, y)), (gx, gy))
    assert torch.autograd.gradcheck(
        lambda a, b: DSW(a, b, push_forward=f, max_iter=0, generator=gen(1), **kw), (x, y))


# -- module shells -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (geomot.MaxSlicedWasserstein, dict(n_itres=5), "MaxSlicedWasserstein: unknown setting.*'n_itres'"),
        (geomot.MaxSlicedWasserstein, dict(max_iter=-2), "max_iter: expected an integer >= 0"),
        (geomot.MaxSlicedWasserstein, dict(lr=0), "lr: expected a positive value"),
        (geomot.MaxSlicedWasserstein, dict(reduction="avg"), "reduction: unknown reduction 'avg'"),
        (geomot.MaxSlicedWasserstein, dict(generator=gen(0)), "'generator' is a per-call input"),
        (geomot.VmfSlicedWasserstein, dict(kappa=0.0), "kappa: expected a positive value"),
        (geomot.VmfSlicedWasserstein, dict(p=0.5), "p: expected a value >= 1"),
        (geomot.VmfSlicedWasserstein, dict(measure="edges"), "measure: unknown mesh measure 'edges'"),
        (geomot.EnergyBasedSlicedWasserstein, dict(energy="cubic"), "energy: unknown energy 'cubic'"),
        (geomot.EnergyBasedSlicedWasserstein, dict(detach_weights=1), "detach_weights: expected True or False"),
        (geomot.EnergyBasedSlicedWasserstein, dict(projections="sobol"), "projections: unknown projection strategy"),
        (geomot.DistributionalSlicedWasserstein, dict(), "give dim= .* or push_forward="),
        (geomot.DistributionalSlicedWasserstein, dict(dim=0), "dim: expected an integer >= 1"),
        (geomot.DistributionalSlicedWasserstein, dict(dim=3, regularization=-1.0), "regularization: expected a non"),
        (geomot.DistributionalSlicedWasserstein, dict(push_forward="linear"), "push_forward: expected an nn.Module"),
    ],
)
def test_shells_check_settings_at_construction(cls, kwargs, match):
    with pytest.raises(ValidationError, match=match):
        cls(**kwargs)


def test_shells_are_keyword_only():
    with pytest.raises(TypeError, match="positional argument"):
        geomot.DistributionalSlicedWasserstein(3)
    with pytest.raises(TypeError, match="positional argument"):
        geomot.MaxSlicedWasserstein(2.0)


def test_dsw_shell_owns_its_push_forward_from_construction():
    """An optimiser or a checkpoint built before the first call sees the push-forward."""
    dsw = geomot.DistributionalSlicedWasserstein(dim=3, n_projections=10, max_iter=2).double()
    names = [n for n, _ in dsw.named_parameters()]
    assert names == ["push_forward.weight", "push_forward.bias"]
    assert set(dsw.state_dict()) == {"push_forward.weight", "push_forward.bias"}
    assert "push_forward" not in repr(dsw).split("(", 1)[1].split("\n")[0]
    dsw(cloud(10, 1), cloud(10, 2), generator=gen(0))
    assert dsw.settings["push_forward"] is dsw.push_forward  # .double() kept one module
    with pytest.raises(ValidationError, match=r"DistributionalSlicedWasserstein\.forward: 'max_iter': set it at"):
        dsw(cloud(10, 1), cloud(10, 2), max_iter=3)


def test_module_shells_match_functions():
    x, y = cloud(20, 1), cloud(25, 2) + T
    theta = random_directions(6, 3, generator=gen(2), dtype=D64).T
    for cls, fn, kw, inputs in [
        (geomot.MaxSlicedWasserstein, MSW, dict(max_iter=5), {}),
        (geomot.VmfSlicedWasserstein, VMF, dict(kappa=5.0, max_iter=3), {}),
        (geomot.EnergyBasedSlicedWasserstein, EBSW, dict(energy="identity"), {}),
        (geomot.EnergyBasedSlicedWasserstein, EBSW, dict(energy="square"), dict(projections=theta)),
        (geomot.EnergyBasedSlicedWasserstein, EBSW, dict(projections="qmc"), {}),
    ]:
        mod = cls(**kw)
        torch.testing.assert_close(mod(x, y, generator=gen(4), **inputs), fn(x, y, generator=gen(4), **kw, **inputs))


@pytest.mark.parametrize(
    ("fn", "cls", "old", "new"),
    [
        (MSW, geomot.MaxSlicedWasserstein, dict(n_iters=4, step=0.2), dict(max_iter=4, lr=0.2)),
        (VMF, geomot.VmfSlicedWasserstein, dict(n_iters=2, step=0.2), dict(max_iter=2, lr=0.2)),
        (DSW, None, dict(n_iters=2), dict(max_iter=2)),
    ],
)
def test_renamed_arguments_warn_and_still_work(fn, cls, old, new):
    x, y = cloud(15, 1), cloud(15, 2) + T
    ref = fn(x, y, generator=gen(0), **new)
    with pytest.warns(GeomotDeprecationWarning) as record:
        got = fn(x, y, generator=gen(0), **old)
    messages = [str(w.message) for w in record]
    for was, now in zip(old, new):
        assert any(f"'{was}' is deprecated" in m and f"use '{now}'" in m for m in messages), (was, messages)
    torch.testing.assert_close(got, ref)
    if cls is not None:
        with pytest.warns(GeomotDeprecationWarning, match="deprecated"):
            mod = cls(**old)
        assert mod.settings == {**new}
    else:
        with pytest.warns(GeomotDeprecationWarning, match="'n_iters' is deprecated"):
            mod = geomot.DistributionalSlicedWasserstein(dim=3, **old)
        assert mod.settings["max_iter"] == 2


# -- CLI -------------------------------------------------------------------------------------------------------
def test_compute_distance_every_loss():
    v, f = icosphere(1)
    a, b = Mesh(v, f), Mesh(v * 1.3 + 0.1, f)
    assert set(DISTANCES.names()) >= {"sw", "max-sw", "dsw", "vmf-dsw", "ebsw", "cv-sw", "sw-varifold"}
    for name in DISTANCES.names():
        val = compute_distance(a, b, loss=name, n_projections=20, seed=1)
        assert np.isfinite(val) and val > 0, name
    ref = geomot.sliced_wasserstein(a, b, measure="varifold", n_projections=20, generator=gen(1))
    assert compute_distance(a, b, loss="sw-varifold", n_projections=20, seed=1) == pytest.approx(float(ref))
    cloud_b = PointCloud(v * 1.3)
    assert compute_distance(a, cloud_b, loss="sw", n_projections=20) > 0  # mesh vs cloud: surface samples
    with pytest.raises(ValidationError, match="loss: 'sw-varifold' compares two meshes"):
        compute_distance(a, cloud_b, loss="sw-varifold")
    with pytest.raises(ValidationError, match="loss: unknown distance 'emd'"):
        compute_distance(a, b, loss="emd")


def test_cli_prints_a_value(tmp_path, capsys):
    trimesh = pytest.importorskip("trimesh")
    v, f = icosphere(1)
    trimesh.Trimesh(v.numpy(), f.numpy(), process=False).export(tmp_path / "a.off")
    trimesh.Trimesh((v * 1.2).numpy(), f.numpy(), process=False).export(tmp_path / "b.off")
    np.save(tmp_path / "c.npy", (v.numpy() + 0.5).astype(np.float32))
    rc = cli_main(["distance", str(tmp_path / "a.off"), str(tmp_path / "b.off"), "--loss", "sw-varifold",
                   "--n-projections", "30", "--seed", "3"])
    assert rc == 0
    out = float(capsys.readouterr().out.strip())
    assert out == pytest.approx(compute_distance(geomot.load(tmp_path / "a.off", dtype=D64),
                                                 geomot.load(tmp_path / "b.off", dtype=D64),
                                                 loss="sw-varifold", n_projections=30, seed=3))
    rc = cli_main(["distance", str(tmp_path / "a.off"), str(tmp_path / "c.npy"), "--loss", "max-sw", "--p", "1"])
    assert rc == 0 and float(capsys.readouterr().out.strip()) > 0
    rc = cli_main(["distance", str(tmp_path / "c.npy"), str(tmp_path / "c.npy"), "--loss", "sw-varifold"])
    assert rc == 2 and "compares two meshes" in capsys.readouterr().err


@pytest.mark.slow
def test_gradcheck_max_sw_at_its_optimum():
    """After convergence the envelope theorem makes the fixed-direction gradient the full gradient."""
    x = cloud(4, 1).requires_grad_(True)
    y = (cloud(4, 2) + T).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: geomot.max_sliced_wasserstein(a, b, max_iter=200, lr=0.4, tol=1e-10, generator=gen(0)),
        (x, y), atol=1e-5, rtol=1e-4,
    )
