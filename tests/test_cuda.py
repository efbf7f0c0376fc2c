"""CUDA: the losses give the CPU results, and the sliced hot path never synchronises with the host.

Skipped without a CUDA device (CI has none); run on a GPU machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import pytest
import torch

import geomot
from geomot.ops.directions import random_directions

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _clouds(bsz=None, n=3000, m=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = () if bsz is None else (bsz,)
    x = torch.randn(*lead, n, 3, generator=g)
    y = torch.randn(*lead, m, 3, generator=g) * 0.7 + 0.5
    proj = random_directions(64, 3, generator=g).T.contiguous()  # (D, L)
    return x, y, proj


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


def test_sinkhorn_cuda_matches_cpu():
    x, y, _ = _clouds(n=500, m=400)
    cpu = geomot.sinkhorn(x.double(), y.double(), eps=0.05)
    gpu = geomot.sinkhorn(x.double().cuda(), y.double().cuda(), eps=0.05)
    torch.testing.assert_close(gpu.transport_cost.cpu(), cpu.transport_cost, rtol=1e-6, atol=1e-9)
