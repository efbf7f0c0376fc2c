"""sliced_wasserstein: POT oracle, Gaussian closed form, metric properties, gradients, control variates, errors."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import geomot
from geomot._core.errors import ShapeError, ValidationError
from geomot.ops.directions import random_directions
from geomot.structures import Measure, Mesh, PointCloud, mesh_to_measure
from tests.conftest import icosphere

D64 = torch.float64
SW = geomot.sliced_wasserstein


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cloud(n: int, d: int = 3, seed: int = 0, shift: float = 0.0, dtype=D64) -> torch.Tensor:
    return torch.randn(n, d, generator=gen(seed), dtype=dtype) + shift


def dirs(L: int, d: int = 3, seed: int = 0, dtype=D64) -> torch.Tensor:
    """(D, L) directions, POT's convention."""
    return random_directions(L, d, generator=gen(seed), dtype=dtype).T


# -- oracle: POT -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize(("n", "m", "weighted"), [(40, 40, False), (40, 57, False), (33, 21, True)])
def test_matches_pot(p, n, m, weighted):
    x, y = cloud(n, seed=1), cloud(m, seed=2, shift=0.7)
    theta = dirs(25)
    a = torch.rand(n, generator=gen(3), dtype=D64) + 0.1 if weighted else None
    b = torch.rand(m, generator=gen(4), dtype=D64) + 0.1 if weighted else None
    ref = ot.sliced_wasserstein_distance(
        x.numpy(), y.numpy(), None if a is None else (a / a.sum()).numpy(), None if b is None else (b / b.sum()).numpy(),
        projections=theta.numpy(), p=p,
    )
    got = SW(x, y, x_weights=a, y_weights=b, projections=theta, p=p)
    assert float(got) == pytest.approx(float(ref), rel=1e-5)
    assert got.dtype == D64 and got.shape == ()


def test_float32_in_float32_out_and_close_to_float64():
    x, y = cloud(200, seed=1), cloud(150, seed=2, shift=1.0)
    theta = dirs(30)
    v64 = SW(x, y, projections=theta)
    v32 = SW(x.float(), y.float(), projections=theta.float())
    assert v32.dtype == torch.float32
    assert float(v32) == pytest.approx(float(v64), rel=1e-4)


# -- closed form: Gaussians ------------------------------------------------------------------------------------
def test_gaussians_closed_form():
    """theta#N(m, s^2 I) = N(theta.m, s^2): SW_2^2 = ||m1 - m2||^2 / d + (s1 - s2)^2."""
    d, n = 3, 4000
    m1, m2 = torch.tensor([0.0, 0.0, 0.0], dtype=D64), torch.tensor([1.0, -2.0, 0.5], dtype=D64)
    s1, s2 = 1.0, 2.0
    # stratified normal samples: exact quantiles per axis, randomly paired, give tiny sampling error
    q = torch.special.ndtri((torch.arange(n, dtype=D64) + 0.5) / n)
    g = gen(7)
    x = torch.stack([q[torch.randperm(n, generator=g)] for _ in range(d)], -1) * s1 + m1
    y = torch.stack([q[torch.randperm(n, generator=g)] for _ in range(d)], -1) * s2 + m2
    exact = float((m1 - m2).square().sum()) / d + (s1 - s2) ** 2
    got = SW(x, y, n_projections=400, projections="qmc", root=False, generator=gen(8))
    assert float(got) == pytest.approx(exact, rel=0.02)


# -- properties ------------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(3, 25), st.integers(3, 25), st.integers(0, 10_000), st.floats(1.0, 3.0))
def test_metric_properties_and_permutation_invariance(n, m, seed, p):
    x, y, z = cloud(n, seed=seed), cloud(m, seed=seed + 1, shift=0.5), cloud(n + 2, seed=seed + 2)
    theta = dirs(16, seed=seed)
    xy = SW(x, y, projections=theta, p=p)
    assert float(xy) == pytest.approx(float(SW(y, x, projections=theta, p=p)), rel=1e-10, abs=1e-12)
    assert float(SW(x, x.clone(), projections=theta, p=p)) == pytest.approx(0.0, abs=1e-12)
    # SW with a fixed direction set is an L^p mixture of W_p metrics: triangle inequality holds exactly
    assert float(xy) <= float(SW(x, z, projections=theta, p=p) + SW(z, y, projections=theta, p=p)) + 1e-10
    perm = torch.randperm(n, generator=gen(seed))
    assert float(SW(x[perm], y, projections=theta, p=p)) == pytest.approx(float(xy), rel=1e-10, abs=1e-12)
    shift = torch.randn(3, generator=gen(seed), dtype=D64)
    if p == 2.0:
        assert float(SW(x + shift, y + shift, projections=theta)) == pytest.approx(float(xy), rel=1e-8)


def test_translation_gives_projected_shift():
    """SW_2^2(x, x + t) = mean_l (theta_l . t)^2 exactly for any direction set."""
    x = cloud(50)
    t = torch.tensor([0.3, -1.0, 2.0], dtype=D64)
    theta = dirs(40)
    got = SW(x, x + t, projections=theta, root=False)
    assert float(got) == pytest.approx(float((t @ theta).square().mean()), rel=1e-10)


# -- batches, padding, reductions, structures ------------------------------------------------------------------
def test_batched_padded_equals_loop():
    theta = dirs(20)
    xs = [cloud(n, seed=i) for i, n in enumerate((12, 7, 9))]
    ys = [cloud(n, seed=10 + i, shift=1.0) for i, n in enumerate((12, 11, 4))]
    xp = torch.nn.utils.rnn.pad_sequence(xs, batch_first=True, padding_value=float("nan"))
    yp = torch.nn.utils.rnn.pad_sequence(ys, batch_first=True, padding_value=123.0)
    xl, yl = torch.tensor([12, 7, 9]), torch.tensor([12, 11, 4])
    out = SW(xp, yp, x_lengths=xl, y_lengths=yl, projections=theta, reduction="none")
    ref = torch.stack([SW(a, b, projections=theta) for a, b in zip(xs, ys)])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert float(SW(xp, yp, x_lengths=xl, y_lengths=yl, projections=theta)) == pytest.approx(float(ref.mean()))
    assert float(SW(xp, yp, x_lengths=xl, y_lengths=yl, projections=theta, reduction="sum")) == pytest.approx(
        float(ref.sum()))


def test_single_target_broadcasts_over_batch():
    x = torch.stack([cloud(10, seed=i) for i in range(4)])
    y = cloud(13, seed=9)
    theta = dirs(8)
    out = SW(x, y, projections=theta, reduction="none")
    assert out.shape == (4,)
    torch.testing.assert_close(out[2], SW(x[2], y, projections=theta))


def test_weights_are_normalised_and_structures_accepted():
    x, y = cloud(20, seed=1), cloud(30, seed=2)
    a = torch.rand(20, generator=gen(1), dtype=D64) + 0.1
    theta = dirs(10)
    ref = SW(x, y, x_weights=a, projections=theta)
    assert float(SW(x, y, x_weights=5.0 * a, projections=theta)) == pytest.approx(float(ref), rel=1e-12)
    assert float(SW(Measure(x, a), PointCloud(y), projections=theta)) == pytest.approx(float(ref), rel=1e-12)


def test_mesh_default_is_varifold():
    v, f = icosphere(1)
    a, b = Mesh(v, f), Mesh(v * 1.5 + 0.2, f)
    theta6 = dirs(12, d=6)
    ref = SW(mesh_to_measure(a, "varifold"), mesh_to_measure(b, "varifold"), projections=theta6)
    assert float(SW(a, b, projections=theta6)) == pytest.approx(float(ref), rel=1e-12)
    assert float(SW(a, b, measure="varifold", projections=theta6)) == pytest.approx(float(ref), rel=1e-12)
    theta3 = dirs(12)
    ref_v = SW(mesh_to_measure(a, "vertices"), mesh_to_measure(b, "vertices"), projections=theta3)
    assert float(SW(a, b, measure="vertices", projections=theta3)) == pytest.approx(float(ref_v), rel=1e-12)
    # gradients reach the vertices through the varifold atoms
    vv = v.clone().requires_grad_(True)
    SW(Mesh(vv, f), b, projections=theta6).backward()
    assert torch.isfinite(vv.grad).all() and vv.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["random", "qmc", "orthogonal"])
def test_projection_strategies_estimate_the_same_value(kind):
    x, y = cloud(300, seed=1), cloud(300, seed=2, shift=0.5) * 1.5
    ref = SW(x, y, n_projections=20000, generator=gen(0))
    got = SW(x, y, n_projections=400, projections=kind, generator=gen(1))
    assert float(got) == pytest.approx(float(ref), rel=0.03)


def test_module_shell_matches_function():
    x, y = cloud(20, seed=1), cloud(25, seed=2)
    theta = dirs(9)
    mod = geomot.SlicedWasserstein(p=3.0, control_variate="upper")
    assert "control_variate='upper'" in repr(mod)
    torch.testing.assert_close(mod(x, y, projections=theta), SW(x, y, p=3.0, control_variate="upper", projections=theta))
    qmc = geomot.SlicedWasserstein(projections="qmc", n_projections=30)
    assert "projections='qmc'" in repr(qmc)
    torch.testing.assert_close(qmc(x, y, generator=gen(3)), SW(x, y, projections="qmc", n_projections=30,
                                                                 generator=gen(3)))
    # a per-call tensor of directions takes the place of the strategy
    torch.testing.assert_close(qmc(x, y, projections=theta), SW(x, y, projections=theta))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n_projections=0), "n_projections: expected an integer >= 1, got 0"),
        (dict(reduction="avg"), "reduction: unknown reduction 'avg'"),
        (dict(p=0.5), "p: expected a value >= 1"),
        (dict(projections="sobol"), "projections: unknown projection strategy 'sobol'"),
        (dict(projections=torch.eye(3)), "projections: a tensor of directions is a per-call input"),
        (dict(control_variate="middle"), "control_variate: unknown control variate 'middle'"),
        (dict(measure="edges"), "measure: unknown mesh measure 'edges'"),
        (dict(measure_options=3), "measure_options: expected a dict or None, got int"),
        (dict(root="yes"), "root: expected True or False"),
        (dict(n_projection=10), "SlicedWasserstein: unknown setting.*'n_projection'"),
        (dict(x_weights=torch.ones(3)), "'x_weights' is a per-call input"),
    ],
)
def test_module_shell_checks_settings_at_construction(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        geomot.SlicedWasserstein(**kwargs)


def test_module_shell_is_keyword_only_and_forward_takes_inputs_only():
    with pytest.raises(TypeError, match="positional argument"):
        geomot.SlicedWasserstein(2.0)
    with pytest.raises(ValidationError, match=r"SlicedWasserstein\.forward: 'p': set it at construction"):
        geomot.SlicedWasserstein()(cloud(5), cloud(5), p=3.0)


# -- gradients -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [dict(p=2.0), dict(p=1.5), dict(p=2.0, control_variate="lower"), dict(p=2.0, control_variate="upper"),
     dict(p=3.0, root=False)],
)
def test_gradcheck_equal_sizes(kwargs):
    x = cloud(6, seed=1).requires_grad_(True)
    y = cloud(6, seed=2, shift=0.5).requires_grad_(True)
    theta = dirs(5)
    assert torch.autograd.gradcheck(lambda a, b: SW(a, b, projections=theta, **kwargs), (x, y))


def test_gradcheck_weights_unequal_sizes_and_directions():
    x = cloud(5, seed=1).requires_grad_(True)
    y = cloud(4, seed=2, shift=0.5).requires_grad_(True)
    a = (torch.rand(5, generator=gen(1), dtype=D64) + 0.5).requires_grad_(True)
    theta = dirs(3).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda x_, y_, a_, t_: SW(x_, y_, x_weights=a_, projections=t_, control_variate="upper"), (x, y, a, theta)
    )


def test_gradcheck_padded_batch():
    x = torch.randn(2, 5, 3, generator=gen(1), dtype=D64).requires_grad_(True)
    y = torch.randn(2, 4, 3, generator=gen(2), dtype=D64).requires_grad_(True)
    xl, yl = torch.tensor([5, 3]), torch.tensor([2, 4])
    theta = dirs(4)
    assert torch.autograd.gradcheck(
        lambda a, b: SW(a, b, x_lengths=xl, y_lengths=yl, projections=theta, reduction="none"), (x, y)
    )


def test_gradient_matches_pot_autograd():
    x = cloud(60, seed=1).requires_grad_(True)
    y = cloud(60, seed=2, shift=1.0)
    theta = dirs(30)
    SW(x, y, projections=theta).backward()
    xr = x.detach().clone().requires_grad_(True)
    ot.sliced_wasserstein_distance(xr, y, projections=theta).backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-8, atol=1e-10)


def test_ties_duplicates_and_identical_inputs_give_finite_gradients():
    base = cloud(5, seed=1)
    x = torch.cat([base, base, base[:2]]).requires_grad_(True)  # duplicated points
    y = torch.cat([base, base, base[:2]]) + torch.tensor([1.0, 0.0, 0.0], dtype=D64)
    for kwargs in (dict(), dict(p=1.0), dict(control_variate="upper"), dict(x_weights=torch.ones(12, dtype=D64))):
        (g,) = torch.autograd.grad(SW(x, y, n_projections=7, generator=gen(0), **kwargs), x)
        assert torch.isfinite(g).all()
    (g,) = torch.autograd.grad(SW(x, x.detach().clone(), n_projections=7, generator=gen(0)), x)
    assert torch.isfinite(g).all() and float(g.abs().max()) == 0.0


# -- control variates ------------------------------------------------------------------------------------------
def test_control_variates_unbiased_and_lower_variance():
    x = cloud(100, seed=1) * torch.tensor([1.0, 0.4, 0.2], dtype=D64)
    y = cloud(100, seed=2) * torch.tensor([0.3, 1.2, 0.5], dtype=D64) + torch.tensor([2.0, -1.0, 0.5], dtype=D64)
    truth = float(SW(x, y, n_projections=100_000, root=False, generator=gen(99)))
    g = gen(5)
    est = {None: [], "lower": [], "upper": []}
    for _ in range(400):
        theta = random_directions(10, 3, generator=g, dtype=D64).T
        for cv in est:
            est[cv].append(float(SW(x, y, projections=theta, control_variate=cv, root=False)))
    means = {k: float(np.mean(v)) for k, v in est.items()}
    var = {k: float(np.var(v)) for k, v in est.items()}
    sem = math.sqrt(var[None] / 400)
    for cv in ("lower", "upper"):
        assert abs(means[cv] - truth) < 3 * sem, (cv, means[cv], truth)
        assert var[cv] < var[None] / 3, (cv, var)
    assert abs(means[None] - truth) < 4 * sem


def test_control_variate_expectations_are_exact_on_average():
    """E_theta G = ||dm||^2/d (+ traces/d) : check the registered closed forms against many directions."""
    from geomot.losses.sliced import CONTROL_VARIATES, prepare_pair

    x, y = cloud(30, seed=1), cloud(40, seed=2, shift=1.0) * 2.0
    pair = prepare_pair(x, y)
    theta = random_directions(200_000, 3, generator=gen(1), dtype=D64)
    xp, yp = theta @ pair.x.mT, theta @ pair.y.mT
    for name in ("lower", "upper"):
        g, g_mean = CONTROL_VARIATES.get(name)(pair, xp, yp)
        assert float(g.mean()) == pytest.approx(float(g_mean[0]), rel=0.01)


# -- directions given as a tensor -------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [SW, geomot.energy_based_sliced_wasserstein])
def test_projection_tensors_are_normalised(fn):
    """Only the directions of the columns matter: 2 * theta, or columns of any lengths, give the value of theta."""
    x, y = cloud(20, seed=1), cloud(23, seed=2, shift=0.5)
    theta = dirs(6)
    ref = fn(x, y, projections=theta)
    assert float(fn(x, y, projections=2.0 * theta)) == pytest.approx(float(ref), rel=1e-12)
    lengths = torch.linspace(0.1, 30.0, 6, dtype=D64)
    assert float(fn(x, y, projections=theta * lengths)) == pytest.approx(float(ref), rel=1e-12)
    batched = torch.stack([theta, 3.0 * theta])
    out = fn(torch.stack([x, x]), y, projections=batched, reduction="none")
    torch.testing.assert_close(out, torch.stack([ref, ref]))


def test_projection_tensor_gradient_is_tangent():
    """Normalised directions: the gradient with respect to a column is orthogonal to it (scale invariance)."""
    x, y = cloud(8, seed=1), cloud(8, seed=2, shift=0.5)
    theta = (2.0 * dirs(4)).requires_grad_(True)
    (g,) = torch.autograd.grad(SW(x, y, projections=theta), theta)
    assert float(g.abs().max()) > 1e-3
    torch.testing.assert_close((g * theta.detach()).sum(0), torch.zeros(4, dtype=D64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fn", [SW, geomot.energy_based_sliced_wasserstein])
def test_degenerate_projection_tensors(fn):
    x, y = cloud(10), cloud(12, shift=1.0)
    theta = dirs(5)
    zero = theta.clone()
    zero[:, 3] = 0.0
    with pytest.raises(ValidationError, match=r"projections: column 3 is zero"):
        fn(x, y, projections=zero)
    with pytest.raises(ValidationError, match=r"projections: column 2 of item 1 is zero"):
        batched = torch.stack([theta, theta.clone()])
        batched[1, :, 2] = 0.0
        fn(torch.stack([x, x]), y, projections=batched)
    nan = theta.clone()
    nan[1, 0] = float("nan")
    with pytest.raises(ValidationError, match=r"projections: contains 1 NaN/Inf"):
        fn(x, y, projections=nan)
    with geomot.data_checks(False):  # unchecked: NaN, never a silent 0
        assert torch.isnan(fn(x, y, projections=zero))
        assert torch.isnan(fn(x, y, projections=nan))


# -- bad input ---------------------------------------------------------------------------------------------------
def test_bad_input_messages():
    x, y = cloud(10), cloud(12)
    with pytest.raises(ShapeError, match="y: expected points of dimension 3"):
        SW(x, cloud(12, d=2))
    with pytest.raises(ValidationError, match="p: expected a value >= 1"):
        SW(x, y, p=0.5)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValidationError, match="n_projections: expected an integer >= 1"):
            SW(x, y, n_projections=bad)
    with pytest.raises(ValidationError, match="x: empty point set"):
        SW(torch.zeros(0, 3, dtype=D64), y)
    with pytest.raises(ValidationError, match=r"y: .*NaN/Inf"):
        SW(x, torch.cat([y, torch.full((1, 3), float("inf"), dtype=D64)]))
    with pytest.raises(ValidationError, match=r"x: .*NaN/Inf"):
        SW(torch.cat([x, torch.full((1, 3), float("nan"), dtype=D64)]), y)
    with pytest.raises(ValidationError, match="x_weights: weights must be non-negative"):
        SW(x, y, x_weights=-torch.ones(10, dtype=D64))
    with pytest.raises(ValidationError, match="x_weights: every item needs a positive total mass"):
        SW(x, y, x_weights=torch.zeros(10, dtype=D64))
    with pytest.raises(ShapeError, match="x_weights: expected shape"):
        SW(x, y, x_weights=torch.ones(9, dtype=D64))
    xb = torch.stack([x, x])
    with pytest.raises(ValidationError, match=r"x_lengths: values must lie in \[1, 10\]"):
        SW(xb, y, x_lengths=torch.tensor([3, 11]))
    with pytest.raises(ValidationError, match=r"x_lengths: values must lie in \[1, 10\]"):
        SW(xb, y, x_lengths=torch.tensor([0, 4]))
    with pytest.raises(ShapeError, match="y: expected a batch of 2 items"):
        SW(xb, torch.stack([y, y, y]))
    with pytest.raises(ValidationError, match="projections: unknown projection strategy 'sobol'; valid: orthogonal, qmc"):
        SW(x, y, projections="sobol")
    with pytest.raises(ShapeError, match=r"projections: expected shape \(3, L\)"):
        SW(x, y, projections=torch.ones(5, 3, dtype=D64))
    with pytest.raises(ShapeError, match=r"projections: expected a batch of 2 direction sets, got \(3, 3, 4\)"):
        SW(torch.stack([x, x]), y, projections=torch.ones(3, 3, 4, dtype=D64))
    with pytest.raises(ShapeError, match=r"projections: expected dtype torch\.float64 on cpu, got torch\.float32"):
        SW(x, y, projections=torch.ones(3, 4))
    with pytest.raises(ValidationError, match="control_variate: unknown control variate 'middle'"):
        SW(x, y, control_variate="middle")
    with pytest.raises(ValidationError, match="reduction: unknown reduction 'max'"):
        SW(x, y, reduction="max")
    with pytest.raises(ShapeError, match=r"y: expected dtype torch\.float64"):
        SW(x, y.float())


def test_measure_is_irrelevant_for_non_mesh_inputs():
    """``measure=`` concerns meshes only: tensors (dense or weighted), PointClouds and Measures ignore it."""
    x, y = cloud(10), cloud(12, shift=0.3)
    a = torch.rand(10, generator=gen(1), dtype=D64) + 0.1
    theta = dirs(7)
    for kw in (dict(), dict(x_weights=a)):
        ref = SW(x, y, projections=theta, **kw)
        for measure in ("varifold", "vertices", "samples"):
            assert float(SW(x, y, projections=theta, measure=measure, **kw)) == pytest.approx(float(ref), rel=1e-12)
    assert float(SW(PointCloud(x), Measure(y), projections=theta, measure="faces")) == pytest.approx(
        float(SW(x, y, projections=theta)), rel=1e-12)


def test_mesh_against_a_cloud_names_measure_as_the_fix():
    v, f = icosphere(1)
    mesh, pts = Mesh(v, f), v * 1.1
    with pytest.raises(ShapeError, match=r"6-D varifold.*measure='vertices', 'faces' or 'samples'"):
        SW(mesh, pts)
    with pytest.raises(ShapeError, match=r"6-D varifold.*measure='vertices', 'faces' or 'samples'"):
        SW(PointCloud(pts), mesh)
    theta = dirs(9)
    assert float(SW(mesh, pts, measure="vertices", projections=theta)) == pytest.approx(
        float(SW(mesh_to_measure(mesh, "vertices"), pts, projections=theta)), rel=1e-12)


def test_torch_sort_path_matches_numpy_path(monkeypatch):
    """The device-generic path (torch.sort, used on CUDA) gives the same values and gradients as the CPU one."""
    import geomot.transport.ot1d as ot1d

    x = cloud(30, seed=1).requires_grad_(True)
    y = cloud(30, seed=2, shift=0.5)
    y_small = cloud(17, seed=3)
    a = torch.rand(30, generator=gen(1), dtype=D64) + 0.1
    theta = dirs(12)
    cases = [dict(y=y), dict(y=y_small), dict(y=y, x_weights=a), dict(y=y, control_variate="upper")]
    ref = []
    for kw in cases:
        kw = dict(kw)
        v = SW(x, kw.pop("y"), projections=theta, **kw)
        ref.append((v.detach(), torch.autograd.grad(v, x)[0]))
    monkeypatch.setattr(ot1d, "_NUMPY_SORT_DTYPES", ())
    for kw, (v_ref, g_ref) in zip(cases, ref):
        kw = dict(kw)
        v = SW(x, kw.pop("y"), projections=theta, **kw)
        torch.testing.assert_close(v.detach(), v_ref, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(torch.autograd.grad(v, x)[0], g_ref, rtol=1e-10, atol=1e-12)
