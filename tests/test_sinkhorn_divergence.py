"""Debiased Sinkhorn divergence (Feydy et al. 2019)."""

from __future__ import annotations

import pytest
import torch
from geomloss import SamplesLoss

import geomot
from geomot._core import ValidationError
from geomot.losses import SinkhornDivergence, sinkhorn_divergence

F64 = torch.float64


def _clouds(n=30, m=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g, dtype=F64), torch.rand(m, 3, generator=g, dtype=F64) + 0.3


def test_zero_on_identical_positive_otherwise():
    x, y = _clouds()
    assert abs(float(sinkhorn_divergence(x, x, eps=0.01, tol=1e-10))) < 1e-9
    assert float(sinkhorn_divergence(x, y, eps=0.01, tol=1e-10)) > 1e-3
    assert float(sinkhorn_divergence(x, x + 1e-3, eps=0.01)) == pytest.approx(3e-6, rel=0.05)  # |shift|^2


def test_matches_geomloss():
    x, y = _clouds()
    blur = 0.1
    # GeomLoss: cost |x - y|^2 / 2 and eps = blur^2, i.e. half our problem with eps = 2 blur^2
    ref = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=0.99, backend="tensorized")(x, y)
    ours = sinkhorn_divergence(x, y, eps=2 * blur**2, tol=1e-11, max_iter=5000)
    assert float(ours) / 2 == pytest.approx(float(ref), rel=1e-4)


def test_tends_to_w2_and_symmetric():
    x, y = _clouds(20, 20)
    import ot

    w2 = ot.emd2([], [], (torch.cdist(x, y) ** 2).numpy())
    s = float(sinkhorn_divergence(x, y, eps=1e-3))  # the default stop (value settled) is enough for 3e-2
    assert s == pytest.approx(w2, rel=3e-2)
    assert float(sinkhorn_divergence(y, x, eps=0.05, tol=1e-11)) == pytest.approx(
        float(sinkhorn_divergence(x, y, eps=0.05, tol=1e-11)), rel=1e-8)


def test_gradcheck_points_and_weights():
    x, y = _clouds(5, 4)
    a = torch.rand(5, dtype=F64) + 0.5
    inputs = (x.clone().requires_grad_(True), y.clone().requires_grad_(True), a.requires_grad_(True))

    def fn(x_, y_, a_):
        return sinkhorn_divergence(x_, y_, x_weights=a_, eps=0.3, tol=1e-14, max_iter=5000)

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_module_batched_reductions_and_padding():
    xs = [torch.rand(n, 3, dtype=F64) for n in (6, 9)]
    ys = [torch.rand(n, 3, dtype=F64) + 0.2 for n in (7, 5)]
    x, lx = geomot._core.list_to_padded(xs)
    y, ly = geomot._core.list_to_padded(ys)
    loop = torch.stack([sinkhorn_divergence(a, b, eps=0.05, tol=1e-11) for a, b in zip(xs, ys)])
    none = SinkhornDivergence(eps=0.05, reduction="none", tol=1e-11)(x, y, x_lengths=lx, y_lengths=ly)
    torch.testing.assert_close(none, loop, rtol=1e-9, atol=1e-12)
    mean = sinkhorn_divergence(x, y, x_lengths=lx, y_lengths=ly, eps=0.05, tol=1e-11)
    total = sinkhorn_divergence(x, y, x_lengths=lx, y_lengths=ly, eps=0.05, tol=1e-11, reduction="sum")
    assert float(mean) == pytest.approx(float(loop.mean())) and float(total) == pytest.approx(float(loop.sum()))
    assert geomot.sinkhorn_divergence is sinkhorn_divergence
    assert "eps=0.05" in repr(SinkhornDivergence(eps=0.05))


def test_unbalanced_divergence_zero_on_identical():
    x, _ = _clouds()
    assert abs(float(sinkhorn_divergence(x, x, eps=0.05, tau=1.0, tol=1e-11))) < 1e-9


def test_bad_inputs():
    x, y = _clouds()
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none'"):
        sinkhorn_divergence(x, y, eps=0.1, reduction="max")
    with pytest.raises(ValidationError, match="reduction: expected 'mean', 'sum' or 'none'"):
        SinkhornDivergence(eps=0.1, reduction="avg")
    with pytest.raises(ValidationError, match="eps: expected a positive"):
        sinkhorn_divergence(x, y, eps=0.0)


@pytest.mark.slow
def test_large_divergence_bounded_memory():
    """N = M = 50,000 on the online backend in a subprocess: peak RSS under 4 GiB."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sinkhorn.py"
    out = subprocess.run([sys.executable, str(script), "--only", "large", "--n-large", "50000", "--json", "-"],
                         capture_output=True, text=True, check=True)
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec["peak_rss_gib"] < 4.0 and rec["divergence"] > 0
