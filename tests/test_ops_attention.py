"""Blocked mean-pooled attention: against the dense formula, gradients, masks and bad input."""

import pytest
import torch

from geomot._core.errors import ShapeError
from geomot.models import AmortizedProjection
from geomot.ops.attention import pooled_attention_weights


def _dense(q, k, qmask=None, kmask=None):
    s = q @ k.transpose(1, 2)
    if kmask is not None:
        s = s.masked_fill(~kmask[:, None, :], float("-inf"))
    p = torch.softmax(s, -1)
    if qmask is None:
        return p.mean(1)
    a = qmask.to(q.dtype)
    return (p * a[..., None]).sum(1) / a.sum(1, keepdim=True)


@pytest.mark.parametrize("block", [None, 1, 3, 64])
def test_matches_dense_formula_with_masks(block):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    k = torch.randn(3, 5, 4, generator=g, dtype=torch.float64)
    qmask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6], dtype=torch.bool)
    kmask = torch.tensor([[1] * 5, [1] * 2 + [0] * 3, [1] * 4 + [0]], dtype=torch.bool)
    w = pooled_attention_weights(q, k, query_mask=qmask, key_mask=kmask, block=block)
    torch.testing.assert_close(w, _dense(q, k, qmask, kmask), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w.sum(1), torch.ones(3, dtype=torch.float64))
    assert (w[~kmask] == 0).all()
    torch.testing.assert_close(pooled_attention_weights(q, k, block=block), _dense(q, k))


def test_gradients_match_dense_and_gradcheck():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(2, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    qmask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3], dtype=torch.bool)
    kmask = torch.tensor([[1] * 5, [1] * 4 + [0]], dtype=torch.bool)
    c = torch.randn(2, 5, generator=g, dtype=torch.float64)
    got = torch.autograd.grad((pooled_attention_weights(q, k, query_mask=qmask, key_mask=kmask, block=2) * c).sum(),
                              (q, k))
    want = torch.autograd.grad((_dense(q, k, qmask, kmask) * c).sum(), (q, k))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda q, k: pooled_attention_weights(q, k, query_mask=qmask, key_mask=kmask, block=4), (q, k))


def test_nan_propagates():
    q = torch.randn(1, 4, 3)
    q[0, 1, 0] = float("nan")
    assert torch.isnan(pooled_attention_weights(q, torch.randn(1, 4, 3))).all()


def test_attention_projector_equals_the_unfactored_formula():
    """The rank-(D+1) score factorisation gives softmax(Q K^T / sqrt(d_k)) V, mean-pooled, on both sets."""
    g = torch.Generator().manual_seed(2)
    proj = AmortizedProjection("attention", dim=3, d_k=16, generator=g).double()
    x = torch.randn(2, 9, 3, generator=g, dtype=torch.float64)
    y = torch.randn(2, 6, 3, generator=g, dtype=torch.float64)
    net = proj.net

    def pooled(z):
        q, k, v = net.to_q(z), net.to_k(z), net.to_v(z)
        return (torch.softmax(q @ k.transpose(1, 2) / 4.0, -1) @ v).mean(1)

    want = 0.5 * (pooled(x) + pooled(y))
    torch.testing.assert_close(proj(x, y), want / want.norm(dim=-1, keepdim=True), rtol=1e-10, atol=1e-12)


def test_bad_input_raises():
    q = torch.randn(2, 4, 3)
    with pytest.raises(ShapeError, match="k: expected"):
        pooled_attention_weights(q, torch.randn(2, 4, 2))
    with pytest.raises(ShapeError, match="key_mask: expected a bool tensor of shape"):
        pooled_attention_weights(q, torch.randn(2, 4, 3), key_mask=torch.ones(2, 4))
