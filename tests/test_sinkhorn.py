"""Sinkhorn solver: closed forms, POT oracles, batching/padding, backends, plan, initialisers, bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import ot
import pytest
import torch

import geomot
from geomot._core import ConvergenceWarning, ShapeError, ValidationError, list_to_padded
from geomot.structures import Measure, PointCloud
from geomot.transport import SINKHORN_INITS, pairwise_cost, sinkhorn, sinkhorn_from_cost

F64 = torch.float64


def _problem(n=40, m=30, d=2, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=dtype)
    y = torch.rand(m, d, generator=g, dtype=dtype) * 0.8 + 0.3
    a = torch.rand(n, generator=g, dtype=dtype) + 0.2
    b = torch.rand(m, generator=g, dtype=dtype) + 0.2
    return x, y, a / a.sum(), b / b.sum()


def _janati(m1, s1, m2, s2, eps):
    """Entropic OT between N(m1, s1^2) and N(m2, s2^2) for <P, |x-y|^2> + eps KL(P | a x b), eps = 2 sigma^2
    (Janati, Muzellec, Peyré, Cuturi, NeurIPS 2020, Theorem 1 with d = 1)."""
    sig2 = eps / 2
    big_a, big_b = s1**2, s2**2
    d = math.sqrt(4 * big_a * big_b + sig2**2)
    return (m1 - m2) ** 2 + big_a + big_b - d + sig2 * (1 - math.log(2 * sig2)) + sig2 * math.log(d + sig2)


@pytest.mark.parametrize("eps", [0.5, 1.0, 2.0])
def test_closed_form_entropic_gaussians_1d(eps):
    t = torch.linspace(-8, 8, 1201, dtype=F64)[:, None]
    m1, s1, m2, s2 = 0.3, 1.0, -0.2, 1.5
    a = torch.exp(-((t[:, 0] - m1) ** 2) / (2 * s1**2))
    b = torch.exp(-((t[:, 0] - m2) ** 2) / (2 * s2**2))
    r = sinkhorn(t, t, x_weights=a, y_weights=b, eps=eps, tol=1e-10)
    assert bool(r.converged)
    assert float(r.value) == pytest.approx(_janati(m1, s1, m2, s2, eps), rel=2e-5)


@pytest.mark.parametrize("method", ["scaling", "log", "sns"])
def test_matches_pot_sinkhorn2_and_potentials(method):
    x, y, a, b = _problem()
    eps = 0.05
    cost = ((x[:, None] - y[None]) ** 2).sum(-1).numpy()
    ref, log = ot.sinkhorn(a.numpy(), b.numpy(), cost, eps, method="sinkhorn_log", stopThr=1e-14,
                           numItermax=100000, log=True)
    ref_cost = float((ref * cost).sum())
    ref2 = float(ot.sinkhorn2(a.numpy(), b.numpy(), cost, eps, method="sinkhorn_log", stopThr=1e-14,
                              numItermax=100000))
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=eps, tol=1e-12, method=method, max_iter=20000)
    assert bool(r.converged)
    assert float(r.transport_cost) == pytest.approx(ref2, rel=1e-6)
    assert float(r.transport_cost) == pytest.approx(ref_cost, rel=1e-6)
    f_pot = eps * (log["log_u"] - np.log(a.numpy()))
    g_pot = eps * (log["log_v"] - np.log(b.numpy()))
    shift = float(r.f.numpy().mean() - f_pot.mean())
    np.testing.assert_allclose(r.f.numpy() - shift, f_pot, atol=1e-8)
    np.testing.assert_allclose(r.g.numpy() + shift, g_pot, atol=1e-8)
    np.testing.assert_allclose(r.plan.dense().numpy(), ref, atol=1e-10)


@pytest.mark.parametrize("tau", [0.1, 1.0, (0.5, None)])
def test_unbalanced_matches_pot(tau):
    x, y, a, b = _problem()
    eps = 0.05
    cost = ((x[:, None] - y[None]) ** 2).sum(-1).numpy()
    reg_m = tau if not isinstance(tau, tuple) else (tau[0], float("inf"))
    ref = ot.sinkhorn_unbalanced(a.numpy(), b.numpy(), cost, eps, reg_m, method="sinkhorn", stopThr=1e-15,
                                 numItermax=100000)
    for method in ("scaling", "log"):
        r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=eps, tau=tau, tol=1e-12, method=method, max_iter=20000)
        assert bool(r.converged)
        np.testing.assert_allclose(r.plan.dense().numpy(), ref, atol=1e-10)
    # the value is the primal objective at the optimum
    p = torch.as_tensor(ref)
    kl = lambda p_, q_: float((p_ * torch.log(p_ / q_) - p_ + q_).sum())  # noqa: E731
    t_x, t_y = (tau, tau) if not isinstance(tau, tuple) else (tau[0], None)
    primal = float((p * torch.as_tensor(cost)).sum()) + eps * kl(p, a[:, None] * b[None])
    primal += t_x * kl(p.sum(1), a) + (0.0 if t_y is None else t_y * kl(p.sum(0), b))
    assert float(r.value) == pytest.approx(primal, rel=1e-6)


def test_unbalanced_tends_to_balanced():
    x, y, a, b = _problem()
    bal = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.2, tol=1e-11)
    gaps = [abs(float(sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.2, tau=t, tol=1e-9, max_iter=20000).value
                      - bal.value)) for t in (0.3, 3.0, 30.0, 300.0)]
    assert all(g2 < g1 / 5 for g1, g2 in itertools.pairwise(gaps))
    assert gaps[-1] < 1e-3 * float(bal.value)


def test_batched_equals_loop_and_padding_respected():
    xs = [torch.rand(n, 3, dtype=F64) for n in (5, 9, 7)]
    ys = [torch.rand(n, 3, dtype=F64) + 0.2 for n in (8, 4, 6)]
    x, lx = list_to_padded(xs, pad_value=123.0)
    y, ly = list_to_padded(ys, pad_value=-50.0)
    for backend in ("dense", "online"):
        rb = sinkhorn(x, y, x_lengths=lx, y_lengths=ly, eps=0.1, tol=1e-11, backend=backend)
        assert rb.value.shape == (3,) and rb.f.shape == (3, 9) and rb.g.shape == (3, 8)
        for i, (xi, yi) in enumerate(zip(xs, ys)):
            ri = sinkhorn(xi, yi, eps=0.1, tol=1e-11)
            assert float(rb.value[i]) == pytest.approx(float(ri.value), rel=1e-9)
            np.testing.assert_allclose(rb.f[i, : len(xi)].numpy(), ri.f.numpy(), atol=1e-8)
            assert bool((rb.f[i, len(xi):] == 0).all()) and bool((rb.g[i, len(yi):] == 0).all())
            plan = rb.plan.dense()[i]
            assert float(plan[len(xi):].abs().sum()) == 0 and float(plan[:, len(yi):].abs().sum()) == 0
            np.testing.assert_allclose(plan[: len(xi), : len(yi)].numpy(), ri.plan.dense().numpy(), atol=1e-12)


def test_online_backend_matches_dense_values_and_gradients():
    x, y, a, b = _problem(n=50, m=45, d=3)
    outs = []
    for backend in ("dense", "online"):
        xr, yr = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        ar, br = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        r = sinkhorn(xr, yr, x_weights=ar, y_weights=br, eps=0.05, tol=1e-11, backend=backend, chunk_bytes=20000)
        (r.value + 0.5 * r.transport_cost).backward()
        outs.append((r.value.detach(), r.f, xr.grad, yr.grad, ar.grad, br.grad))
    for u, v in zip(*outs):
        np.testing.assert_allclose(u.numpy(), v.numpy(), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kw", [dict(relaxation=1.5), dict(tau=0.5, relaxation=1.3), dict(tau=(None, 0.4)),
                                dict(eps_scaling=0.5, init="zero")])
def test_online_one_pass_iterations_match_dense(kw):
    # the online loop runs one fused kernel pass per iteration (rows exact, columns from the updated rows)
    x, y, a, b = _problem(n=60, m=45, d=3)
    rd = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.02, tol=1e-11, max_iter=20000, backend="dense", **kw)
    ro = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.02, tol=1e-11, max_iter=20000, backend="online",
                  chunk_bytes=8000, **kw)
    assert bool(ro.converged) and float(ro.marginal_error) <= 1e-11
    assert float(ro.value) == pytest.approx(float(rd.value), rel=1e-9)
    assert float(ro.transport_cost) == pytest.approx(float(rd.transport_cost), rel=1e-8)
    np.testing.assert_allclose(ro.f.numpy(), rd.f.numpy(), atol=1e-7)
    np.testing.assert_allclose(ro.plan.row_marginal().numpy(), a.numpy() if "tau" not in kw else
                               rd.plan.row_marginal().numpy(), atol=1e-9)


def test_online_recovers_from_overflowing_start():
    # a start far from the solution over/underflows whole rows and columns of exp((f + g - C) / eps): those are
    # redone with the exact log-sum-exp
    x, y, a, b = _problem(n=30, m=20, d=2)
    y = y + 3.0
    bad = (torch.full_like(a, 40.0), torch.full_like(b, -40.0))
    ref = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.01, tol=1e-10, max_iter=20000, backend="dense")
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.01, tol=1e-10, max_iter=20000, backend="online", init=bad,
                 eps_scaling=None)
    assert bool(r.converged)
    assert float(r.value) == pytest.approx(float(ref.value), rel=1e-9)


@pytest.mark.parametrize("d", [3, 8])
def test_dense_points_path_never_builds_the_cost(d):
    # squared Euclidean point sets: kernels from one GEMM, <P, C> from the expansion of |x - y|^2
    x, y, a, b = _problem(n=70, m=50, d=d)
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.01, tol=1e-12, max_iter=20000, grad="none")
    p = r.plan.dense()
    c = pairwise_cost(x[None], y[None])[0]
    assert float(r.transport_cost) == pytest.approx(float((p * c).sum()), rel=1e-10)


def test_cost_matrix_entry_point_matches_points():
    x, y, a, b = _problem()
    r1 = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.05, tol=1e-11)
    c = pairwise_cost(x[None], y[None])[0]
    r2 = sinkhorn_from_cost(c, x_weights=a, y_weights=b, eps=0.05, tol=1e-11)
    assert float(r1.value) == pytest.approx(float(r2.value), rel=1e-10)
    np.testing.assert_allclose(r1.plan.barycentric_map().numpy(), r2.plan.barycentric_map(y).numpy(), atol=1e-9)


def test_plan_operations():
    x, y, a, b = _problem()
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.05, tol=1e-12)
    p = r.plan.dense()
    v = torch.randn(30, 4, dtype=F64)
    u = torch.randn(40, dtype=F64)
    np.testing.assert_allclose((r.plan @ v).numpy(), (p @ v).numpy(), atol=1e-12)
    np.testing.assert_allclose(r.plan.rmatmul(u).numpy(), (p.T @ u).numpy(), atol=1e-12)
    np.testing.assert_allclose(r.plan.row_marginal().numpy(), a.numpy(), atol=1e-11)
    np.testing.assert_allclose(r.plan.col_marginal().numpy(), b.numpy(), atol=1e-11)
    bary = (p @ y) / p.sum(1, keepdim=True)
    np.testing.assert_allclose(r.plan.barycentric_map().numpy(), bary.numpy(), atol=1e-10)
    assert r.plan.shape == (40, 30)
    assert float((p * ((x[:, None] - y[None]) ** 2).sum(-1)).sum()) == pytest.approx(float(r.transport_cost))
    with pytest.raises(ShapeError, match="v: expected"):
        r.plan @ torch.ones(7, dtype=F64)


def test_value_equals_primal_objective():
    x, y, a, b = _problem()
    eps = 0.05
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=eps, tol=1e-12)
    p = r.plan.dense()
    primal = float(r.transport_cost) + eps * float((p * torch.log(p / (a[:, None] * b[None]))).sum())
    assert float(r.value) == pytest.approx(primal, rel=1e-9)


@pytest.mark.parametrize("kw", [dict(relaxation=1.7), dict(eps_scaling=None), dict(eps_scaling=0.3),
                                dict(init="gaussian"), dict(method="log")])
def test_solver_variants_same_answer(kw):
    x, y, a, b = _problem()
    ref = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.02, tol=1e-12, max_iter=5000)
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.02, tol=1e-12, max_iter=5000, **kw)
    assert bool(r.converged)
    assert float(r.value) == pytest.approx(float(ref.value), rel=1e-9)


def test_initialisers_registry_and_iteration_savings():
    assert {"zero", "gaussian", "sort1d"} <= set(SINKHORN_INITS.names())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(150, 1, generator=g, dtype=F64)
    y = 0.5 * torch.randn(120, 1, generator=g, dtype=F64) + 2.0
    its = {}
    vals = {}
    for init in ("zero", "sort1d", "gaussian"):
        r = sinkhorn(x, y, eps=0.02, tol=1e-8, eps_scaling=None, init=init, max_iter=20000, relaxation=1.0)
        its[init], vals[init] = r.n_iters, float(r.value)
    assert its["sort1d"] < 0.8 * its["zero"] and its["gaussian"] < 0.8 * its["zero"]
    assert vals["sort1d"] == pytest.approx(vals["zero"], rel=1e-7)
    # in 3-D the Gaussian initialiser saves iterations on average (not on every draw): summed over 5 problems
    total = {"zero": 0, "gaussian": 0}
    for seed in range(5):
        g3 = torch.Generator().manual_seed(seed)
        x3 = torch.randn(200, 3, generator=g3, dtype=F64)
        y3 = torch.randn(180, 3, generator=g3, dtype=F64) * 0.5 + 1
        r0 = sinkhorn(x3, y3, eps=0.05, tol=1e-9, eps_scaling=None, init="zero", relaxation=1.0)
        rg = sinkhorn(x3, y3, eps=0.05, tol=1e-9, eps_scaling=None, init="gaussian", relaxation=1.0)
        assert float(rg.value) == pytest.approx(float(r0.value), rel=1e-7)
        total["zero"] += r0.n_iters
        total["gaussian"] += rg.n_iters
    assert total["gaussian"] < 0.9 * total["zero"]


def test_warm_start_converges_immediately():
    x, y, a, b = _problem()
    r = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.05, tol=1e-10)
    r2 = sinkhorn(x, y, x_weights=a, y_weights=b, eps=0.05, tol=1e-9, init=(r.f, r.g), eps_scaling=None)
    assert r2.n_iters <= 2


def test_structures_and_dtype_follow_inputs():
    x, y, _, _ = _problem(d=3, dtype=torch.float32)
    r = sinkhorn(PointCloud(x), Measure(y), eps=0.05)
    assert r.value.shape == (1,) and r.value.dtype == torch.float32 and r.f.dtype == torch.float32
    r2 = sinkhorn(x, y, eps=0.05)
    assert r2.value.shape == () and float(r2.value) == pytest.approx(float(r.value[0]), rel=1e-5)
    assert geomot.sinkhorn is sinkhorn


def test_float32_speed_path_agrees_with_float64():
    x, y, _, _ = _problem(n=400, m=380, d=3, dtype=F64)
    r64 = sinkhorn(x, y, eps=0.0025, tol=1e-9, max_iter=5000)
    r32 = sinkhorn(x.float(), y.float(), eps=0.0025, tol=1e-5, relaxation=1.7, init="gaussian", eps_scaling=None)
    assert bool(r32.converged)
    assert float(r32.transport_cost) == pytest.approx(float(r64.transport_cost), rel=1e-3)


def test_envelope_gradcheck():
    x, y, a, b = _problem(n=6, m=5)
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, y, a, b))

    def fn(x_, y_, a_, b_):
        return sinkhorn(x_, y_, x_weights=a_, y_weights=b_, eps=0.3, tol=1e-14, max_iter=5000).value

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_envelope_gradcheck_online_and_unbalanced():
    x, y, a, b = _problem(n=4, m=3)
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, y, a, b))

    def fn(x_, y_, a_, b_):
        return sinkhorn(x_, y_, x_weights=a_, y_weights=b_, eps=0.5, tol=1e-14, max_iter=5000, backend="online",
                        chunk_bytes=100, tau=0.5).value

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_unroll_gradcheck():
    x, y, a, b = _problem(n=5, m=4)
    inputs = tuple(t.clone().requires_grad_(True) for t in (x, y, a, b))

    def fn(x_, y_, a_, b_):
        r = sinkhorn(x_, y_, x_weights=a_, y_weights=b_, eps=0.2, tol=1e-300, max_iter=30, grad="unroll",
                     warn=False)
        return r.value, r.transport_cost

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_unroll_and_envelope_agree_at_convergence():
    x, y, a, b = _problem(n=8, m=7)
    grads = []
    for grad in ("envelope", "unroll"):
        xr = x.clone().requires_grad_(True)
        sinkhorn(xr, y, x_weights=a, y_weights=b, eps=0.2, tol=1e-13, grad=grad, max_iter=3000).value.backward()
        grads.append(xr.grad)
    np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), atol=1e-8)


def test_cost_matrix_gradient_is_the_plan():
    x, y, a, b = _problem()
    c = pairwise_cost(x[None], y[None])[0].requires_grad_(True)
    r = sinkhorn_from_cost(c, x_weights=a, y_weights=b, eps=0.05, tol=1e-12)
    r.value.backward()
    np.testing.assert_allclose(c.grad.numpy(), r.plan.dense().numpy(), atol=1e-10)


def test_convergence_warning_says_what_to_change():
    x, y, _, _ = _problem()
    with pytest.warns(ConvergenceWarning, match="raise max_iter"):
        r = sinkhorn(x, y, eps=1e-3, max_iter=3, tol=1e-9)
    assert not bool(r.converged) and float(r.marginal_error) > 1e-9


def test_bad_inputs():
    x, y, a, b = _problem()
    with pytest.raises(ValidationError, match="eps: expected a positive"):
        sinkhorn(x, y, eps=0.0)
    with pytest.raises(ValidationError, match="eps: expected a positive"):
        sinkhorn(x, y, eps=-1.0)
    with pytest.raises(ShapeError, match="x_weights: expected shape"):
        sinkhorn(x, y, eps=0.1, x_weights=a[:-1])
    with pytest.raises(ValidationError, match="y_weights: weights must be non-negative"):
        sinkhorn(x, y, eps=0.1, y_weights=b - 1.0)
    x_nan = x.clone()
    x_nan[3, 0] = float("nan")
    with pytest.raises(ValidationError, match="x: contains 1 NaN"):
        sinkhorn(x_nan, y, eps=0.1)
    c = pairwise_cost(x[None], y[None])[0]
    c[2, 2] = float("nan")
    with pytest.raises(ValidationError, match="cost: contains 1 NaN"):
        sinkhorn_from_cost(c, eps=0.1)
    with pytest.raises(ValidationError, match="x: empty point set"):
        sinkhorn(torch.zeros(0, 2, dtype=F64), y, eps=0.1)
    with pytest.raises(ValidationError, match="cost: empty cost matrix"):
        sinkhorn_from_cost(torch.zeros(0, 4, dtype=F64), eps=0.1)
    with pytest.raises(ShapeError, match="x_weights: expected shape"):
        sinkhorn_from_cost(c.abs().nan_to_num(), eps=0.1, x_weights=a[:5])
    with pytest.raises(ShapeError, match="y: expected points of dimension 2"):
        sinkhorn(x, torch.rand(5, 3, dtype=F64), eps=0.1)
    with pytest.raises(ValidationError, match="init: unknown sinkhorn initialiser 'nope'"):
        sinkhorn(x, y, eps=0.1, init="nope")
    with pytest.raises(ValidationError, match="method: unknown sinkhorn method"):
        sinkhorn(x, y, eps=0.1, method="magic")
    with pytest.raises(ValidationError, match="cost: unknown cost"):
        sinkhorn(x, y, eps=0.1, cost="cosine")
    with pytest.raises(ValidationError, match="tau: expected a positive"):
        sinkhorn(x, y, eps=0.1, tau=-1.0)
    with pytest.raises(ValidationError, match="init: 'sort1d' needs 1-D points"):
        sinkhorn(x, y, eps=0.1, init="sort1d")
    with pytest.raises(ValidationError, match="init: 'gaussian' needs point coordinates"):
        sinkhorn_from_cost(c.nan_to_num(), eps=0.1, init="gaussian")
    with pytest.raises(ValidationError, match="method: 'sns' solves balanced problems only"):
        sinkhorn(x, y, eps=0.1, method="sns", tau=1.0)
    with pytest.raises(ValidationError, match="grad: 'unroll' needs method='log'"):
        sinkhorn(x, y, eps=0.1, method="scaling", grad="unroll")
    with pytest.raises(ValidationError, match="relaxation: expected"):
        sinkhorn(x, y, eps=0.1, relaxation=2.5)
    with pytest.raises(ValidationError, match="relaxation: only used"):
        sinkhorn(x, y, eps=0.1, relaxation=1.5, method="log", backend="dense")
    with pytest.raises(ValidationError, match="eps_scaling: expected a ratio"):
        sinkhorn(x, y, eps=0.1, eps_scaling=1.5)
    with pytest.raises(ValidationError, match="backend: expected one of"):
        sinkhorn(x, y, eps=0.1, backend="gpu")


def test_symmetric_method_for_self_transport():
    x, _, a, _ = _problem(n=12)
    ref = sinkhorn(x, x, x_weights=a, y_weights=a, eps=0.05, tol=1e-11, max_iter=50000, init="zero", relaxation=1.0)
    r = sinkhorn(x, x, x_weights=a, y_weights=a, eps=0.05, tol=1e-11, method="symmetric")
    assert bool(r.converged) and r.n_iters * 3 < ref.n_iters
    assert float(r.value) == pytest.approx(float(ref.value), rel=1e-9)
    torch.testing.assert_close(r.f, r.g)
    with pytest.raises(ValidationError, match="method: 'symmetric' solves OT"):
        sinkhorn(x, x + 1.0, eps=0.05, method="symmetric")
