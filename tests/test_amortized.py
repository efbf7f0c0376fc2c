"""Amortised projections (six kinds), amortised max-SW / vMF-DSW and the min-max Module."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import geomot
from geomot._core.errors import ShapeError, ValidationError
from geomot.losses.amortized import AmortizedSlicedWasserstein, amortized_sliced_wasserstein
from geomot.models import AMORTIZED_PROJECTIONS, AmortizedProjection
from geomot.models.amortized import unit_directions
from geomot.structures import Mesh
from tests.conftest import icosphere

D64 = torch.float64
KINDS = ["linear", "generalized_linear", "nonlinear", "attention", "efficient_attention", "linformer"]
SET_KINDS = ["attention", "efficient_attention", "linformer"]
ORDERED = ["linear", "generalized_linear", "nonlinear"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def clouds(b: int, n: int, seed: int = 0, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(b, n, 3, generator=gen(seed), dtype=D64) * torch.tensor([0.5, 0.3, 0.2], dtype=D64) + shift


def projector(kind: str, n_points: int | None = 8, seed: int = 0, **kw) -> AmortizedProjection:
    return AmortizedProjection(kind, n_points=n_points, d_k=8, k=4, generator=gen(seed), **kw).double()


def test_registry_holds_the_six_kinds():
    assert AMORTIZED_PROJECTIONS.names() == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_unit_norm_and_output_mirrors_input(kind):
    p = projector(kind)
    theta = p(clouds(4, 8), clouds(4, 8, seed=1, shift=1.0))
    assert theta.shape == (4, 3) and theta.dtype == D64
    torch.testing.assert_close(theta.norm(dim=-1), torch.ones(4, dtype=D64), rtol=0, atol=1e-12)
    single = p(clouds(1, 8)[0], clouds(1, 8, seed=1, shift=1.0)[0])
    assert single.shape == (3,)
    torch.testing.assert_close(single, p(clouds(1, 8), clouds(1, 8, seed=1, shift=1.0))[0])


@pytest.mark.parametrize("kind", SET_KINDS)
def test_attention_kinds_are_symmetric_order_and_padding_invariant(kind):
    p = projector(kind, n_points=None)
    x, y = clouds(3, 9), clouds(3, 6, seed=1, shift=0.7)  # different sizes on the two sides
    theta = p(x, y)
    perm_x, perm_y = torch.randperm(9, generator=gen(2)), torch.randperm(6, generator=gen(3))
    torch.testing.assert_close(p(x[:, perm_x], y[:, perm_y]), theta, rtol=0, atol=1e-5)
    torch.testing.assert_close(p(y, x), theta, rtol=0, atol=1e-5)
    # padding (with arbitrary values, NaN included when value checks are off) changes nothing
    pad = torch.full((3, 5, 3), 1e3, dtype=D64)
    xp = torch.cat([x, pad], dim=1)
    n = torch.full((3,), 9)
    torch.testing.assert_close(p(xp, y, x_lengths=n), theta, rtol=0, atol=1e-5)
    xp_nan = xp.clone()
    xp_nan[0, 10, 0] = float("nan")
    with geomot.data_checks(False):
        torch.testing.assert_close(p(xp_nan, y, x_lengths=n), theta, rtol=0, atol=1e-5)
    # items of different real sizes in one batch
    x_short = xp.clone()
    x_short[1, 4:] = -7.0  # item 1 has 4 real points
    lengths = torch.tensor([9, 4, 9])
    torch.testing.assert_close(p(x_short, y, x_lengths=lengths)[1], p(x[1:2, :4], y[1:2])[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ORDERED)
def test_linear_kinds_are_tied_to_n_points(kind):
    p = projector(kind, n_points=8)
    with pytest.raises(ShapeError, match=r"built for n_points=8 points .* got 9; build it with n_points=9"):
        p(clouds(2, 9), clouds(2, 8))
    with pytest.raises(ShapeError, match=r"y: the .* n_points=8 .* got 5"):
        p(clouds(2, 8), clouds(2, 5))
    with pytest.raises(ValidationError, match=r"x_lengths: .* cannot skip padding"):
        p(clouds(2, 8), clouds(2, 8), x_lengths=torch.tensor([8, 6]))
    # full lengths are accepted
    torch.testing.assert_close(p(clouds(2, 8), clouds(2, 8), x_lengths=torch.tensor([8, 8])),
                               p(clouds(2, 8), clouds(2, 8)))
    with pytest.raises(ValidationError, match=r"n_points: the .* needs n_points"):
        AmortizedProjection(kind)


def test_construction_errors():
    with pytest.raises(ValidationError, match=r"kind: unknown amortized projection 'transformer'; valid: attention, "
                                              r"efficient_attention, generalized_linear, linear, linformer, nonlinear"):
        AmortizedProjection("transformer")
    with pytest.raises(ValidationError, match=r"d_k: expected an integer >= 1, got 0"):
        AmortizedProjection("attention", d_k=0)
    with pytest.raises(ValidationError, match=r"n_points: expected an integer >= 1, got -3"):
        AmortizedProjection("linear", n_points=-3)
    with pytest.raises(ValidationError, match=r"share_kv: expected True or False"):
        AmortizedProjection("linformer", share_kv=1)


def test_input_errors():
    p = AmortizedProjection("attention")  # float32 parameters
    with pytest.raises(ShapeError, match=r"x: dtype torch.float64 .* parameters are torch.float32"):
        p(clouds(2, 5), clouds(2, 5))
    with pytest.raises(ShapeError, match=r"x: expected last dimension 3"):
        p(torch.zeros(2, 5, 6), torch.zeros(2, 5, 3))
    with pytest.raises(ShapeError, match=r"y: expected a batch of 2 sets \(that of x\), got 3"):
        p(torch.zeros(2, 5, 3), torch.zeros(3, 5, 3))


def test_construction_with_a_generator_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    for kind in KINDS:
        a, b = projector(kind, seed=4), projector(kind, seed=4)
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb)
    assert torch.equal(torch.get_rng_state(), state)


def test_without_a_generator_parameters_are_ordinary_cpu_tensors():
    p = AmortizedProjection("linformer")
    assert {q.device.type for q in p.parameters()} == {"cpu"}
    assert all(torch.isfinite(q).all() for q in p.parameters())


def test_share_kv_shares_the_landmarks():
    p = projector("linformer", n_points=None, share_kv=True)
    assert p.net.e is p.net.f
    assert sum(q.numel() for q in p.parameters()) < sum(q.numel() for q in projector("linformer").parameters())


def test_unit_directions_zero_rows_and_nan():
    v = torch.tensor([[0.0, 0.0, 0.0], [1e30, 1e30, 0.0], [float("nan"), 1.0, 0.0]], dtype=torch.float32)
    u = unit_directions(v)
    torch.testing.assert_close(u[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(u[1], torch.tensor([2**-0.5, 2**-0.5, 0.0]))  # no overflow of |v|^2
    assert torch.isnan(u[2]).all()


# -- the loss --------------------------------------------------------------------------------------------------


def test_max_form_is_the_one_dimensional_distance_along_the_predicted_direction():
    x, y = clouds(3, 8), clouds(3, 8, seed=1, shift=0.5)
    for kind in ("linear", "attention"):
        p = projector(kind)
        theta = p(x, y).detach()
        got = amortized_sliced_wasserstein(x, y, p, distribution="max", reduction="none")
        want = geomot.sliced_wasserstein(x, y, projections=theta[:, :, None], reduction="none")
        torch.testing.assert_close(got, want)


def test_vmf_form_matches_sliced_wasserstein_on_the_same_samples():
    x, y = clouds(2, 7), clouds(2, 5, seed=1, shift=0.5)
    p = projector("efficient_attention", n_points=None)
    got = amortized_sliced_wasserstein(x, y, p, kappa=5.0, n_projections=16, generator=gen(9), reduction="none")
    samples = geomot.ops.directions.sample_vmf(p(x, y), 5.0, 16, generator=gen(9))  # (B, L, D)
    want = geomot.sliced_wasserstein(x, y, projections=samples.transpose(1, 2), reduction="none")
    torch.testing.assert_close(got, want)
    # a large concentration tends to the max form
    big = amortized_sliced_wasserstein(x, y, p, kappa=1e4, n_projections=16, generator=gen(9))
    top = amortized_sliced_wasserstein(x, y, p, distribution="max")
    torch.testing.assert_close(big, top, rtol=2e-2, atol=0)


def test_padded_inputs_give_the_unpadded_value():
    x, y = clouds(2, 9), clouds(2, 6, seed=1, shift=0.5)
    p = projector("attention", n_points=None)
    ref = amortized_sliced_wasserstein(x, y, p, generator=gen(1), reduction="none")
    xp = torch.cat([x, torch.full((2, 3, 3), 5.0, dtype=D64)], dim=1)
    got = amortized_sliced_wasserstein(xp, y, p, x_lengths=torch.tensor([9, 9]), generator=gen(1), reduction="none")
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)


def test_gradients_reach_the_projector_through_the_ascent_objective():
    x, y = clouds(2, 8), clouds(2, 8, seed=1, shift=0.5)
    for kind in KINDS:
        for dist in ("max", "vmf"):
            p = projector(kind)
            (-amortized_sliced_wasserstein(x, y, p, distribution=dist, generator=gen(0))).backward()
            for name, q in p.named_parameters():
                assert q.grad is not None and torch.isfinite(q.grad).all(), (kind, dist, name)
            assert any(float(q.grad.abs().sum()) > 0 for q in p.parameters()), (kind, dist)


@pytest.mark.parametrize("dist", ["max", "vmf"])
@pytest.mark.parametrize("sizes", [(5, 5), (6, 4)])
def test_gradcheck_with_a_fixed_projector(dist, sizes):
    p = projector("attention", n_points=None).requires_grad_(False)
    x = clouds(2, sizes[0]).requires_grad_(True)
    y = clouds(2, sizes[1], seed=1, shift=0.5).requires_grad_(True)

    def f(a, b):
        return amortized_sliced_wasserstein(a, b, p, distribution=dist, kappa=3.0, n_projections=4, generator=gen(3))

    assert torch.autograd.gradcheck(f, (x, y))


def test_gradcheck_linear_projector_equal_sizes():
    p = projector("nonlinear", n_points=5).requires_grad_(False)
    x, y = clouds(2, 5).requires_grad_(True), clouds(2, 5, seed=1, shift=0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda a, b: amortized_sliced_wasserstein(a, b, p, kappa=3.0, n_projections=4, generator=gen(3)), (x, y)
    )


def test_meshes_follow_the_measure_rule():
    v, f = icosphere(1)
    a, b = Mesh(v, f), Mesh(v * 1.3 + 0.1, f)
    p6 = AmortizedProjection("attention", dim=6, d_k=8, generator=gen(0)).double()
    val = amortized_sliced_wasserstein(a, b, p6, generator=gen(1))  # default: 6-D oriented varifolds
    assert torch.isfinite(val) and float(val.detach()) > 0
    p3 = projector("attention", n_points=None)
    cloud = v[None] * 0.9
    val3 = amortized_sliced_wasserstein(a, cloud, p3, measure="vertices", generator=gen(1))
    assert torch.isfinite(val3) and float(val3.detach()) > 0
    with pytest.raises(ShapeError, match=r"measure="):
        amortized_sliced_wasserstein(a, cloud, p3)


def test_nan_inputs_raise_or_give_nan():
    x, y = clouds(2, 6), clouds(2, 6, seed=1)
    x[0, 2, 1] = float("nan")
    p = projector("attention", n_points=None)
    with pytest.raises(ValidationError, match=r"x: contains 1 NaN/Inf"):
        amortized_sliced_wasserstein(x, y, p, distribution="max")
    with geomot.data_checks(False):
        out = amortized_sliced_wasserstein(x, y, p, distribution="max", reduction="none")
    assert torch.isnan(out[0]) and torch.isfinite(out[1])


def test_overflow_in_the_projector_raises_or_gives_nan():
    x = clouds(2, 8).float() * 1e20
    y = clouds(2, 8, seed=1).float()
    p = AmortizedProjection("attention", d_k=8, generator=gen(0))
    with pytest.raises(ValidationError, match=r"projector: non-finite direction\(s\) .* overflowed: rescale"):
        amortized_sliced_wasserstein(x, y, p, generator=gen(0))
    with geomot.data_checks(False):
        out = amortized_sliced_wasserstein(x, y, p, generator=gen(0), reduction="none")
    assert not torch.isfinite(out).any()


def test_function_errors():
    x, y = clouds(2, 6), clouds(2, 6, seed=1)
    p = projector("attention", n_points=None)
    with pytest.raises(ValidationError, match=r"kappa: expected a positive value, got 0"):
        amortized_sliced_wasserstein(x, y, p, kappa=0)
    with pytest.raises(ValidationError, match=r"kappa: expected a positive value, got -1"):
        amortized_sliced_wasserstein(x, y, p, kappa=-1.0, distribution="max")
    with pytest.raises(ValidationError, match=r"distribution: unknown amortized distribution 'uniform'; valid: max, vmf"):
        amortized_sliced_wasserstein(x, y, p, distribution="uniform")
    with pytest.raises(ValidationError, match=r"n_projections: expected an integer >= 1, got 0"):
        amortized_sliced_wasserstein(x, y, p, n_projections=0)
    with pytest.raises(ValidationError, match=r"p: expected a value >= 1.0"):
        amortized_sliced_wasserstein(x, y, p, p=0.5)
    with pytest.raises(ShapeError, match=r"projector: expected one direction per pair, shape \(2, 3\), got \(2, 1, 3\)"):
        amortized_sliced_wasserstein(x, y, lambda a, b, **kw: torch.ones(2, 1, 3, dtype=D64))
    with pytest.raises(ShapeError, match=r"built for n_points=8 points"):
        amortized_sliced_wasserstein(x, y, projector("linear", n_points=8))


def test_function_leaves_the_global_rng_alone():
    x, y = clouds(2, 6), clouds(2, 6, seed=1)
    p = projector("linformer", n_points=None)
    state = torch.get_rng_state()
    amortized_sliced_wasserstein(x, y, p, generator=gen(0))
    amortized_sliced_wasserstein(x, y, p, distribution="max")
    assert torch.equal(torch.get_rng_state(), state)


# -- the Module ------------------------------------------------------------------------------------------------


def module(kind: str = "attention", **kw) -> AmortizedSlicedWasserstein:
    return AmortizedSlicedWasserstein(projector=projector(kind, n_points=8), n_projections=8, **kw)


def test_training_mode_takes_one_ascent_step_eval_mode_none():
    x, y = clouds(2, 8), clouds(2, 8, seed=1, shift=0.5)
    loss_fn = module()
    before = [q.detach().clone() for q in loss_fn.projector.parameters()]
    loss_fn(x, y, generator=gen(0))
    after = [q.detach().clone() for q in loss_fn.projector.parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert loss_fn.optimizer.state_dict()["state"][0]["step"] == 1
    loss_fn.eval()
    loss_fn(x, y, generator=gen(0))
    assert all(torch.equal(a, q) for a, q in zip(after, loss_fn.projector.parameters(), strict=True))
    # inside no_grad a training-mode module still takes its step
    loss_fn.train()
    with torch.no_grad():
        loss_fn(x, y, generator=gen(0))
    assert loss_fn.optimizer.state_dict()["state"][0]["step"] == 2


def test_ascent_steps_increase_the_amortised_distance():
    x, y = clouds(4, 8), clouds(4, 8, seed=1, shift=0.3)
    loss_fn = module("efficient_attention", distribution="max", lr=5e-2)
    with torch.no_grad():
        start = float(amortized_sliced_wasserstein(x, y, loss_fn.projector, distribution="max"))
    for _ in range(30):
        loss_fn(x, y)
    with torch.no_grad():
        end = float(amortized_sliced_wasserstein(x, y, loss_fn.projector, distribution="max"))
    assert end > start * 1.05


def test_module_value_gradients_reach_x_not_the_projector():
    x = clouds(2, 8).requires_grad_(True)
    y = clouds(2, 8, seed=1, shift=0.5)
    loss_fn = module("linear")
    val = loss_fn(x, y, generator=gen(0))
    val.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and float(x.grad.abs().sum()) > 0
    assert all(q.grad is None for q in loss_fn.projector.parameters())
    # eval mode: the value is the function's with the current projector
    loss_fn.eval()
    want = amortized_sliced_wasserstein(x, y, loss_fn.projector, n_projections=8, generator=gen(5))
    torch.testing.assert_close(loss_fn(x, y, generator=gen(5)), want)


def test_module_leaves_the_global_rng_alone():
    loss_fn = module()
    state = torch.get_rng_state()
    loss_fn(clouds(2, 8), clouds(2, 8, seed=1), generator=gen(0))
    assert torch.equal(torch.get_rng_state(), state)


def test_state_dict_holds_projector_and_optimizer():
    x, y = clouds(2, 8), clouds(2, 8, seed=1, shift=0.5)
    a = module()
    for _ in range(3):
        a(x, y, generator=gen(0))
    sd = a.state_dict()
    assert any(k.startswith("projector.") for k in sd) and "_extra_state" in sd
    b = module()
    b.load_state_dict(sd)
    for qa, qb in zip(a.projector.parameters(), b.projector.parameters(), strict=True):
        assert torch.equal(qa, qb)
    assert b.optimizer.state_dict()["state"][0]["step"] == 3
    torch.testing.assert_close(b.projector_optimizer_state_dict()["state"][0]["exp_avg_sq"],
                               a.optimizer.state_dict()["state"][0]["exp_avg_sq"])
    # the next steps coincide
    a(x, y, generator=gen(1))
    b(x, y, generator=gen(1))
    for qa, qb in zip(a.projector.parameters(), b.projector.parameters(), strict=True):
        torch.testing.assert_close(qa, qb)


def test_optimizer_factory_and_settings():
    loss_fn = AmortizedSlicedWasserstein(
        projector=projector("attention"), optimizer=lambda params: torch.optim.SGD(params, lr=0.1), p=1,
        reduction="none", distribution="max",
    )
    assert isinstance(loss_fn.optimizer, torch.optim.SGD)
    out = loss_fn(clouds(3, 8), clouds(3, 8, seed=1))
    assert out.shape == (3,)
    assert "distribution='max'" in repr(loss_fn)


def test_module_errors():
    p = projector("attention")
    with pytest.raises(ValidationError, match=r"kappa: expected a positive value, got 0"):
        AmortizedSlicedWasserstein(projector=p, kappa=0.0)
    with pytest.raises(ValidationError, match=r"distribution: unknown amortized distribution 'sphere'"):
        AmortizedSlicedWasserstein(projector=p, distribution="sphere")
    with pytest.raises(ValidationError, match=r"projector: expected an nn.Module, got function"):
        AmortizedSlicedWasserstein(projector=lambda a, b: a)
    with pytest.raises(ValidationError, match=r"projector: has no trainable parameters"):
        AmortizedSlicedWasserstein(projector=nn.Identity())
    with pytest.raises(ValidationError, match=r"lr: expected a positive value"):
        AmortizedSlicedWasserstein(projector=p, lr=0.0)
    with pytest.raises(ValidationError, match=r"betas: expected two numbers in \[0, 1\), got \(0.5, 1.0\)"):
        AmortizedSlicedWasserstein(projector=p, betas=(0.5, 1.0))
    with pytest.raises(ValidationError, match=r"betas: expected two numbers in \[0, 1\), got 0.9"):
        AmortizedSlicedWasserstein(projector=p, betas=0.9)
    with pytest.raises(ValidationError, match=r"optimizer: expected a factory"):
        AmortizedSlicedWasserstein(projector=p, optimizer="adam")
    with pytest.raises(ValidationError, match=r"optimizer: the factory returned list"):
        AmortizedSlicedWasserstein(projector=p, optimizer=list)
    with pytest.raises(ValidationError, match=r"unknown setting\(s\) 'n_iters'"):
        AmortizedSlicedWasserstein(projector=p, n_iters=3)
    with pytest.raises(ValidationError, match=r"reduction: unknown reduction 'max'"):
        AmortizedSlicedWasserstein(projector=p, reduction="max")
    loss_fn = AmortizedSlicedWasserstein(projector=p)
    with pytest.raises(ValidationError, match=r"forward: 'kappa': not a per-call input"):
        loss_fn(clouds(2, 8), clouds(2, 8), kappa=2.0)
    with pytest.raises(ValidationError, match=r"no 'optimizer' entry"):
        loss_fn.set_extra_state({})


@pytest.mark.slow
def test_two_gloo_ranks_keep_one_projector(tmp_path):
    """Under torchrun each rank sees other clouds, yet the gradient averaging keeps the projectors identical."""
    import socket
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "ranks.py"
    script.write_text(textwrap.dedent("""
        import torch, torch.distributed as dist
        from geomot.losses.amortized import AmortizedSlicedWasserstein
        from geomot.models.amortized import AmortizedProjection
        dist.init_process_group("gloo")
        r = dist.get_rank()
        proj = AmortizedProjection("attention", dim=3, generator=torch.Generator().manual_seed(0))
        loss = AmortizedSlicedWasserstein(projector=proj)
        x = torch.randn(4, 32, 3, generator=torch.Generator().manual_seed(10 + r))
        y = torch.randn(4, 32, 3, generator=torch.Generator().manual_seed(20 + r))
        for _ in range(3):
            loss(x, y, generator=torch.Generator().manual_seed(r))
        flat = torch.cat([p.detach().flatten() for p in proj.parameters()])
        both = [torch.zeros_like(flat) for _ in range(2)]
        dist.all_gather(both, flat)
        if r == 0:
            assert torch.equal(both[0], both[1]), float((both[0] - both[1]).abs().max())
            assert not torch.equal(flat, torch.cat([p.flatten() for p in AmortizedProjection(
                "attention", dim=3, generator=torch.Generator().manual_seed(0)).parameters()]).detach())
        dist.destroy_process_group()
    """))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         str(script)],
        check=True, timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
