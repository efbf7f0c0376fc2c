"""Over-relaxed Sinkhorn: ``relaxation="auto"`` (adaptive factor) is never slower than plain Sinkhorn and never
diverges, on problems of several kinds; the adaptive rule on a linear two-block iteration with a known rate;
the safeguards; and fixed factors in float32 (relaxed updates must not stall on rounding)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from geomot import sinkhorn
from geomot.transport._sinkhorn_loops import _OMEGA_MAX, _PROBE, _AutoRelax

pytestmark = pytest.mark.usefixtures("one_torch_thread")

F32, F64 = torch.float32, torch.float64


def _clouds(n: int, m: int, kind: str = "ug", d: int = 3, seed: int = 0, dtype: torch.dtype = F64):
    g = torch.Generator().manual_seed(seed)

    def one(k: str, size: int) -> torch.Tensor:
        if k == "u":
            return torch.rand(size, d, generator=g, dtype=F64)
        return torch.randn(size, d, generator=g, dtype=F64) * 0.15 + 0.5

    return one(kind[0], n).to(dtype), one(kind[1], m).to(dtype)


CASES = {
    "uniform-gaussian f32": dict(n=400, m=400, eps=0.05**2, dtype=F32, tol=1e-5),
    "uniform-uniform f32 eps 0.1^2": dict(n=300, m=300, kind="uu", eps=0.1**2, dtype=F32, tol=1e-5),
    "gaussian-gaussian f64": dict(n=300, m=300, kind="gg", eps=0.05**2, dtype=F64, tol=1e-9),
    "small eps 0.03^2 f64": dict(n=400, m=400, eps=0.03**2, dtype=F64, tol=1e-6),
    "unequal sizes f64": dict(n=250, m=450, eps=0.05**2, dtype=F64, tol=1e-8),
    "unbalanced tau f64": dict(n=300, m=300, eps=0.05**2, dtype=F64, tol=1e-8, tau=0.5),
    "semi-unbalanced f32": dict(n=300, m=300, eps=0.05**2, dtype=F32, tol=1e-5, tau=(None, 0.2)),
    "zero init + eps-scaling f64": dict(n=300, m=300, eps=0.1**2, dtype=F64, tol=1e-8, init="zero"),
    "batched + lengths f32": dict(n=300, m=300, eps=0.05**2, dtype=F32, tol=1e-5, batched=True),
    "online backend f32": dict(n=300, m=300, eps=0.05**2, dtype=F32, tol=1e-5, backend="online", method="log"),
}


def _solve(case: dict, relaxation):
    c = dict(case)
    n, m, eps, dtype, tol = c.pop("n"), c.pop("m"), c.pop("eps"), c.pop("dtype"), c.pop("tol")
    kind = c.pop("kind", "ug")
    x, y = _clouds(n, m, kind, dtype=dtype)
    if c.pop("batched", False):
        x2, y2 = _clouds(n, m, kind, dtype=dtype, seed=1)
        x, y = torch.stack([x, x2]), torch.stack([y, y2])
        c.update(x_lengths=torch.tensor([n, n - 60]), y_lengths=torch.tensor([m - 25, m]))
    return sinkhorn(x, y, eps=eps, tol=tol, relaxation=relaxation, max_iter=20000, grad="none", **c)


@pytest.mark.parametrize("name", list(CASES))
def test_auto_converges_and_is_not_slower_than_plain(name):
    case = CASES[name]
    plain = _solve(case, 1.0)
    auto = _solve(case, "auto")
    assert bool(plain.converged.all())
    assert bool(auto.converged.all()), f"{name}: auto stopped at {auto.marginal_error} after {auto.n_iters}"
    assert auto.n_iters <= plain.n_iters, f"{name}: auto {auto.n_iters} > plain {plain.n_iters} iterations"
    rtol = 1e-4 if case["dtype"] == F32 else 1e-6
    torch.testing.assert_close(auto.value, plain.value, rtol=rtol, atol=0.0)


def test_auto_cuts_iterations_where_plain_is_slow():
    # the benchmark's kind of problem at a smaller size: plain Sinkhorn contracts slowly (rate ~0.97)
    case = CASES["uniform-gaussian f32"]
    plain, auto = _solve(case, 1.0), _solve(case, "auto")
    # both runs stop at float32's reach (the tolerance floor): relaxation still more than halves the count
    assert auto.n_iters * 2 <= plain.n_iters, (auto.n_iters, plain.n_iters)


def _linear_sor(svals, relax, tol=1e-10, n=40, max_iter=5000):
    """Over-relaxed block Gauss-Seidel on ``x = B y + c``, ``y = B^T x + d``: the plain rate is
    ``q = sigma_max(B)^2`` and the optimal factor ``2 / (1 + sqrt(1 - q))``, the setting the rule assumes."""
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    s = torch.zeros(n, dtype=F64)
    s[: len(svals)] = torch.tensor(svals, dtype=F64)
    b = u @ torch.diag(s) @ v.T
    c, d = torch.randn(n, generator=g, dtype=F64), torch.randn(n, generator=g, dtype=F64)
    x, y = torch.zeros(n, dtype=F64), torch.zeros(n, dtype=F64)
    ctl = _AutoRelax(_PROBE) if relax == "auto" else None
    w = 1.0 if relax == "auto" else relax
    for k in range(1, max_iter + 1):
        x = (1 - w) * x + w * (b @ y + c)
        y = (1 - w) * y + w * (b.T @ x + d)
        err = float((x - b @ y - c).abs().sum() + (y - b.T @ x - d).abs().sum())
        if err < tol:
            return k, w
        if ctl is not None:
            w = ctl(err)
    return max_iter, w


@pytest.mark.parametrize("svals", [[0.98, 0.9, 0.5], [0.995, 0.99, 0.7], [0.999, 0.5], [0.8, 0.5], [0.5, 0.2]])
def test_rule_on_linear_two_block_iteration(svals):
    q = svals[0] ** 2
    plain, _ = _linear_sor(svals, 1.0)
    best, _ = _linear_sor(svals, min(_OMEGA_MAX, 2 / (1 + math.sqrt(1 - q))))
    auto, w = _linear_sor(svals, "auto")
    assert auto <= plain
    if q >= 0.9:  # slow plain iterations: within a small factor of the optimal fixed factor
        assert auto <= 2.5 * best, (auto, best, plain)
        assert w > 1.5


def _probe_then(errors_after, unit=2.0**-52):
    ctl = _AutoRelax(_PROBE, unit)
    w = 1.0
    e = 1.0
    for _ in range(_PROBE):  # plain iterations contracting at 0.97
        w = ctl(e)
        e *= 0.97
    assert w > 1.0
    ws = [ctl(err) for err in errors_after]
    return ws


@pytest.mark.parametrize("creep", [1.0, 0.999])  # flat, or creeping down as near the float32 precision floor
def test_safeguard_stagnation_goes_back_to_plain(creep):
    # a creeping decrease first reads as q -> 1 (w rises), then each factor gets ``patience`` iterations
    n = (_AutoRelax.patience + 10) * (_AutoRelax.backoffs + 2)
    ws = _probe_then([2e-5 * creep**k for k in range(n)], unit=torch.finfo(F32).eps)
    assert ws[-1] == 1.0
    top = ws.index(max(ws))
    assert all(b <= a for a, b in itertools.pairwise(ws[top:]))  # backs off, never up again


def test_slow_genuine_decrease_keeps_relaxing():
    # far above the precision floor a slow (e.g. sublinear) decrease is real progress: no back-off
    ws = _probe_then([1e-2 * 0.999**k for k in range(300)])
    assert ws[-1] > 1.5


def test_safeguard_blowup_and_nan():
    ws = _probe_then([0.5 * 10.0**k for k in range(12)])  # each back-off waits for 100x its first error
    assert ws[-1] == 1.0
    ctl = _AutoRelax(_PROBE)
    for k in range(_PROBE):
        ctl(0.97**k)
    assert ctl(float("nan")) == 1.0
    assert ctl(1e-3) == 1.0  # and stays plain


@pytest.mark.parametrize("backend", ["dense", "online"])
def test_fixed_relaxation_float32_reaches_tol(backend):
    # relaxed float32 updates used to round at the scale of the potentials / scalings (u^(1-w) with u ~ e^40, or
    # (1 - w) f + w f_hat) and stalled above 1e-5 on this problem; as increments they follow float64
    x, y = _clouds(800, 800, dtype=F32)
    kw = dict(backend="online", method="log") if backend == "online" else {}
    r = sinkhorn(x, y, eps=0.05**2, tol=1e-5, relaxation=1.8, max_iter=400, grad="none", warn=False, **kw)
    assert bool(r.converged), (r.n_iters, float(r.marginal_error))
