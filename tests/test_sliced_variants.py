"""max-SW, DSW, vMF-DSW, EBSW: closed forms on translations, orderings, gradcheck, module shells, CLI, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import geomot
from geomot._core.errors import ShapeError, ValidationError
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
    val = geomot.max_sliced_wasserstein(x, x + T, n_iters=200, step=0.5, generator=gen(1))
    assert float(val) == pytest.approx(float(T.norm()), rel=1e-4)
    sw = geomot.sliced_wasserstein(x, x + T, n_projections=500, generator=gen(1))
    assert float(sw) < float(val)


def test_max_sw_batched_and_stops_early():
    x = torch.stack([cloud(50, 1), cloud(50, 2)])
    y = x + torch.stack([T, -2 * T])[:, None, :]
    out = geomot.max_sliced_wasserstein(x, y, n_iters=300, step=0.5, tol=1e-9, reduction="none", generator=gen(0))
    torch.testing.assert_close(out, torch.stack([T.norm(), 2 * T.norm()]), rtol=1e-4, atol=0)


def test_vmf_dsw_of_a_translation_closed_form():
    """At the optimum eps = t/|t|: vMF-DSW_2^2 = |t|^2 E[w^2] with E[w^2] = 1 - 2 A_3(kappa)/kappa on S^2."""
    x = cloud(40)
    y = x + T
    mx = float(T.norm())
    for kappa in (5.0, 200.0):
        a3 = 1.0 / np.tanh(kappa) - 1.0 / kappa
        exact = mx * np.sqrt(1.0 - 2.0 * a3 / kappa)
        got = float(geomot.vmf_sliced_wasserstein(x, y, kappa=kappa, n_projections=2000, n_iters=25, step=0.3,
                                                  generator=gen(0)))
        assert got == pytest.approx(exact, rel=0.02)
    sw = float(geomot.sliced_wasserstein(x, y, n_projections=3000, generator=gen(0)))
    assert sw < got <= mx + 1e-9


def test_dsw_improves_on_uniform_directions():
    x = cloud(150)
    y = x + T
    sw = float(geomot.sliced_wasserstein(x, y, n_projections=30, generator=gen(3)))
    dsw = float(geomot.distributional_sliced_wasserstein(
        x, y, n_projections=30, n_iters=30, lr=0.1, regularization=0.1, generator=gen(3)))
    assert sw < dsw <= float(T.norm()) + 1e-9


def test_dsw_module_trains_its_push_forward():
    mod = geomot.DistributionalSlicedWasserstein(3, n_projections=20, n_iters=5, lr=0.05).double()
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
        assert float(eb) <= float(geomot.max_sliced_wasserstein(x, y, n_iters=100, step=0.5, root=False,
                                                                  generator=gen(0))) + 1e-9
    # the softmax energy by hand
    w = (theta.T @ x.T).sort(-1).values
    assert w.shape[0] == 40


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
        (geomot.max_sliced_wasserstein, dict(n_iters=0)),
        (geomot.distributional_sliced_wasserstein, dict(n_iters=0, n_projections=4)),
        (geomot.vmf_sliced_wasserstein, dict(n_iters=0, n_projections=4, kappa=3.0)),
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


def test_module_shells_match_functions():
    x, y = cloud(20, 1), cloud(25, 2) + T
    for cls, fn, kw in [
        (geomot.MaxSlicedWasserstein, geomot.max_sliced_wasserstein, dict(n_iters=5)),
        (geomot.VmfSlicedWasserstein, geomot.vmf_sliced_wasserstein, dict(kappa=5.0, n_iters=3)),
        (geomot.EnergyBasedSlicedWasserstein, geomot.energy_based_sliced_wasserstein, dict(energy="identity")),
    ]:
        mod = cls(**kw)
        torch.testing.assert_close(mod(x, y, generator=gen(4)), fn(x, y, generator=gen(4), **kw))


def test_bad_input():
    x, y = cloud(10), cloud(12)
    with pytest.raises(ValidationError, match="n_iters: expected an integer >= 0"):
        geomot.max_sliced_wasserstein(x, y, n_iters=-1)
    with pytest.raises(ValidationError, match="step: expected a positive value"):
        geomot.max_sliced_wasserstein(x, y, step=0.0)
    with pytest.raises(ValidationError, match="p: expected a value >= 1"):
        geomot.max_sliced_wasserstein(x, y, p=0.9)
    with pytest.raises(ValidationError, match="kappa: expected a positive value"):
        geomot.vmf_sliced_wasserstein(x, y, kappa=-1.0)
    with pytest.raises(ValidationError, match="n_projections: expected an integer >= 1"):
        geomot.vmf_sliced_wasserstein(x, y, n_projections=0)
    with pytest.raises(ValidationError, match="n_projections: expected an integer >= 1"):
        geomot.distributional_sliced_wasserstein(x, y, n_projections=0)
    with pytest.raises(ValidationError, match="energy: unknown energy 'cubic'"):
        geomot.energy_based_sliced_wasserstein(x, y, energy="cubic")
    with pytest.raises(ValidationError, match="regularization: expected a non-negative value"):
        geomot.distributional_sliced_wasserstein(x, y, regularization=-1.0)
    with pytest.raises(ShapeError, match=r"push_forward: expected an output of shape \(7, 3\)"):
        geomot.distributional_sliced_wasserstein(
            x, y, n_projections=7, push_forward=torch.nn.Linear(3, 2).double(), n_iters=1)
    with pytest.raises(ShapeError, match=r"push_forward: parameters are torch\.float32"):
        geomot.distributional_sliced_wasserstein(x, y, push_forward=torch.nn.Linear(3, 3))
    with pytest.raises(ShapeError, match="y: expected points of dimension 3"):
        geomot.energy_based_sliced_wasserstein(x, torch.randn(5, 2, dtype=D64))
    with pytest.raises(ValidationError, match="x: empty point set"):
        geomot.max_sliced_wasserstein(torch.zeros(0, 3, dtype=D64), y)


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
        lambda a, b: geomot.max_sliced_wasserstein(a, b, n_iters=200, step=0.4, tol=1e-10, generator=gen(0)),
        (x, y), atol=1e-5, rtol=1e-4,
    )
