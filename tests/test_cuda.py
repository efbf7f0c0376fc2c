"""CUDA: every loss, solver and model gives its CPU result on the GPU, keeps the input's device and dtype, and the
sliced hot path never synchronises with the host.

Each comparison runs the same call on copies of the same inputs on the CPU and on the GPU, then compares the
outputs and the gradients (float32: relative 1e-4 / 1e-3 of the largest entry, float64: tighter). Where a
function draws random numbers the directions are passed explicitly (``projections=``), or the draws of the
sliced variants come from one seeded CPU generator on both devices (:func:`_host_draws`); the sampling on the
device itself is checked separately (reproducible per generator, vMF moments).

Skipped without a CUDA device (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``. Only
torch, numpy, scipy, torchdiffeq and pytest are needed (no POT, trimesh, KeOps).
"""

from __future__ import annotations

import contextlib
import copy
import math
from unittest import mock

import pytest
import torch

import geomot
from geomot.correspondence import (
    fmap_from_descriptors,
    fmap_from_p2p,
    p2p_from_fmap,
    regularized_fmap,
    soft_fmap,
    zoomout,
)
from geomot.deformation import integrate
from geomot.deformation.dataset import ConditionedDeformer
from geomot.io.synthetic import icosphere
from geomot.losses import sliced_variants
from geomot.losses.varifold import varifold_inner
from geomot.models import KernelVelocity, MLPVelocity
from geomot.models.encoder import PointNetEncoder
from geomot.ops.directions import random_directions, sample_vmf, vmf_mean_resultant_length
from geomot.ops.knn import knn_points
from geomot.structures import Mesh

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")
F32, F64 = torch.float32, torch.float64
#: (value rtol, gradient rtol) of a CPU / CUDA comparison; the absolute floor is rtol times the largest entry.
TOL = {F32: (1e-4, 1e-3), F64: (1e-9, 1e-7)}
#: float32 gradients of the sliced family: a point whose projection nearly ties with another's may be matched to
#: the other partner on the other device along a few directions.
SLICED_GRAD_F32 = 3e-3
DTYPES = pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])


# -- helpers ------------------------------------------------------------------------------------------------
def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sliced_grad_rtol(dtype: torch.dtype) -> float:
    return SLICED_GRAD_F32 if dtype == F32 else TOL[dtype][1]


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """Elementwise ``|a - e| <= rtol |e| + rtol max|e|``: entries near zero do not fail on rounding, a wrong
    entry of ordinary size does."""
    actual, expected = actual.detach().cpu(), expected.detach().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if not expected.is_floating_point():
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), f"{what}: indices differ"
        return
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale + 1e-30,
                               msg=lambda m: f"{what} (CUDA vs CPU): {m}")


def _run(fn, device, inputs: dict, wrt: tuple[str, ...]):
    """``fn(**inputs)`` on copies of ``inputs`` moved to ``device``; gradients of the sum of the floating outputs
    w.r.t. the inputs named in ``wrt``. Checks that outputs and gradients live on ``device`` with the dtype of the
    inputs, and are finite. Returns ``(outputs, grads)`` on the CPU."""
    device = torch.device(device)
    moved = {}
    for k, v in inputs.items():
        t = v.detach().to(device) if isinstance(v, torch.Tensor) else v
        moved[k] = t.requires_grad_(True) if k in wrt else t
    out = fn(**moved)
    outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    dtype = next(v.dtype for v in moved.values() if isinstance(v, torch.Tensor) and v.is_floating_point())
    for i, o in enumerate(outs):
        assert o.device.type == device.type, f"output {i} on {o.device}, inputs on {device}"
        if o.is_floating_point():
            assert o.dtype == dtype, f"output {i} is {o.dtype}, inputs {dtype}"
            assert bool(torch.isfinite(o).all()), f"output {i} is not finite"
    grads: tuple[torch.Tensor, ...] = ()
    if wrt:
        total = sum(o.sum() for o in outs if o.is_floating_point() and o.requires_grad)
        grads = torch.autograd.grad(total, [moved[k] for k in wrt])
        for k, g in zip(wrt, grads):
            assert g.device.type == device.type and g.dtype == moved[k].dtype, f"grad {k}: {g.dtype} on {g.device}"
            assert bool(torch.isfinite(g).all()), f"grad {k} is not finite"
    return [o.detach().cpu() for o in outs], [g.cpu() for g in grads]


def _assert_cuda_agrees(fn, inputs: dict, wrt: tuple[str, ...] = (), *, dtype=F32, rtol=None, grad_rtol=None, names=None):
    """Run ``fn`` on the CPU and on CUDA and compare outputs and gradients; returns the CPU ``(outputs, grads)``.
    Every gradient compared must be nonzero somewhere (a comparison of zeros proves nothing)."""
    rtol = TOL[dtype][0] if rtol is None else rtol
    grad_rtol = TOL[dtype][1] if grad_rtol is None else grad_rtol
    out_c, g_c = _run(fn, "cpu", inputs, wrt)
    out_g, g_g = _run(fn, CUDA, inputs, wrt)
    for i, (a, b) in enumerate(zip(out_g, out_c)):
        _assert_close(a, b, rtol, f"output {names[i] if names else i}")
    for k, a, b in zip(wrt, g_g, g_c):
        assert float(b.abs().max()) > 0, f"grad {k} is zero on the CPU: the comparison would be empty"
        _assert_close(a, b, grad_rtol, f"grad {k}")
    return out_c, g_c


def _clouds(bsz=None, n=3000, m=3000, seed=0, dtype=F32):
    g = _gen(seed)
    lead = () if bsz is None else (bsz,)
    x = torch.randn(*lead, n, 3, generator=g, dtype=dtype)
    y = torch.randn(*lead, m, 3, generator=g, dtype=dtype) * 0.7 + 0.5
    proj = random_directions(64, 3, generator=g, dtype=dtype).T.contiguous()  # (D, L)
    return x, y, proj


def _sphere(subdiv: int = 2, dtype=F32) -> tuple[torch.Tensor, torch.Tensor]:
    m = icosphere(subdiv, dtype=dtype)
    return m.verts, m.faces


def _bumpy(verts: torch.Tensor, seed: int = 1, amount: float = 0.15) -> torch.Tensor:
    """A smooth non-rigid deformation of a sphere (stretch + bumps), same dtype."""
    g = _gen(seed)
    w = torch.randn(3, 3, generator=g, dtype=verts.dtype)
    bump = 1.0 + amount * torch.sin(3.0 * verts @ w).sum(-1, keepdim=True)
    return verts * bump * verts.new_tensor([1.3, 1.0, 0.8]) + verts.new_tensor([0.1, -0.05, 0.02])


def _open_mesh(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The faces of the upper half (an open surface with one boundary loop)."""
    return faces[verts[faces].mean(1)[:, 2] > 0]


@contextlib.contextmanager
def _host_draws(seed: int):
    """The random draws of the sliced variants (uniform and vMF directions) come from one CPU generator seeded
    with ``seed`` and are moved to the device, so that a CPU run and a CUDA run see the same directions."""
    g = _gen(seed)

    def directions(n, dim, *, generator=None, dtype=F32, device=None):
        return random_directions(n, dim, generator=g, dtype=dtype).to(device)

    def vmf(loc, kappa, n, *, generator=None):
        return sample_vmf(loc.cpu(), kappa, n, generator=g).to(loc.device)  # differentiable in loc

    with mock.patch.object(sliced_variants, "random_directions", directions), \
            mock.patch.object(sliced_variants, "sample_vmf", vmf):
        yield


def _randomize(module: torch.nn.Module, seed: int, scale: float = 0.3) -> torch.nn.Module:
    """Overwrite every parameter with seeded Gaussians (the output layers of the velocity fields start at 0)."""
    g = _gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


# -- sliced Wasserstein -------------------------------------------------------------------------------------
def _value_and_grad(x, y, proj, device, **kwargs):
    xx = x.to(device).requires_grad_(True)
    val = geomot.sliced_wasserstein(xx, y.to(device), projections=proj.to(device), **kwargs)
    (grad,) = torch.autograd.grad(val.sum(), xx)
    return val.detach().cpu(), grad.cpu()


@pytest.mark.parametrize(("bsz", "m"), [(None, 3000), (4, 3000), (None, 2500)])
def test_sliced_cuda_matches_cpu(bsz, m):
    x, y, proj = _clouds(bsz, m=m)
    kwargs = {"reduction": "none"} if bsz else {}
    v_cpu, g_cpu = _value_and_grad(x, y, proj, "cpu", **kwargs)
    v_gpu, g_gpu = _value_and_grad(x, y, proj, "cuda", **kwargs)
    torch.testing.assert_close(v_gpu, v_cpu, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g_gpu, g_cpu, rtol=1e-3, atol=1e-6)


@DTYPES
def test_sliced_weighted_padded_quantile_path_cuda_matches_cpu(dtype):
    """Unequal sizes, random weights and padding (the merged-quantile path), gradients to points and weights."""
    x, y, proj = _clouds(3, n=700, m=500, dtype=dtype)
    g = _gen(3)
    inputs = {"x": x, "y": y, "a": torch.rand(3, 700, generator=g, dtype=dtype) + 0.1,
              "b": torch.rand(3, 500, generator=g, dtype=dtype) + 0.1, "proj": proj,
              "lx": torch.tensor([700, 650, 420]), "ly": torch.tensor([500, 500, 333])}

    def fn(x, y, a, b, proj, lx, ly):
        return geomot.sliced_wasserstein(x, y, x_weights=a, y_weights=b, x_lengths=lx, y_lengths=ly,
                                         projections=proj, p=1.5, reduction="none")

    _assert_cuda_agrees(fn, inputs, ("x", "y", "a"), dtype=dtype, grad_rtol=_sliced_grad_rtol(dtype))


@pytest.mark.parametrize("cv", ["lower", "upper"])
@DTYPES
def test_control_variate_sliced_cuda_matches_cpu(cv, dtype):
    x, y, proj = _clouds(2, n=1500, m=1500, dtype=dtype)

    def fn(x, y, proj):
        return geomot.sliced_wasserstein(x, y, projections=proj, control_variate=cv, reduction="none")

    _assert_cuda_agrees(fn, {"x": x, "y": y, "proj": proj}, ("x", "y", "proj"), dtype=dtype, grad_rtol=_sliced_grad_rtol(dtype))


@pytest.mark.parametrize("energy", ["exp", "identity", "square"])
@pytest.mark.parametrize("detach_weights", [True, False])
def test_energy_based_sliced_cuda_matches_cpu(energy, detach_weights):
    x, y, proj = _clouds(2, n=1200, m=900)

    def fn(x, y, proj):
        return geomot.energy_based_sliced_wasserstein(x, y, projections=proj, energy=energy,
                                                      detach_weights=detach_weights, reduction="none")

    _assert_cuda_agrees(fn, {"x": x, "y": y, "proj": proj}, ("x", "y"), grad_rtol=SLICED_GRAD_F32)


@DTYPES
def test_max_sliced_cuda_matches_cpu(dtype):
    """Same random start on both devices, a fixed number of ascent steps (``tol=0``): same direction, value and
    gradient."""
    x, y, _ = _clouds(2, n=800, m=800, dtype=dtype)
    x = x * x.new_tensor([2.5, 1.0, 0.6])  # a clear most-discriminative direction

    def fn(x, y):
        with _host_draws(5):
            return geomot.max_sliced_wasserstein(x, y, max_iter=30, lr=0.2, tol=0.0, reduction="none")

    rtol, grad_rtol = (1e-4, SLICED_GRAD_F32) if dtype == F32 else (1e-8, 1e-6)
    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol)


@DTYPES
def test_distributional_sliced_cuda_matches_cpu(dtype):
    """DSW with the same push-forward on both devices: value, input gradients and the push-forward after its
    Adam steps (the amortised part, trained in place) agree."""
    x, y, _ = _clouds(2, n=600, m=500, dtype=dtype)
    f0 = torch.nn.Linear(3, 3).to(dtype)
    with torch.no_grad():
        f0.weight.copy_(torch.eye(3, dtype=dtype) + 0.1 * torch.randn(3, 3, generator=_gen(7), dtype=dtype))
        f0.bias.zero_()
    trained = []  # the push-forward after the CPU run, then after the CUDA run

    def fn(x, y):
        f = copy.deepcopy(f0).to(x.device)
        with _host_draws(11):
            out = geomot.distributional_sliced_wasserstein(x, y, push_forward=f, n_projections=50, max_iter=5,
                                                           lr=0.05, reduction="none")
        trained.append(f.weight.detach().cpu())
        return out

    rtol, grad_rtol = (1e-4, SLICED_GRAD_F32) if dtype == F32 else (1e-8, 1e-6)
    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol)
    assert not torch.equal(trained[0], f0.weight.detach()), "the push-forward was not trained"
    _assert_close(trained[1], trained[0], 10 * rtol, "trained push-forward")


@DTYPES
def test_vmf_sliced_cuda_matches_cpu(dtype):
    x, y, _ = _clouds(2, n=700, m=600, dtype=dtype)

    def fn(x, y):
        with _host_draws(13):
            return geomot.vmf_sliced_wasserstein(x, y, n_projections=40, kappa=8.0, max_iter=5, lr=0.2,
                                                 reduction="none")

    rtol, grad_rtol = (1e-4, SLICED_GRAD_F32) if dtype == F32 else (1e-8, 1e-6)
    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol)


_DRAWING = {
    "sw": lambda x, y, g: geomot.sliced_wasserstein(x, y, n_projections=32, generator=g),
    "sw-qmc": lambda x, y, g: geomot.sliced_wasserstein(x, y, n_projections=32, projections="qmc", generator=g),
    "max": lambda x, y, g: geomot.max_sliced_wasserstein(x, y, max_iter=2, generator=g),
    "dsw": lambda x, y, g: geomot.distributional_sliced_wasserstein(x, y, n_projections=32, max_iter=2, generator=g),
    "vmf": lambda x, y, g: geomot.vmf_sliced_wasserstein(x, y, n_projections=32, max_iter=2, generator=g),
    "ebsw": lambda x, y, g: geomot.energy_based_sliced_wasserstein(x, y, n_projections=32, generator=g),
}


@pytest.mark.parametrize("name", list(_DRAWING))
def test_sliced_draws_on_the_device_follow_the_generator(name):
    """With a CUDA generator the directions are drawn on the device: one seed gives one value, another seed
    another; the value and its gradient stay on the device."""
    x, y, _ = _clouds(n=500, m=400)
    x, y = x.to(CUDA).requires_grad_(True), y.to(CUDA)
    fn = _DRAWING[name]
    a = fn(x, y, torch.Generator(device=CUDA).manual_seed(1))
    b = fn(x, y, torch.Generator(device=CUDA).manual_seed(1))
    c = fn(x, y, torch.Generator(device=CUDA).manual_seed(2))
    assert a.device.type == "cuda" and a.dtype == F32 and a.dim() == 0
    torch.testing.assert_close(a, b, rtol=1e-6, atol=0)
    assert abs(float(a.detach()) - float(c.detach())) > 1e-5 * abs(float(a.detach())), "another seed gave the same value"
    (grad,) = torch.autograd.grad(a, x)
    assert grad.device.type == "cuda" and bool(torch.isfinite(grad).all()) and float(grad.abs().max()) > 0


@pytest.mark.parametrize("dim", [3, 5])
def test_vmf_sampler_on_the_device(dim):
    """vMF samples drawn on the device (inverse CDF for d = 3, Wood's rejection loop otherwise) are unit vectors
    with the right mean resultant length ``A_d(kappa)``."""
    kappa, n = 12.0, 100_000
    loc = torch.randn(2, dim, generator=_gen(4)).to(CUDA)
    s = sample_vmf(loc, kappa, n, generator=torch.Generator(device=CUDA).manual_seed(0))
    assert s.shape == (2, n, dim) and s.device.type == "cuda"
    torch.testing.assert_close(s.norm(dim=-1), torch.ones(2, n, device=CUDA), rtol=0, atol=1e-5)
    mu = loc / loc.norm(dim=-1, keepdim=True)
    mean_cos = (s * mu[:, None, :]).sum(-1).mean(-1).cpu()
    expected = vmf_mean_resultant_length(kappa, dim)
    torch.testing.assert_close(mean_cos, torch.full((2,), expected), rtol=0, atol=3e-3)


@DTYPES
def test_sliced_varifold_mesh_cuda_matches_cpu(dtype):
    """``sliced_wasserstein`` between two meshes (default measure: varifold atoms in R^6 with area weights;
    different face counts, so the quantile path), gradient to the vertices."""
    v1, f1 = _sphere(2, dtype)
    v2, f2 = _sphere(3, dtype)
    proj = random_directions(80, 6, generator=_gen(2), dtype=dtype).T.contiguous()

    def fn(v1, f1, v2, f2, proj):
        return geomot.sliced_wasserstein(Mesh(v1, f1), Mesh(v2, f2), projections=proj,
                                         measure_options={"normal_weight": 0.5})

    _assert_cuda_agrees(fn, {"v1": _bumpy(v1), "f1": f1, "v2": v2 * 1.1, "f2": f2, "proj": proj}, ("v1", "v2"), dtype=dtype,
           grad_rtol=_sliced_grad_rtol(dtype))


@pytest.mark.parametrize("m", [3000, 2500])
def test_sliced_cuda_hot_path_has_no_host_sync(m):
    """With the value checks off (:func:`geomot.data_checks`), forward and backward of the sort path (equal
    sizes) and of the quantile path (unequal sizes) run with CUDA sync debugging set to raise on any sync."""
    x, y, proj = _clouds(8, m=m)
    x, y, proj = x.cuda().requires_grad_(True), y.cuda(), proj.cuda()
    geomot.sliced_wasserstein(x, y, projections=proj).backward()  # warm-up (allocations, kernels)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    try:
        torch.cuda.set_sync_debug_mode("error")
        with geomot.data_checks(False):
            loss = geomot.sliced_wasserstein(x, y, projections=proj)
            loss.backward()
            loss = geomot.sliced_wasserstein(x, y, n_projections=32)  # random directions drawn on the device
            loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    assert torch.isfinite(x.grad).all()


# -- Sinkhorn -----------------------------------------------------------------------------------------------
def test_sinkhorn_cuda_matches_cpu():
    x, y, _ = _clouds(n=500, m=400)
    cpu = geomot.sinkhorn(x.double(), y.double(), eps=0.05)
    gpu = geomot.sinkhorn(x.double().cuda(), y.double().cuda(), eps=0.05)
    torch.testing.assert_close(gpu.transport_cost.cpu(), cpu.transport_cost, rtol=1e-6, atol=1e-9)


def _sinkhorn_outputs(res):
    return res.value, res.transport_cost, res.f, res.g


_SK_NAMES = ("value", "transport_cost", "f", "g")


@pytest.mark.parametrize("method", ["scaling", "log", "sns"])
@DTYPES
def test_sinkhorn_methods_cuda_match_cpu(method, dtype):
    """Dense backend, eps-scaling from the largest cost, each solver: value, <P, C>, potentials and the
    (envelope) gradients to both point sets."""
    x, y, _ = _clouds(n=400, m=300, dtype=dtype)
    tol = 1e-5 if dtype == F32 else 1e-9

    def fn(x, y):
        res = geomot.sinkhorn(x, y, eps=0.05, tol=tol, max_iter=3000, method=method, init="zero",
                              eps_scaling=0.5, backend="dense")
        assert bool(res.converged), f"{method}: marginal error {float(res.marginal_error):.3g}"
        return _sinkhorn_outputs(res)

    rtol, grad_rtol = (2e-4, 2e-3) if dtype == F32 else (1e-7, 1e-6)
    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol, names=_SK_NAMES)


@DTYPES
def test_sinkhorn_online_log_backend_cuda_matches_cpu(dtype):
    """Online (blocked) backend, log domain with the fused relaxed sweeps, several blocks per pass."""
    x, y, _ = _clouds(2, n=300, m=250, dtype=dtype)
    tol = 1e-5 if dtype == F32 else 1e-9

    def fn(x, y):
        res = geomot.sinkhorn(x, y, eps=0.1, tol=tol, max_iter=3000, method="log", backend="online",
                              chunk_bytes=512 * 1024)
        assert bool(res.converged.all())
        return _sinkhorn_outputs(res)

    rtol, grad_rtol = (2e-4, 2e-3) if dtype == F32 else (1e-7, 1e-6)
    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol, names=_SK_NAMES)


def test_sinkhorn_unrolled_gradients_cuda_match_cpu():
    """``grad="unroll"``: autograd through every log-domain iteration (fixed count: tol is not reached)."""
    x, y, _ = _clouds(n=200, m=150, dtype=F64)

    def fn(x, y):
        res = geomot.sinkhorn(x, y, eps=0.05, tol=1e-30, max_iter=60, method="log", grad="unroll",
                              eps_scaling=None, warn=False)
        assert res.n_iters == 60
        return res.value

    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=F64)


@DTYPES
def test_sinkhorn_batched_padded_unbalanced_cuda_matches_cpu(dtype):
    """Batch with padding, random weights and relaxed marginals (``tau``); gradients to points and weights."""
    x, y, _ = _clouds(3, n=400, m=300, dtype=dtype)
    g = _gen(9)
    inputs = {"x": x, "y": y, "a": torch.rand(3, 400, generator=g, dtype=dtype) + 0.2,
              "b": torch.rand(3, 300, generator=g, dtype=dtype) + 0.2,
              "lx": torch.tensor([400, 310, 200]), "ly": torch.tensor([300, 300, 123])}
    tol = 1e-5 if dtype == F32 else 1e-10

    def fn(x, y, a, b, lx, ly):
        res = geomot.sinkhorn(x, y, x_weights=a, y_weights=b, x_lengths=lx, y_lengths=ly, eps=0.05, tau=1.0,
                              tol=tol, max_iter=3000)
        assert bool(res.converged.all())
        return _sinkhorn_outputs(res)

    rtol, grad_rtol = (2e-4, 2e-3) if dtype == F32 else (1e-7, 1e-6)
    _assert_cuda_agrees(fn, inputs, ("x", "y", "a"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol, names=_SK_NAMES)


def test_sinkhorn_from_cost_and_plan_cuda_match_cpu():
    """A given cost matrix (gradient to the cost), and the lazy plan: ``P v``, ``P^T u``, the dense plan and the
    barycentric map on the device."""
    g = _gen(12)
    e1, e2 = torch.randn(300, 8, generator=g, dtype=F64), torch.randn(250, 8, generator=g, dtype=F64)
    inputs = {"c": torch.cdist(e1, e2) ** 2, "v": torch.randn(250, 4, generator=g, dtype=F64),
              "u": torch.randn(300, generator=g, dtype=F64), "yc": e2}

    def fn(c, v, u, yc):
        res = geomot.sinkhorn_from_cost(c, eps=0.5, tol=1e-11, max_iter=5000)
        assert bool(res.converged)
        plan = res.plan
        return res.value, res.f, plan @ v, plan.rmatmul(u), plan.dense(), plan.barycentric_map(yc)

    _assert_cuda_agrees(fn, inputs, ("c",), dtype=F64, rtol=1e-7, grad_rtol=1e-6,
           names=("value", "f", "P v", "P^T u", "dense plan", "barycentric map"))


@DTYPES
def test_sinkhorn_divergence_cuda_matches_cpu(dtype):
    x, y, _ = _clouds(2, n=500, m=450, dtype=dtype)
    tol = 1e-5 if dtype == F32 else 1e-10

    def fn(x, y):
        return geomot.sinkhorn_divergence(x, y, eps=0.02, tol=tol, max_iter=3000, reduction="none")

    rtol, grad_rtol = (1e-3, 2e-3) if dtype == F32 else (1e-7, 1e-6)
    _assert_cuda_agrees(fn, {"x": x, "y": y}, ("x", "y"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol)


# -- varifold kernel distance -------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ["linear", "binet", "gaussian_oriented"])
@DTYPES
def test_varifold_mesh_cuda_matches_cpu(kernel, dtype):
    """Two meshes of different sizes, several row blocks (``chunk_size``), gradient to both meshes' vertices."""
    v1, f1 = _sphere(2, dtype)
    v2, f2 = _sphere(1, dtype)

    def fn(v1, f1, v2, f2):
        return geomot.varifold_distance(Mesh(v1, f1), Mesh(v2, f2), sigma=0.3, kernel=kernel, chunk_size=64,
                                        backend="torch")

    rtol, grad_rtol = (3e-4, 2e-3) if dtype == F32 else TOL[F64]
    _assert_cuda_agrees(fn, {"v1": _bumpy(v1), "f1": f1, "v2": v2 * 0.9, "f2": f2}, ("v1", "v2"), dtype=dtype, rtol=rtol,
           grad_rtol=grad_rtol)


@pytest.mark.parametrize("kernel", ["linear", "binet", "gaussian_oriented"])
def test_varifold_tensors_padded_cuda_matches_cpu(kernel):
    """Positions + normals + masses as padded batched tensors: the distance (``reduction="none"``) and the inner
    product, gradients to positions, normals and masses."""
    g = _gen(21)
    x, y = torch.randn(2, 500, 3, generator=g), torch.randn(2, 400, 3, generator=g) * 0.8
    nx = torch.nn.functional.normalize(torch.randn(2, 500, 3, generator=g), dim=-1)
    ny = torch.nn.functional.normalize(torch.randn(2, 400, 3, generator=g), dim=-1)
    inputs = {"x": x, "y": y, "nx": nx, "ny": ny, "wx": torch.rand(2, 500, generator=g) + 0.1,
              "lx": torch.tensor([500, 377]), "ly": torch.tensor([321, 400])}

    def fn(x, y, nx, ny, wx, lx, ly):
        kw = dict(x_normals=nx, y_normals=ny, x_weights=wx, x_lengths=lx, y_lengths=ly, sigma=0.5, kernel=kernel,
                  chunk_size=128, backend="torch")
        return geomot.varifold_distance(x, y, reduction="none", **kw), varifold_inner(x, y, **kw)

    _assert_cuda_agrees(fn, inputs, ("x", "nx", "wx"), rtol=3e-4, grad_rtol=2e-3)


# -- Chamfer / Hausdorff / kNN ------------------------------------------------------------------------------
def _chamfer_inputs(dtype):
    g = _gen(31)
    x, y = torch.randn(2, 1500, 3, generator=g, dtype=dtype), torch.randn(2, 1200, 3, generator=g, dtype=dtype)
    return {"x": x, "y": y * 0.9 + 0.1,
            "nx": torch.nn.functional.normalize(torch.randn(2, 1500, 3, generator=g, dtype=dtype), dim=-1),
            "ny": torch.nn.functional.normalize(torch.randn(2, 1200, 3, generator=g, dtype=dtype), dim=-1),
            "lx": torch.tensor([1500, 1111]), "ly": torch.tensor([1200, 900])}


def _chamfer_fn(x, y, nx, ny, lx, ly):
    kw = dict(x_lengths=lx, y_lengths=ly)
    return (
        geomot.chamfer_distance(x, y, reduction="none", **kw),
        geomot.chamfer_distance(x, y, x_normals=nx, y_normals=ny, normal_weight=0.5, squared=False,
                                point_reduction="sum", reduction="none", **kw),
        geomot.hausdorff_distance(x, y, reduction="none", **kw),
    )


def test_chamfer_hausdorff_cuda_match_cpu_f64():
    """Padded batches (the CPU takes the k-d tree, CUDA the blocked torch search), with normals, plain and
    squared distances, sum and mean; gradients to points and normals."""
    _assert_cuda_agrees(_chamfer_fn, _chamfer_inputs(F64), ("x", "y", "nx"), dtype=F64)


def test_chamfer_hausdorff_cuda_match_cpu_f32():
    """float32 values (gradients are compared in float64: a near-tie may pick another neighbour in float32)."""
    _assert_cuda_agrees(_chamfer_fn, _chamfer_inputs(F32), (), dtype=F32)


@pytest.mark.parametrize("k", [1, 4])
def test_knn_indices_cuda_match_cpu(k):
    inp = _chamfer_inputs(F64)

    def fn(x, y, lx, ly):
        r = knn_points(x, y, k=k, x_lengths=lx, y_lengths=ly, return_nn=True)
        return r.dists, r.idx, r.knn

    (d_c, i_c, n_c), _ = _run(fn, "cpu", {k: inp[k] for k in ("x", "y", "lx", "ly")}, ())
    (d_g, i_g, n_g), _ = _run(fn, CUDA, {k: inp[k] for k in ("x", "y", "lx", "ly")}, ())
    assert i_g.dtype == torch.int64 and torch.equal(i_g, i_c)
    _assert_close(d_g, d_c, 1e-12, "dists")
    _assert_close(n_g, n_c, 1e-12, "neighbours")


# -- mesh regularisers --------------------------------------------------------------------------------------
@DTYPES
def test_mesh_regularizers_cuda_match_cpu(dtype):
    """A batch of two perturbed spheres sharing their faces, and an open half sphere: every regulariser, with
    ``reduction="none"``, gradient to the vertices."""
    v, f = _sphere(2, dtype)
    g = _gen(41)
    verts = torch.stack([_bumpy(v, seed=1), _bumpy(v, seed=2)]) + 0.02 * torch.randn(2, *v.shape, generator=g,
                                                                                     dtype=dtype)
    inputs = {"verts": verts, "faces": f, "open_faces": _open_mesh(v, f)}

    def fn(verts, faces, open_faces):
        return (
            geomot.edge_length_loss(verts, faces=faces, reduction="none"),
            geomot.edge_length_loss(verts, faces=faces, target_length=0.2, reduction="none"),
            geomot.laplacian_smoothing_loss(verts, faces=faces, method="uniform", reduction="none"),
            geomot.laplacian_smoothing_loss(verts, faces=faces, method="cotangent", reduction="none"),
            geomot.laplacian_smoothing_loss(verts[0], faces=open_faces, method="cotangent", exclude_boundary=True),
            geomot.normal_consistency_loss(verts, faces=faces, reduction="none"),
            geomot.MeshRegularizer(edge=1.0, laplacian=0.5, normal=0.1, method="cotangent",
                                   reduction="none")(Mesh(verts[1], faces)),
        )

    _assert_cuda_agrees(fn, inputs, ("verts",), dtype=dtype,
           names=("edge", "edge L", "laplacian", "cotangent", "cotangent open", "normal", "MeshRegularizer"))


# -- models and neural-ODE deformation ----------------------------------------------------------------------
@DTYPES
def test_conditioned_deformer_cuda_matches_cpu(dtype):
    """The amortised deformation model (PointNet encoder -> code -> conditioned velocity -> Euler flow of a
    template): same weights on both devices give the same deformed template and the same parameter gradients."""
    model = _randomize(ConditionedDeformer(code_dim=16, n_points=256, n_time_steps=4,
                                           field_options={"hidden": 32, "fourier_features": 8,
                                                          "generator": _gen(3)}), seed=5, scale=0.2).to(dtype)
    names = [n for n, _ in model.named_parameters()]
    v, _ = _sphere(2, dtype)
    g = _gen(6)
    targets = torch.randn(3, 256, 3, generator=g, dtype=dtype) * v.new_tensor([1.2, 0.9, 0.7])
    weights = torch.randn(3, v.shape[0], 3, generator=g, dtype=dtype)
    results = []  # CPU, then CUDA
    for device in ("cpu", CUDA):
        m = copy.deepcopy(model).to(device)
        out = m(v.to(device), targets.to(device))
        assert out.shape == (3, v.shape[0], 3) and out.device.type == torch.device(device).type
        assert out.dtype == dtype
        loss = (out * weights.to(device)).sum() + out.square().mean()
        grads = torch.autograd.grad(loss, list(m.parameters()))
        for n, gr in zip(names, grads):
            assert gr.device.type == torch.device(device).type and bool(torch.isfinite(gr).all()), n
        results.append((out.detach().cpu(), [gr.cpu() for gr in grads]))
    rtol, grad_rtol = TOL[dtype]
    (o_c, g_c), (o_g, g_g) = results
    _assert_close(o_g, o_c, rtol, "deformed template")
    assert float((o_c - v).abs().max()) > 1e-3, "the model did not move the template"
    for n, a, b in zip(names, g_g, g_c):
        _assert_close(a, b, grad_rtol * 2, f"grad {n}")
    assert sum(float(b.abs().max()) > 0 for b in g_c) >= len(names) - 1


def test_pointnet_encoder_padded_cuda_matches_cpu():
    enc = _randomize(PointNetEncoder(code_dim=24, hidden=(32, 64)), seed=8)
    pts = torch.randn(3, 300, 3, generator=_gen(9))
    lengths = torch.tensor([300, 200, 57])

    def fn(pts, lengths):
        return copy.deepcopy(enc).to(pts.device)(pts, lengths)

    _assert_cuda_agrees(fn, {"pts": pts, "lengths": lengths}, ("pts",))


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_kernel_velocity_cuda_matches_cpu(sparse):
    """The control-point RKHS field, dense and sparse (neighbour pairs from k-d trees on the host, CSR products
    and a hand-written backward on the device): velocity, gradients to state and momenta, kinetic energy."""
    v, _ = _sphere(3, F64)
    field = KernelVelocity(v[::4].clone(), sigma=0.3, n_time_bins=2, dense_limit=0 if sparse else 10**9)
    with torch.no_grad():
        field.momenta.copy_(torch.randn(field.momenta.shape, generator=_gen(2), dtype=F64))
    state = field.initial_state(v)

    def fn(state):
        f = copy.deepcopy(field).to(state.device)
        vel = f(torch.tensor(0.7), state)
        (gm,) = torch.autograd.grad(vel.square().sum() + f.kinetic_energy(), f.momenta, retain_graph=True)
        return vel, gm

    _assert_cuda_agrees(fn, {"state": state}, ("state",), dtype=F64)


@pytest.mark.parametrize(("method", "adjoint", "dtype"), [("euler", False, F32), ("rk4", False, F32),
                                                           ("rk4", True, F64), ("dopri5", False, F64)])
def test_integrate_mlp_flow_cuda_matches_cpu(method, adjoint, dtype):
    """Neural-ODE flow of a small template by torchdiffeq (fixed-step, adaptive, adjoint): trajectory and
    gradients to the field's parameters."""
    field = _randomize(MLPVelocity(hidden=16, layers=2, fourier_features=4, generator=_gen(1)), seed=4).to(dtype)
    v, _ = _sphere(1, dtype)
    w = torch.randn(v.shape, generator=_gen(5), dtype=dtype)
    results = []  # CPU, then CUDA
    for device in ("cpu", CUDA):
        f = copy.deepcopy(field).to(device)
        traj = integrate(f, v.to(device), times=3, method=method, n_steps=8, adjoint=adjoint, rtol=1e-6,
                         atol=1e-7)
        assert traj.points.shape == (3, *v.shape) and traj.points.device.type == torch.device(device).type
        assert traj.points.dtype == dtype and traj.times.device.type == torch.device(device).type
        loss = (traj.points[-1] * w.to(device)).sum()
        grads = torch.autograd.grad(loss, list(f.parameters()))
        results.append((traj.points.detach().cpu(), [gr.cpu() for gr in grads]))
    rtol, grad_rtol = (1e-4, 1e-3) if dtype == F32 else (1e-8, 1e-6)
    (p_c, g_c), (p_g, g_g) = results
    assert float((p_c[-1] - v).abs().max()) > 1e-2, "the flow did not move the template"
    _assert_close(p_g, p_c, rtol, "trajectory")
    for i, (a, b) in enumerate(zip(g_g, g_c)):
        assert float(b.abs().max()) > 0
        _assert_close(a, b, grad_rtol, f"grad of parameter {i}")


# -- functional maps ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask", ["resolvent", "laplacian"])
@DTYPES
def test_regularized_fmap_batched_cuda_matches_cpu(mask, dtype):
    """The closed-form regularised functional map on a batch (one linear solve per row), gradients to the
    features of both shapes and to the eigenvalues."""
    g = _gen(51)
    bsz, k1, k2, d = 3, 24, 20, 60
    evals1 = torch.sort(torch.rand(bsz, k1, generator=g, dtype=dtype) * 50, dim=-1).values
    evals2 = torch.sort(torch.rand(bsz, k2, generator=g, dtype=dtype) * 50, dim=-1).values
    inputs = {"a": torch.randn(bsz, k1, d, generator=g, dtype=dtype),
              "b": torch.randn(bsz, k2, d, generator=g, dtype=dtype), "e1": evals1, "e2": evals2}

    def fn(a, b, e1, e2):
        return regularized_fmap(a, b, e1, e2, lambda_=1.0, mask=mask)

    rtol, grad_rtol = (3e-4, 3e-3) if dtype == F32 else TOL[F64]
    _assert_cuda_agrees(fn, inputs, ("a", "b", "e2"), dtype=dtype, rtol=rtol, grad_rtol=grad_rtol)


def _basis(n: int, k: int, seed: int) -> torch.Tensor:
    """``(n, k)`` orthonormal columns (a stand-in for a Laplacian eigenbasis, float64)."""
    return torch.linalg.qr(torch.randn(n, k, generator=_gen(seed), dtype=F64)).Q


@pytest.mark.parametrize(("w_orient", "w_bij"), [(0.0, 0.0), (0.1, 0.0), (0.0, 0.5)], ids=["plain", "orient", "bij"])
def test_fmap_from_descriptors_cuda_matches_cpu(w_orient, w_bij):
    """The axiomatic functional-map solver (descriptor, Laplacian, descriptor-commutativity, orientation and
    bijectivity terms) solved on the device of the bases."""
    v1, faces = _sphere(2, F64)
    v2 = _bumpy(v1, seed=3, amount=0.05)
    n, k = v1.shape[0], 10
    g = _gen(61)
    inputs = {"d1": torch.randn(n, 6, generator=g, dtype=F64), "P1": _basis(n, k, 1), "P2": _basis(n, k, 2),
              "e1": torch.linspace(0, 20, k, dtype=F64), "e2": torch.linspace(0, 22, k, dtype=F64),
              "m1": torch.full((n,), 4 * math.pi / n, dtype=F64), "v1": v1, "v2": v2, "faces": faces}
    inputs["d2"] = inputs["d1"] + 0.05 * torch.randn(n, 6, generator=g, dtype=F64)

    def fn(d1, d2, P1, P2, e1, e2, m1, v1, v2, faces):
        res = fmap_from_descriptors(d1, d2, e1, P1, m1, e2, P2, m1, verts1=v1, faces1=faces, verts2=v2,
                                    faces2=faces, w_orient=w_orient, w_bij=w_bij)
        return res.fmap_12, res.fmap_21, torch.tensor(res.energy, dtype=F64, device=P1.device)

    _assert_cuda_agrees(fn, inputs, dtype=F64, rtol=1e-8, names=("fmap_12", "fmap_21", "energy"))


def test_p2p_fmap_conversions_and_zoomout_cuda_match_cpu():
    """Nearest neighbours in the spectral embedding, the map's functional map (least squares and with a mass),
    a soft map's functional map and ZoomOut from a noisy 8 x 8 map to 24 x 24, on a shuffled copy of a basis
    (so the exact answer is known)."""
    n, k = 600, 24
    phi1 = _basis(n, k, 5)
    perm = torch.randperm(n, generator=_gen(6))
    signs = torch.where(torch.rand(k, generator=_gen(7)) < 0.5, -1.0, 1.0).to(F64)
    c0 = torch.diag(signs[:8]) + 0.05 * torch.randn(8, 8, generator=_gen(8), dtype=F64)
    plan = torch.rand(n, n, generator=_gen(9), dtype=F64) ** 8
    inputs = {"phi1": phi1, "phi2": phi1[perm] * signs, "c0": c0, "plan": plan,
              "mass": torch.full((n,), 1.0, dtype=F64)}

    def fn(phi1, phi2, c0, plan, mass):
        p2p = p2p_from_fmap(torch.diag(signs.to(phi1.device)), phi1, phi2)
        zo = zoomout(c0, phi1, phi2, k_final=k, step=4)
        return (p2p, fmap_from_p2p(p2p, phi1, phi2), fmap_from_p2p(p2p, phi1, phi2, mass2=mass),
                soft_fmap(plan, phi1, phi2), zo.fmap_12, zo.p2p_21)

    (p2p, c_ls, c_mass, _, c_zo, p2p_zo), _ = _assert_cuda_agrees(
        fn, inputs, dtype=F64, rtol=1e-8, names=("p2p", "fmap (lstsq)", "fmap (mass)", "soft fmap", "zoomout fmap",
                                                 "zoomout p2p"))
    assert torch.equal(p2p, perm) and torch.equal(p2p_zo, perm)  # the answers are the known ones, not just equal
    torch.testing.assert_close(c_zo, torch.diag(signs), atol=1e-8, rtol=0)
    torch.testing.assert_close(c_ls, torch.diag(signs), atol=1e-8, rtol=0)
    torch.testing.assert_close(c_mass, torch.diag(signs), atol=1e-8, rtol=0)


def test_principal_frame_and_nonrigid_icp_cuda_match_cpu():
    """The extrinsic alignment of ``match``: principal coordinates (up to the sign of each axis, which eigensolvers
    may choose differently) and a batch of smooth non-rigid ICP fits from the 8 hypotheses, float64."""
    from geomot.correspondence import frame_hypotheses, nonrigid_icp, principal_frame
    from geomot.ops.spectral import spectral_basis

    m = icosphere(2, dtype=F64)
    v = m.verts * torch.tensor([2.0, 1.3, 1.0], dtype=F64)
    basis = spectral_basis(v, m.faces, k=12)
    target = v @ torch.linalg.qr(torch.randn(3, 3, generator=_gen(10), dtype=F64))[0] + 0.1 * basis.evecs[:, 1:4]
    x, _ = principal_frame(v, basis.mass)
    xg, _ = principal_frame(v.to(CUDA), basis.mass.to(CUDA))
    torch.testing.assert_close(xg.abs().cpu(), x.abs(), atol=1e-9, rtol=0)
    y, _ = principal_frame(target)
    inputs = {"x": x[None] @ frame_hypotheses(1.0), "y": y, "phi": basis.evecs, "evals": basis.evals}

    def fn(x, y, phi, evals):
        fit = nonrigid_icp(x, y, phi, evals, levels=(0, 4, 8), n_iter=3)
        return fit.points, fit.cost

    _assert_cuda_agrees(fn, inputs, dtype=F64, rtol=1e-8, names=("points", "cost"))


@pytest.mark.parametrize(("normal_weight", "symmetric"), [(0.0, False), (0.05, True)])
def test_extrinsic_refine_cuda_matches_cpu(normal_weight, symmetric):
    """The extrinsic polish of ``match``'s final map: the same map and deformed source on CUDA, float64 (positions
    only; and as ``match`` runs it, with normals in the snap and the symmetric fit)."""
    from geomot.correspondence import extrinsic_refine
    from geomot.ops.spectral import spectral_basis

    m = icosphere(2, dtype=F64)
    v = m.verts * torch.tensor([2.0, 1.3, 1.0], dtype=F64)
    basis = spectral_basis(v, m.faces, k=12)
    target = v + 0.1 * basis.evecs[:, 1:4]
    p2p = torch.roll(torch.arange(v.shape[0]), 3)
    inputs = {"x": v, "y": target, "p2p": p2p, "phi": basis.evecs, "evals": basis.evals, "f": m.faces}

    def fn(x, y, p2p, phi, evals, f):
        res = extrinsic_refine(x, y, p2p, phi, evals, levels=(4, 8), n_iter=3, source_faces=f, target_faces=f,
                               normal_weight=normal_weight, symmetric=symmetric)
        return res.points, res.p2p_21.double()

    _assert_cuda_agrees(fn, inputs, dtype=F64, rtol=1e-8, names=("points", "p2p_21"))


def test_match_accepts_cuda_inputs_and_returns_on_their_device():
    """``match`` runs on the CPU (scipy eigensolver); CUDA meshes give the CPU result, on the CUDA device."""
    from geomot.correspondence import match
    from geomot.io.synthetic import bumpy_pair

    pair = bumpy_pair(150, seed=2)
    opts = dict(k=12, k_init=4, k_select=8, n_candidates=2, n_samples=60)
    cpu = match(pair.source, pair.target, **opts)
    src = Mesh(pair.source.verts.to(CUDA), pair.source.faces.to(CUDA))
    gpu = match(src, (pair.target.verts.to(CUDA), pair.target.faces.to(CUDA)), **opts)
    assert gpu.p2p_21.device.type == "cuda" and gpu.fmap_12.device.type == "cuda"
    assert torch.equal(gpu.p2p_21.cpu(), cpu.p2p_21)
    torch.testing.assert_close(gpu.fmap_12.cpu(), cpu.fmap_12)
