"""Velocity fields and the PointNet encoder: closed forms, Lipschitz bound, invariances, gradcheck, bad inputs."""

from __future__ import annotations

import pytest
import torch

from geomot._core.errors import ShapeError, ValidationError
from geomot.models import ConditionedVelocity, KernelVelocity, MLPVelocity, gaussian_kernel
from geomot.models.encoder import PointNetEncoder


def test_mlp_velocity_starts_at_zero_and_mirrors_shapes():
    g = torch.Generator().manual_seed(0)
    m = MLPVelocity(hidden=16, layers=2, fourier_features=4, generator=g).double()
    x = torch.randn(10, 3, dtype=torch.float64)
    assert torch.equal(m(torch.tensor(0.3), x), torch.zeros(10, 3, dtype=torch.float64))
    assert m(torch.tensor(0.3), x[None].expand(2, 10, 3)).shape == (2, 10, 3)


def test_mlp_spectral_norm_bounds_the_lipschitz_constant():
    torch.manual_seed(0)
    m = MLPVelocity(hidden=32, layers=3, spectral_norm=True, activation="tanh").double()
    out = m.net[-1]
    torch.nn.init.normal_(out.weight)
    with torch.no_grad():
        for _ in range(30):  # power iterations of the spectral normalisation (training mode)
            m(torch.tensor(0.0), torch.randn(4, 3, dtype=torch.float64))
    m.eval()
    with torch.no_grad():
        bound = float(torch.linalg.matrix_norm(out.weight, ord=2))
        for lin in [mod for mod in m.net if isinstance(mod, torch.nn.Linear)][:-1]:
            sn = float(torch.linalg.matrix_norm(lin.weight, ord=2))
            assert sn == pytest.approx(1.0, rel=2e-2)
            bound *= sn
        x, y = torch.randn(500, 3, dtype=torch.float64), torch.randn(500, 3, dtype=torch.float64)
        t = torch.tensor(0.5)
        ratio = (m(t, x) - m(t, y)).norm(dim=1) / (x - y).norm(dim=1)
    assert float(ratio.max()) <= bound * 1.02


def test_gaussian_kernel_closed_form():
    x = torch.randn(5, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64)
    ref = torch.exp(-((x[:, None] - y[None]) ** 2).sum(-1) / (2 * 0.7**2))
    torch.testing.assert_close(gaussian_kernel(x, y, 0.7), ref)


def test_kernel_velocity_closed_form_and_state():
    c = torch.randn(6, 3, dtype=torch.float64)
    f = KernelVelocity(c, sigma=0.5, n_time_bins=2, truncate=None)
    with torch.no_grad():
        f.momenta.normal_()
    x = torch.randn(7, 3, dtype=torch.float64)
    y = f.initial_state(x)
    assert y.shape == (13, 3) and torch.equal(f.points(y), x)
    v = f(torch.tensor(0.75), y)
    gain = 1.0 / gaussian_kernel(c, c, 0.5).sum(1).mean()
    torch.testing.assert_close(f.gain, gain)
    ref = gain * gaussian_kernel(y, c, 0.5) @ f.momenta[1]
    torch.testing.assert_close(v, ref)
    # control points move with the flow: their velocity is the field at their position
    torch.testing.assert_close(v[7:], gain * gaussian_kernel(c, c, 0.5) @ f.momenta[1])
    kin = torch.stack([a.flatten() @ torch.kron(gaussian_kernel(c, c, 0.5), torch.eye(3, dtype=c.dtype))
                       @ a.flatten() for a in f.momenta]).mean()
    torch.testing.assert_close(f.kinetic_energy(), gain**2 * kin)
    fixed = KernelVelocity(c, sigma=0.5, carry=False)
    assert fixed.initial_state(x).shape == (7, 3)


def test_windowed_kernel_closed_form():
    x = torch.randn(50, 3, dtype=torch.float64)
    y = torch.randn(40, 3, dtype=torch.float64)
    d = (x[:, None] - y[None]).norm(dim=-1)
    r = 1.5
    ref = torch.exp(-(d**2) / (2 * 0.7**2)) * (1 - (d / r) ** 4).clamp_min(0) ** 2
    k = gaussian_kernel(x, y, 0.7, support=r)
    torch.testing.assert_close(k, ref)
    assert bool((k[d >= r] == 0).all()) and bool((k[d < r] > 0).all())


@pytest.mark.parametrize("carry", [True, False])
def test_sparse_kernel_matches_dense_values_and_gradients(carry):
    torch.manual_seed(0)
    c = torch.randn(200, 3, dtype=torch.float64)
    sparse = KernelVelocity(c, sigma=0.3, dense_limit=0, carry=carry)
    dense = KernelVelocity(c, sigma=0.3, carry=carry)
    torch.testing.assert_close(sparse.gain, dense.gain)
    with torch.no_grad():
        sparse.momenta.normal_()
        dense.momenta.copy_(sparse.momenta)
    y0 = sparse.initial_state(torch.randn(300, 3, dtype=torch.float64))
    w = torch.randn_like(y0)
    grads = []
    for f in (sparse, dense):
        y = y0.clone().requires_grad_()
        v = f(torch.tensor(0.0), y)
        grads.append((v, *torch.autograd.grad((v * w).sum(), [y, f.momenta])))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)  # the windowed kernel has compact support: the sparse sum is exact
    torch.testing.assert_close(sparse.kinetic_energy(), dense.kinetic_energy())


def test_sparse_kernel_reuses_neighbours_only_while_valid():
    torch.manual_seed(0)
    c = torch.randn(100, 3, dtype=torch.float64)
    f = KernelVelocity(c, sigma=0.4, dense_limit=0, carry=False)
    ref = KernelVelocity(c, sigma=0.4, carry=False)
    with torch.no_grad():
        f.momenta.normal_()
        ref.momenta.copy_(f.momenta)
    x = torch.randn(150, 3, dtype=torch.float64)
    t = torch.tensor(0.0)
    f(t, x)
    pairs = f._pairs[0.0][1]
    f(t, x + 0.01)  # moved less than margin / 2: the cached pairs are reused
    assert f._pairs[0.0][1] is pairs
    for shift in (0.01, 0.3):  # small or large moves: always equal to the dense evaluation
        moved = x + shift * torch.randn_like(x)
        torch.testing.assert_close(f(t, moved), ref(t, moved))
    moved = x + 0.3
    torch.testing.assert_close(f(t, moved), ref(t, moved))
    assert f._pairs[0.0][1] is not pairs


def test_sparse_kernel_gradcheck():
    torch.manual_seed(1)
    c = torch.randn(12, 3, dtype=torch.float64)
    f = KernelVelocity(c, sigma=0.6, n_time_bins=1, dense_limit=0)
    x = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    mom = torch.randn(1, 12, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, mom):
        return torch.func.functional_call(f, {"momenta": mom}, (torch.tensor(0.1), f.initial_state(x)))

    assert torch.autograd.gradcheck(fn, (x, mom))


def test_kernel_velocity_gradcheck():
    c = torch.randn(4, 3, dtype=torch.float64)
    f = KernelVelocity(c, sigma=0.8, n_time_bins=1)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    mom = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, mom):
        f.momenta = torch.nn.Parameter(mom) if not isinstance(mom, torch.nn.Parameter) else mom
        return torch.func.functional_call(f, {"momenta": mom}, (torch.tensor(0.1), f.initial_state(x)))

    assert torch.autograd.gradcheck(fn, (x, mom))


def test_conditioned_velocity_codes():
    g = torch.Generator().manual_seed(0)
    f = ConditionedVelocity(code_dim=4, hidden=8, fourier_features=2, generator=g)
    with torch.no_grad():
        f.net[-1].weight.normal_()
    x = torch.randn(2, 5, 3)
    with pytest.raises(ValidationError, match="no shape code"):
        f(torch.tensor(0.0), x)
    z = torch.randn(2, 4)
    f.set_code(z)
    v = f(torch.tensor(0.0), x)
    assert v.shape == (2, 5, 3)
    f.set_code(z[1])
    torch.testing.assert_close(f(torch.tensor(0.0), x[1]), v[1])
    f.set_code(torch.randn(3, 4))
    with pytest.raises(ShapeError, match="expected 2 codes"):
        f(torch.tensor(0.0), x)
    with pytest.raises(ShapeError, match="needs batched points"):
        f(torch.tensor(0.0), x[0])
    with pytest.raises(ShapeError, match="z: expected last dimension 4"):
        f.set_code(torch.randn(5))


def test_pointnet_encoder_invariances():
    torch.manual_seed(0)
    enc = PointNetEncoder(code_dim=8, hidden=(16, 32)).double()
    x = torch.randn(30, 3, dtype=torch.float64)
    z = enc(x)
    assert z.shape == (8,)
    torch.testing.assert_close(enc(x[torch.randperm(30)]), z)
    padded = torch.cat([x, torch.full((10, 3), 100.0, dtype=torch.float64)])[None]
    zb = enc(torch.cat([padded, padded]), torch.tensor([30, 40]))
    torch.testing.assert_close(zb[0], z)
    assert not torch.allclose(zb[1], z)


def test_bad_field_arguments():
    with pytest.raises(ValidationError, match="hidden: expected a positive value"):
        MLPVelocity(hidden=0)
    with pytest.raises(ValidationError, match="activation: unknown activation 'gelu'"):
        MLPVelocity(activation="gelu")
    with pytest.raises(ValidationError, match="sigma: expected a positive value"):
        KernelVelocity(torch.randn(3, 3), sigma=0.0)
    with pytest.raises(ShapeError, match="control_points: expected last dimension 3"):
        KernelVelocity(torch.randn(3, 2), sigma=1.0)
    with pytest.raises(ShapeError, match="KernelVelocity moves a single point set"):
        KernelVelocity(torch.randn(3, 3), sigma=1.0).initial_state(torch.randn(2, 4, 3))
    with pytest.raises(ShapeError, match="x: expected last dimension 3"):
        PointNetEncoder()(torch.randn(4, 2))
