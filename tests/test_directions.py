"""Sphere directions: unit norm, uniformity moments, orthogonality, QMC accuracy, vMF sampler vs A_d(kappa)."""

from __future__ import annotations

import pytest
import torch

from geomot._core.errors import ValidationError
from geomot.ops.directions import (
    DIRECTIONS,
    orthogonal_directions,
    qmc_directions,
    random_directions,
    reflect_to,
    sample_vmf,
    sphere_directions,
    vmf_mean_resultant_length,
    vmf_samples_at_e1,
)

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["random", "qmc", "orthogonal"])
@pytest.mark.parametrize("dim", [2, 3, 7])
def test_unit_rows_moments_and_reproducibility(kind, dim):
    n = 6000
    th = sphere_directions(n, dim, kind=kind, generator=gen(1), dtype=D64)
    assert th.shape == (n, dim) and th.dtype == D64
    torch.testing.assert_close(th.norm(dim=1), torch.ones(n, dtype=D64))
    # uniform law on the sphere: E theta = 0, E theta theta^T = I / d
    assert float(th.mean(0).abs().max()) < 0.05
    torch.testing.assert_close(th.T @ th / n, torch.eye(dim, dtype=D64) / dim, atol=0.02, rtol=0)
    torch.testing.assert_close(th, sphere_directions(n, dim, kind=kind, generator=gen(1), dtype=D64))
    assert not torch.equal(th, sphere_directions(n, dim, kind=kind, generator=gen(2), dtype=D64))


def test_orthogonal_blocks():
    th = orthogonal_directions(10, 4, generator=gen(0), dtype=D64)
    for start in (0, 4):
        block = th[start : start + 4]
        torch.testing.assert_close(block @ block.T, torch.eye(4, dtype=D64), atol=1e-12, rtol=0)
    assert th.shape == (10, 4)


@pytest.mark.parametrize("dim", [3, 5])
def test_qmc_integrates_better_than_monte_carlo(dim):
    """Error of the estimate of E (theta . v)^4 (= 3/(d(d+2)) for |v| = 1) over 30 randomisations."""
    v = torch.zeros(dim, dtype=D64)
    v[0] = 1.0
    exact = 3.0 / (dim * (dim + 2))

    def rmse(fn):
        errs = [float((fn(128, dim, generator=gen(s), dtype=D64) @ v).pow(4).mean()) - exact for s in range(30)]
        return sum(e * e for e in errs) ** 0.5

    assert rmse(qmc_directions) < 0.5 * rmse(random_directions)


@pytest.mark.parametrize(("dim", "kappa"), [(3, 0.5), (3, 20.0), (5, 2.0), (10, 30.0), (2, 4.0)])
def test_vmf_mean_resultant_length(dim, kappa):
    mu = torch.randn(dim, generator=gen(dim), dtype=D64)
    mu = mu / mu.norm()
    x = sample_vmf(mu, kappa, 40000, generator=gen(1))
    assert x.shape == (40000, dim)
    torch.testing.assert_close(x.norm(dim=1), torch.ones(40000, dtype=D64))
    cos = x @ mu
    expected = vmf_mean_resultant_length(kappa, dim)
    se = float(cos.std()) / 200.0
    assert abs(float(cos.mean()) - expected) < 4 * se + 1e-6
    # the mean direction is mu
    m = x.mean(0)
    assert float(m @ mu / m.norm()) > 0.99


def test_vmf_is_reparameterised_in_loc_and_batched():
    loc = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=D64, requires_grad=True)
    x = sample_vmf(loc, 5.0, 100, generator=gen(0))
    assert x.shape == (2, 100, 3)
    (x[..., 0].sum()).backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().sum() > 0
    # the same uniform draws around e_1 at loc = e_1 (no reflection) agree with a slightly moved loc
    y = sample_vmf(torch.tensor([1.0, 1e-9, 0.0], dtype=D64), 5.0, 50, generator=gen(3))
    z = sample_vmf(torch.tensor([1.0, 0.0, 0.0], dtype=D64), 5.0, 50, generator=gen(3))
    torch.testing.assert_close(y, z, atol=1e-6, rtol=0)


def test_bad_input():
    with pytest.raises(ValidationError, match="n_projections: expected an integer >= 1"):
        random_directions(0, 3)
    with pytest.raises(ValidationError, match="dim: expected an integer >= 1"):
        qmc_directions(4, 0)
    with pytest.raises(ValidationError, match="projections: unknown projection strategy 'halton'"):
        sphere_directions(4, 3, kind="halton")
    with pytest.raises(ValidationError, match="kappa: expected a positive value"):
        sample_vmf(torch.tensor([1.0, 0.0]), 0.0, 5)
    with pytest.raises(ValidationError, match="loc: the von Mises-Fisher law needs dimension >= 2"):
        sample_vmf(torch.tensor([1.0]), 1.0, 5)
    with pytest.raises(ValidationError, match="dim: the von Mises-Fisher law needs dimension >= 2"):
        vmf_samples_at_e1(5, 1, 1.0)
    assert DIRECTIONS.names() == ["orthogonal", "qmc", "random"]


def test_vmf_samples_are_reflected_draws_around_e1():
    """sample_vmf = reflect_to(vmf_samples_at_e1): the draws around e_1 can be kept while the location moves; the
    reflection maps e_1 to the location and keeps the cosines to it."""
    loc = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.0]], dtype=D64)
    base = vmf_samples_at_e1(40, 3, 4.0, batch=2, generator=gen(5), dtype=D64)
    torch.testing.assert_close(reflect_to(base, loc), sample_vmf(loc, 4.0, 40, generator=gen(5)))
    mu = loc / loc.norm(dim=-1, keepdim=True)
    out = reflect_to(base, loc)
    torch.testing.assert_close((out * mu[:, None, :]).sum(-1), base[..., 0])
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, 40, dtype=D64))
    e1 = torch.zeros(1, 1, 3, dtype=D64)
    e1[..., 0] = 1.0
    torch.testing.assert_close(reflect_to(e1, loc[:1]), mu[:1, None, :])
