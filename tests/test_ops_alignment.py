"""corresponding_points_alignment: closed forms, scipy's Kabsch, reflections, weights, batches, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from geomot._core.errors import ShapeError, ValidationError
from geomot.ops.alignment import corresponding_points_alignment


def _rot(seed: int, dtype=torch.float64) -> torch.Tensor:
    q = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype))[0]
    return q * torch.sign(torch.linalg.det(q))


def _points(n=50, seed=0, dtype=torch.float64):
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_recovers_a_rigid_motion_and_a_similarity():
    x = _points()
    r, t = _rot(1), torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    R, T, s = corresponding_points_alignment(x, x @ r + t)
    torch.testing.assert_close(R, r)
    torch.testing.assert_close(T, t)
    assert float(s) == 1.0
    R, T, s = corresponding_points_alignment(x, 2.5 * x @ r + t, estimate_scale=True)
    torch.testing.assert_close((R, T, s), (r, t, torch.tensor(2.5, dtype=torch.float64)))


def test_matches_scipy_kabsch_with_weights():
    x, y = _points(seed=2), _points(seed=3)
    w = torch.rand(50, generator=torch.Generator().manual_seed(4), dtype=torch.float64) + 0.1
    R, T, _ = corresponding_points_alignment(x, y, w)
    # scipy aligns centred vectors: find rot with rot.apply(b) ~ a, i.e. a ~ b rot^T in row-vector form
    wn = w / w.sum()
    xc, yc = x - (wn[:, None] * x).sum(0), y - (wn[:, None] * y).sum(0)
    rot, _ = Rotation.align_vectors(yc.numpy(), xc.numpy(), weights=w.numpy())
    torch.testing.assert_close(R, torch.from_numpy(rot.as_matrix()).T)
    torch.testing.assert_close(T, (wn[:, None] * y).sum(0) - (wn[:, None] * x).sum(0) @ R)


def test_reflections_only_when_allowed():
    x = _points(seed=5)
    mirror = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    y = x @ mirror @ _rot(6)
    R, _, _ = corresponding_points_alignment(x, y)
    assert float(torch.linalg.det(R)) == pytest.approx(1.0)
    Rm, Tm, _ = corresponding_points_alignment(x, y, allow_reflection=True)
    assert float(torch.linalg.det(Rm)) == pytest.approx(-1.0)
    torch.testing.assert_close(x @ Rm + Tm, y)
    # the proper rotation is the best one: no other rotation does better
    err = ((x @ R - y) ** 2).sum()
    assert err <= ((x @ _rot(7) - y) ** 2).sum()


def test_zero_weights_ignore_outliers_and_batches_match_loops():
    x = _points(seed=8)
    r = _rot(9)
    y = x @ r
    y[:5] += 10.0  # outliers
    w = torch.ones(50, dtype=torch.float64)
    w[:5] = 0.0
    R, T, _ = corresponding_points_alignment(x, y, w)
    torch.testing.assert_close(R, r)
    torch.testing.assert_close(T, torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)
    xb = torch.stack([_points(seed=10), _points(seed=11)])
    yb = torch.stack([_points(seed=12), _points(seed=13)])
    Rb, Tb, sb = corresponding_points_alignment(xb, yb, estimate_scale=True)
    assert Rb.shape == (2, 3, 3) and Tb.shape == (2, 3) and sb.shape == (2,)
    for i in range(2):
        Ri, Ti, si = corresponding_points_alignment(xb[i], yb[i], estimate_scale=True)
        torch.testing.assert_close((Rb[i], Tb[i], sb[i]), (Ri, Ti, si))


def test_gradcheck_float64():
    x, y = _points(8, seed=14), _points(8, seed=15)
    x.requires_grad_(True)
    y.requires_grad_(True)

    def fn(a, b):
        R, T, s = corresponding_points_alignment(a, b, estimate_scale=True)
        return ((s * a @ R + T - b) ** 2).sum()

    assert torch.autograd.gradcheck(fn, (x, y))


def test_bad_inputs_raise_clear_errors():
    x = _points()
    with pytest.raises(ShapeError, match="equal shapes"):
        corresponding_points_alignment(x, x[:10])
    with pytest.raises(ShapeError, match="equal shapes"):
        corresponding_points_alignment(x[0], x[0])
    with pytest.raises(ShapeError, match="weights"):
        corresponding_points_alignment(x, x, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValidationError, match="non-negative"):
        corresponding_points_alignment(x, x, -torch.ones(50, dtype=torch.float64))
    with pytest.raises(ValidationError, match="positive sum"):
        corresponding_points_alignment(x, x, torch.zeros(50, dtype=torch.float64))
    with pytest.raises(ShapeError, match="at least one point"):
        corresponding_points_alignment(x[:0], x[:0])


def test_axis_rotations_closed_form_and_errors():
    import math

    from geomot.ops import axis_rotations

    R = axis_rotations(torch.tensor([math.pi / 2, math.pi], dtype=torch.float64), 1)
    x = torch.tensor([[1.0, 2.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(x @ R[0], torch.tensor([[0.0, 2.0, 1.0]], dtype=torch.float64), atol=1e-15)
    assert torch.allclose(x @ R[1], torch.tensor([[-1.0, 2.0, 0.0]], dtype=torch.float64), atol=1e-15)
    for axis in (0, 1, 2):
        Q = axis_rotations(torch.rand(5, dtype=torch.float64) * 6.3, axis)
        assert torch.allclose(Q @ Q.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-14)
        assert torch.allclose(torch.linalg.det(Q), torch.ones(5, dtype=torch.float64))
        assert torch.allclose(Q[:, axis], torch.eye(3, dtype=torch.float64)[axis].expand(5, 3))  # the axis is fixed
    with pytest.raises(ValidationError, match="axis: expected 0, 1 or 2"):
        axis_rotations(torch.zeros(2), 3)
    with pytest.raises(ShapeError, match="angles: expected a"):
        axis_rotations(torch.zeros(2, 2), 1)


def test_random_rotations_are_proper_reproducible_and_spread():
    from geomot.ops import random_rotations

    Q = random_rotations(4000, generator=torch.Generator().manual_seed(0))
    assert Q.shape == (4000, 3, 3) and Q.dtype == torch.float64
    assert torch.allclose(torch.linalg.det(Q), torch.ones(4000, dtype=torch.float64))
    assert torch.allclose(Q @ Q.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(4000, 3, 3), atol=1e-13)
    assert Q.mean(0).abs().max() < 0.05  # Haar: E[R] = 0
    # Haar on SO(3): the rotation angle has density (1 - cos t) / pi, so E[trace] = E[1 + 2 cos t] = 0
    assert abs(float(torch.diagonal(Q, dim1=1, dim2=2).sum(1).mean())) < 0.05
    assert torch.equal(Q, random_rotations(4000, generator=torch.Generator().manual_seed(0)))
    H = random_rotations(100, axis=2, generator=torch.Generator().manual_seed(1), dtype=torch.float32)
    assert H.dtype == torch.float32 and torch.allclose(H[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(100, 3))
    with pytest.raises(ValidationError, match="n: expected a non-negative integer"):
        random_rotations(-1)
