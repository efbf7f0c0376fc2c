"""Sinkhorn and the Sinkhorn divergence inside a training loop: degenerate and non-finite inputs, no process-wide
state, the Mesh -> measure rule, the Module shell, the dtype's tolerance floor and the warning policy."""

from __future__ import annotations

import warnings

import pytest
import torch

import geomot
from geomot._core import ShapeError, ValidationError
from geomot._core.errors import ConvergenceWarning
from geomot.io.synthetic import icosphere
from geomot.losses import SinkhornDivergence, sinkhorn_divergence
from geomot.structures.convert import mesh_to_measure
from geomot.transport._debiased import tolerance_floor

F64 = torch.float64


def _pair(b=2, n=40, m=50, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, n, 3, generator=g, dtype=dtype), torch.rand(b, m, 3, generator=g, dtype=dtype) + 0.2


def test_one_point_item_has_its_closed_form_value():
    x, y = _pair()
    eps = 0.05
    out = sinkhorn_divergence(x, y, x_lengths=torch.tensor([1, 40]), eps=eps, tol=1e-10, reduction="none")
    assert torch.isfinite(out).all()
    # a single Dirac: the plan is a_1 b, OT_eps = sum_j b_j |x_1 - y_j|^2 exactly, OT_eps(delta, delta) = 0
    ot_xy = ((x[0, 0] - y[0]) ** 2).sum(1).mean()
    ot_yy = geomot.sinkhorn(y[0], y[0], eps=eps, tol=1e-12).value
    assert float(out[0]) == pytest.approx(float(ot_xy - 0.5 * ot_yy), rel=1e-8)
    ot = pytest.importorskip("ot")
    c = (torch.cdist(x[0, :1], y[0]) ** 2).numpy()
    pot = ot.sinkhorn2(ot.unif(1), ot.unif(50), c, eps, method="sinkhorn_log", stopThr=1e-12)
    assert float(pot) == pytest.approx(float(ot_xy), rel=1e-8)


def test_zero_mass_item_is_named():
    x, y = _pair()
    w = torch.ones(2, 40, dtype=F64)
    w[1] = 0.0
    with pytest.raises(ValidationError, match="x_weights: item 1 has zero total mass"):
        sinkhorn_divergence(x, y, x_weights=w, eps=0.05)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_gives_nan_or_raises(bad):
    x, y = _pair(dtype=torch.float32)
    x[1, 3, 0] = bad
    with geomot.data_checks(False):
        d = sinkhorn_divergence(x, y, eps=0.01, reduction="none")
        assert torch.isnan(d[1]) and torch.isfinite(d[0])
        assert torch.isnan(sinkhorn_divergence(x, y, eps=0.01))
        assert torch.isnan(sinkhorn_divergence(x, y, eps=0.01, tau=1.0, reduction="none")[1])
        r = geomot.sinkhorn(x, y, eps=0.01)
        assert torch.isnan(r.value[1]) and torch.isfinite(r.value[0]) and not bool(r.converged[1])
        assert torch.isnan(geomot.sinkhorn(x, y, eps=0.01, tau=1.0).value[1])
    with pytest.raises(ValidationError, match="x: contains 1 NaN/Inf"):
        sinkhorn_divergence(x, y, eps=0.01)
    with pytest.raises(ValidationError, match="x: contains 1 NaN/Inf"):
        geomot.sinkhorn(x, y, eps=0.01)


def test_overflowing_float32_coordinates_never_give_a_finite_value():
    x, y = _pair(dtype=torch.float32)
    with geomot.data_checks(False):
        assert torch.isnan(sinkhorn_divergence(x * 1e20, y * 1e20, eps=0.01))
        assert torch.isnan(geomot.sinkhorn(x * 1e20, y * 1e20, eps=0.01).value).all()
    with pytest.raises(ValidationError, match=r"overflow torch\.float32"):
        sinkhorn_divergence(x * 1e20, y * 1e20, eps=0.01)


def test_no_process_wide_state_is_touched(monkeypatch):
    x, y = _pair(dtype=torch.float32)
    threads = torch.get_num_threads()

    def forbidden(*_args, **_kwargs):
        raise AssertionError("a library call changed process-wide torch state")

    monkeypatch.setattr(torch, "set_num_threads", forbidden)
    monkeypatch.setattr(torch, "set_flush_denormal", forbidden)
    for method in ("scaling", "log", "sns", "symmetric"):
        yy = x if method == "symmetric" else y
        geomot.sinkhorn(x, yy, eps=0.05, method=method, warn=False)
    geomot.sinkhorn(x, y, eps=0.05, backend="online", warn=False)
    sinkhorn_divergence(x, y.requires_grad_(True), eps=0.01).backward()
    assert torch.get_num_threads() == threads


def test_mesh_measure_rule():
    m1 = icosphere(2)
    m2 = icosphere(1)
    v = sinkhorn_divergence(m1, m2, eps=0.01, measure="vertices")
    ref = sinkhorn_divergence(mesh_to_measure(m1, "vertices"), mesh_to_measure(m2, "vertices"), eps=0.01)
    assert float(v) == pytest.approx(float(ref), rel=1e-6)
    # no measure: the oriented varifold (6-D), against a 3-D cloud the message names measure=
    vf = sinkhorn_divergence(m1, m2, eps=0.01)
    assert torch.isfinite(vf) and float(vf) != pytest.approx(float(v))
    with pytest.raises(ShapeError, match='measure="vertices"'):
        sinkhorn_divergence(m1, m2.verts_list()[0], eps=0.01)
    with pytest.raises(ShapeError, match='measure="vertices"'):
        geomot.sinkhorn(m1, m2.verts_list()[0], eps=0.01)


def test_module_shell_keyword_only_and_checked_at_construction():
    with pytest.raises(ValidationError, match="eps: expected a positive"):
        SinkhornDivergence(eps=0)
    with pytest.raises(ValidationError, match="eps is required"):
        SinkhornDivergence()
    with pytest.raises(ValidationError, match="eps_scaling: expected a ratio"):
        SinkhornDivergence(eps=0.1, eps_scaling=1.5)
    with pytest.raises(ValidationError, match="unknown setting"):
        SinkhornDivergence(eps=0.1, blur=0.1)
    with pytest.raises(TypeError):
        SinkhornDivergence(0.1)
    x, y = _pair()
    loss = SinkhornDivergence(eps=0.05, reduction="none", tol=1e-9)
    torch.testing.assert_close(loss(x, y), sinkhorn_divergence(x, y, eps=0.05, reduction="none", tol=1e-9))
    with pytest.raises(ValidationError, match="set it at construction"):
        loss(x, y, eps=0.1)


def test_solver_options_of_sinkhorn_are_refused_with_a_reason():
    x, y = _pair()
    with pytest.raises(ValidationError, match=r"'method' is an option of geomot\.sinkhorn"):
        sinkhorn_divergence(x, y, eps=0.05, method="sns")


def test_gradcheck_new_loop_points_weights_and_unbalanced():
    x, y = _pair(1, 5, 4)
    a = torch.rand(1, 5, dtype=F64) + 0.5
    inputs = (x.clone().requires_grad_(True), y.clone().requires_grad_(True), a.requires_grad_(True))

    def fn(x_, y_, a_):
        return sinkhorn_divergence(x_, y_, x_weights=a_, eps=0.2, tol=1e-13, max_iter=5000)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)

    def fn_u(x_, y_):
        return sinkhorn_divergence(x_, y_, eps=0.2, tau=0.5, tol=1e-13, max_iter=5000)

    assert torch.autograd.gradcheck(fn_u, inputs[:2], eps=1e-6, atol=1e-6)


@pytest.mark.slow
def test_float32_training_batch_matches_float64_within_its_floor():
    """Default settings in float32 stop at the dtype's floor, without a warning, close to a float64 run."""
    x, y = _pair(2, 96, 96, dtype=torch.float32, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        v32 = sinkhorn_divergence(x, y, eps=0.05**2, reduction="none")
    v64 = sinkhorn_divergence(x.double(), y.double(), eps=0.05**2, reduction="none", tol=1e-7, max_iter=5000)
    assert ((v32.double() - v64).abs() / v64).max() < 1e-2
    assert tolerance_floor(torch.float32, 3.0, 0.05**2) == pytest.approx(16 * 2**-23 * (1 + 3 / 0.05**2))


def test_convergence_warning_once_per_call_site():
    x, y = _pair()

    def call():
        return sinkhorn_divergence(x, y, eps=0.001, tol=1e-12, max_iter=3)

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("default")
        for _ in range(3):
            call()
    hits = [w for w in rec if issubclass(w.category, ConvergenceWarning)]
    assert len(hits) == 1 and hits[0].filename == __file__


def test_default_stops_when_the_value_settles_within_one_percent(monkeypatch):
    import geomot.losses.sinkhorn as losses

    g = torch.Generator().manual_seed(3)
    x, y = torch.rand(2, 120, 3, generator=g), torch.rand(2, 120, 3, generator=g)
    ref = sinkhorn_divergence(x.double(), y.double(), eps=0.1**2, tol=1e-7, max_iter=5000, reduction="none")
    iters = []
    original = losses.debiased_sinkhorn

    def counted(*args, **kwargs):
        res = original(*args, **kwargs)
        iters.append(res.n_iters)
        return res

    monkeypatch.setattr(losses, "debiased_sinkhorn", counted)
    fast = sinkhorn_divergence(x, y, eps=0.1**2, reduction="none")
    slow = sinkhorn_divergence(x, y, eps=0.1**2, reduction="none", rtol=0.0)
    n_fast, n_slow = iters
    assert float(((fast.double() - ref) / ref).abs().max()) < 1e-2
    assert float(((slow.double() - ref) / ref).abs().max()) < 1e-3
    assert n_fast < 0.75 * n_slow
    with pytest.raises(ValidationError, match="rtol: expected a non-negative value"):
        sinkhorn_divergence(x, y, eps=0.05**2, rtol=-1.0)


@pytest.mark.parametrize("case", ["balanced", "unbalanced", "ragged", "euclidean"])
def test_stored_final_kernels_match_the_streaming_soft_mins(case):
    # chunk_bytes large enough for the three kernels: the final level multiplies by stored kernels; 4 KiB: every
    # soft-min streams. Same iterations, same potentials, same value and gradient.
    x, y = _pair(b=3, n=30, m=45)
    kw = dict(eps=0.05, tol=1e-9, rtol=0.0, max_iter=2000, reduction="none")
    if case == "unbalanced":
        kw["tau"] = 0.5
    if case == "ragged":
        kw.update(x_lengths=torch.tensor([30, 1, 17]), y_lengths=torch.tensor([45, 9, 2]))
    if case == "euclidean":
        kw["cost"] = "euclidean"
    out = []
    for chunk in (64 * 2**20, 4096):
        xr = x.clone().requires_grad_(True)
        v = sinkhorn_divergence(xr, y, chunk_bytes=chunk, **kw)
        v.sum().backward()
        out.append((v.detach(), xr.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=1e-6, atol=1e-9)


def test_stored_kernel_is_rebuilt_when_a_potential_leaves_its_anchor(monkeypatch):
    import geomot.transport._debiased as debiased

    x, y = _pair(b=2, n=40, m=50)
    kw = dict(eps=0.02, tol=1e-9, rtol=0.0, max_iter=2000, reduction="none")
    ref = sinkhorn_divergence(x, y, chunk_bytes=4096, **kw)
    builds = []
    original = debiased._Frozen._build

    def counted(self, u, v):
        builds.append(1)
        return original(self, u, v)

    monkeypatch.setattr(debiased._Frozen, "_build", counted)
    monkeypatch.setattr(debiased._Frozen, "bound", 0.05)  # a potential moving by 0.05 eps forces a rebuild
    out = sinkhorn_divergence(x, y, **kw)
    assert len(builds) > 3  # three kernels, then rebuilds
    torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-12)
