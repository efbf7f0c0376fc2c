"""Sinkhorn-Newton-Sparse (Tang et al., ICLR 2024): same answer as Sinkhorn in far fewer iterations."""

from __future__ import annotations

import pytest
import torch

from geomot._core import ValidationError
from geomot.transport import sinkhorn, sinkhorn_from_cost

F64 = torch.float64


def _clouds(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=F64)
    y = torch.rand(n, 3, generator=g, dtype=F64) * 0.8 + 0.1
    return x, y


def test_sns_reaches_high_accuracy_in_far_fewer_iterations():
    x, y = _clouds(150)
    eps = 0.005
    plain = sinkhorn(x, y, eps=eps, tol=1e-9, eps_scaling=None, max_iter=20000, relaxation=1.0)  # plain iterations
    sns = sinkhorn(x, y, eps=eps, tol=1e-9, eps_scaling=None, method="sns", max_iter=200)
    assert bool(plain.converged) and bool(sns.converged)
    assert sns.n_iters * 5 < plain.n_iters
    assert float(sns.transport_cost) == pytest.approx(float(plain.transport_cost), rel=1e-7)
    torch.testing.assert_close(sns.f, plain.f, atol=1e-7, rtol=0)


def test_sns_batched_padded_and_fixed_sparsity():
    x, y = _clouds(60)
    xb = torch.stack([x, x.flip(0)])
    yb = torch.stack([y, y * 0.5])
    lengths = torch.tensor([60, 45])
    ref = sinkhorn(xb, yb, x_lengths=lengths, y_lengths=lengths, eps=0.01, tol=1e-11, max_iter=20000)
    for opts in (None, {"sparsity": 0.2}):
        r = sinkhorn(xb, yb, x_lengths=lengths, y_lengths=lengths, eps=0.01, tol=1e-11, method="sns",
                     sns_options=opts, max_iter=300)
        assert bool(r.converged.all())
        torch.testing.assert_close(r.value, ref.value, rtol=1e-9, atol=0)


def test_sns_on_cost_matrix():
    x, y = _clouds(80)
    c = torch.cdist(x, y) ** 2
    ref = sinkhorn_from_cost(c, eps=0.01, tol=1e-11, max_iter=20000)
    r = sinkhorn_from_cost(c, eps=0.01, tol=1e-11, method="sns")
    assert r.n_iters < ref.n_iters
    torch.testing.assert_close(r.plan.dense(), ref.plan.dense(), atol=1e-10, rtol=0)


def test_sns_bad_options():
    x, y = _clouds(10)
    with pytest.raises(ValidationError, match="sparsity"):
        sinkhorn(x, y, eps=0.1, method="sns", sns_options={"sparsity": 1.5})
    with pytest.raises(ValidationError, match="sinkhorn_iters"):
        sinkhorn(x, y, eps=0.1, method="sns", sns_options={"sinkhorn_iters": 0})
    with pytest.raises(ValidationError, match="sns_options: only used with method='sns'"):
        sinkhorn(x, y, eps=0.1, sns_options={"sparsity": 0.1})
    with pytest.raises(ValidationError, match="method: 'sns' needs the dense backend"):
        sinkhorn(x, y, eps=0.1, method="sns", backend="online")
