"""The Triton kernels (varifold kernel sum, k-NN) against dense torch references, run on CPU through Triton's
interpreter.

Triton chooses between compiling and interpreting its kernels (its own library functions included) when ``triton``
is first imported, from ``TRITON_INTERPRET``. The ``check_*`` functions below therefore run in one subprocess started
with ``TRITON_INTERPRET=1`` (this file run as a script prints their outcomes as JSON), and each ``test_*`` asserts
the outcome of its check; started with ``TRITON_INTERPRET=1`` already set (``TRITON_INTERPRET=1 pytest
tests/test_triton_kernels.py``) they run in-process instead. The test process itself is left as it was, so a CUDA
run of the suite still compiles the kernels.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import traceback

import pytest
import torch

import geomot
import geomot.ops._triton_kernels as tk
from geomot._core.errors import ValidationError
from geomot.losses.chamfer import chamfer_distance
from geomot.losses.varifold import VARIFOLD_KERNELS, NormalKernel, varifold_distance
from geomot.ops.knn import knn_points

_IN_PROCESS = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _ragged(gen, B, N, D, lengths, dtype=torch.float32):
    x = torch.randn(B, N, D, generator=gen, dtype=dtype)
    mask = torch.arange(N)[None, :] < torch.as_tensor(lengths)[:, None]
    return x.masked_fill(~mask[..., None], 0.0), torch.as_tensor(lengths), mask


def _dense_varifold_sum(x, n, a, y, m, b, xl, yl, inv_s2, kind, alpha, beta):
    out = []
    for i in range(x.shape[0]):
        xx, nn, aa = x[i, : xl[i]], n[i, : xl[i]], a[i, : xl[i]]
        yy, mm, bb = y[i, : yl[i]], m[i, : yl[i]], b[i, : yl[i]]
        g = torch.exp(-((xx[:, None] - yy[None]) ** 2).sum(-1) * inv_s2)
        t = nn @ mm.T
        k = {"linear": t, "binet": t * t, "exp_linear": torch.exp(alpha * t + beta)}[kind]
        out.append((aa[:, None] * bb[None] * g * k).sum())
    return torch.stack(out)


def check_varifold_sum_value_and_gradients_match_dense(kind: str) -> None:
    gen = torch.Generator().manual_seed(1)
    x, xl, _ = _ragged(gen, 2, 37, 3, [37, 21])
    y, yl, _ = _ragged(gen, 2, 45, 3, [30, 45])
    n, m = torch.randn(2, 37, 3, generator=gen), torch.randn(2, 45, 3, generator=gen)
    a, b = torch.rand(2, 37, generator=gen), torch.rand(2, 45, generator=gen)
    ins = [t.clone().requires_grad_(True) for t in (x, n, a, y, m, b)]
    refs = [t.double().requires_grad_(True) for t in (x, n, a, y, m, b)]
    w = torch.tensor([0.7, -1.3])
    val = tk.varifold_sum_triton(*ins, xl, yl, inv_s2=1.5, kind=kind, alpha=1.2, beta=-0.4)
    ref = _dense_varifold_sum(*refs, xl, yl, 1.5, kind, 1.2, -0.4)
    assert val.dtype == torch.float32 and val.shape == (2,)
    torch.testing.assert_close(val.double(), ref, rtol=1e-5, atol=1e-6)
    grads = torch.autograd.grad((val * w).sum(), ins)
    grads_ref = torch.autograd.grad((ref * w.double()).sum(), refs)
    for g, gr in zip(grads, grads_ref):
        torch.testing.assert_close(g.double(), gr, rtol=1e-4, atol=1e-5)


def check_varifold_sum_symmetric_self_term() -> None:
    gen = torch.Generator().manual_seed(2)
    x, xl, _ = _ragged(gen, 2, 19, 3, [19, 11], dtype=torch.float64)
    n, a = torch.randn(2, 19, 3, generator=gen, dtype=torch.float64), torch.rand(2, 19, generator=gen,
                                                                                 dtype=torch.float64)
    xs, ns, as_ = (t.clone().requires_grad_(True) for t in (x, n, a))
    val = tk.varifold_sum_triton(xs, ns, as_, xs, ns, as_, xl, xl, inv_s2=2.0, kind="binet", symmetric=True)
    g = torch.autograd.grad(val.sum(), (xs, ns, as_))
    xr, nr, ar = (t.clone().requires_grad_(True) for t in (x, n, a))
    ref = _dense_varifold_sum(xr, nr, ar, xr, nr, ar, xl, xl, 2.0, "binet", 0.0, 0.0)
    gr = torch.autograd.grad(ref.sum(), (xr, nr, ar))
    torch.testing.assert_close(val, ref)
    for u, v in zip(g, gr):
        torch.testing.assert_close(u, v)


def check_varifold_distance_triton_backend_matches_torch(kernel: str) -> None:
    gen = torch.Generator().manual_seed(3)
    x, xl, xmask = _ragged(gen, 2, 24, 3, [24, 15])
    y, yl, _ = _ragged(gen, 2, 20, 3, [17, 20])
    nx = torch.nn.functional.normalize(torch.randn(2, 24, 3, generator=gen), dim=-1)
    ny = torch.nn.functional.normalize(torch.randn(2, 20, 3, generator=gen), dim=-1)
    out, grads = {}, {}
    for backend in ("torch", "triton"):
        xx = x.clone().requires_grad_(True)
        nn = nx.clone().requires_grad_(True)
        d = varifold_distance(xx, y, x_normals=nn, y_normals=ny, x_lengths=xl, y_lengths=yl, sigma=0.7,
                              kernel=kernel, reduction="none", backend=backend)
        out[backend] = d
        grads[backend] = torch.autograd.grad(d.sum(), (xx, nn))
    torch.testing.assert_close(out["triton"], out["torch"], rtol=1e-4, atol=1e-6)
    for g, gr in zip(grads["triton"], grads["torch"]):
        torch.testing.assert_close(g, gr, rtol=1e-4, atol=1e-6)
    assert (grads["triton"][0][~xmask] == 0).all()  # padding gets no gradient


def _dense_knn(x, y, xl, yl, k):
    d_all, i_all = torch.zeros(x.shape[0], x.shape[1], k), torch.zeros(x.shape[0], x.shape[1], k, dtype=torch.long)
    for b in range(x.shape[0]):
        d = ((x[b, : xl[b], None].double() - y[b, None, : yl[b]].double()) ** 2).sum(-1)
        v, i = d.topk(k, largest=False, sorted=True)
        d_all[b, : xl[b]], i_all[b, : xl[b]] = v.float(), i
    return d_all, i_all


def check_knn_kernel_matches_dense(k: int, dim: int) -> None:
    gen = torch.Generator().manual_seed(4 + k)
    x, xl, _ = _ragged(gen, 2, 70, dim, [70, 33])
    y, yl, _ = _ragged(gen, 2, 50, dim, [41, 50])
    d, i = tk.knn_triton(x, y, xl, yl, k)
    dr, ir = _dense_knn(x, y, xl, yl, k)
    torch.testing.assert_close(d, dr, rtol=1e-5, atol=1e-6)
    assert torch.equal(i, ir)  # random data: no ties
    assert (i[1, 33:] == 0).all() and (d[1, 33:] == 0).all()
    assert int(i[0].max()) < 41


def check_knn_points_triton_backend_matches_torch_with_gradients(k: int) -> None:
    gen = torch.Generator().manual_seed(5)
    x, xl, _ = _ragged(gen, 2, 40, 3, [40, 26])
    y, yl, _ = _ragged(gen, 2, 35, 3, [35, 12])
    res, grads = {}, {}
    for backend in ("torch", "triton"):
        xx, yy = x.clone().requires_grad_(True), y.clone().requires_grad_(True)
        r = knn_points(xx, yy, k=k, x_lengths=xl, y_lengths=yl, backend=backend)
        res[backend] = r
        grads[backend] = torch.autograd.grad((r.dists * torch.arange(1.0, k + 1)).sum(), (xx, yy))
    assert torch.equal(res["triton"].idx, res["torch"].idx)
    torch.testing.assert_close(res["triton"].dists, res["torch"].dists)
    for g, gr in zip(grads["triton"], grads["torch"]):
        torch.testing.assert_close(g, gr)


def check_chamfer_triton_matches_torch() -> None:
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(90, 3, generator=gen, requires_grad=True)
    y = torch.randn(64, 3, generator=gen)
    vt = chamfer_distance(x, y, backend="torch")
    vr = chamfer_distance(x, y, backend="triton")
    torch.testing.assert_close(vr, vt)
    torch.testing.assert_close(torch.autograd.grad(vr, x)[0], torch.autograd.grad(vt, x)[0])


def check_knn_ties_prefer_lower_index_and_nan_query() -> None:
    y = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, 3.0]]])
    x = torch.tensor([[[0.0, 0.0], [math.nan, 0.0]]])
    d, i = tk.knn_triton(x, y, torch.tensor([2]), torch.tensor([4]), 3)
    assert i[0, 0].tolist() == [0, 1, 2]
    assert d[0, 0].tolist() == [1.0, 1.0, 1.0]
    assert int(i[0, 1].min()) >= 0 and int(i[0, 1].max()) < 4  # NaN distances rank last, indices stay valid
    with geomot.data_checks(False):
        r = knn_points(x[0], y[0], backend="triton")
    assert torch.isnan(r.dists[1]).all() and r.dists[0, 0] == 1.0


def check_varifold_nan_position_gives_nan() -> None:
    x = torch.randn(6, 3)
    x[2, 0] = math.nan
    nx = torch.randn(6, 3)
    with geomot.data_checks(False):
        d = varifold_distance(x, torch.randn(5, 3), x_normals=nx, y_normals=torch.randn(5, 3), backend="triton")
    assert torch.isnan(d)


def test_auto_never_picks_triton_on_cpu(monkeypatch) -> None:
    calls = []
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # CPU tensors are usable by Triton, yet auto keeps torch/kd-tree
    monkeypatch.setattr(tk, "_jit", lambda: calls.append(1))
    x = torch.randn(30, 3)
    knn_points(x, x + 0.1)
    varifold_distance(x, x + 0.1, x_normals=x, y_normals=x)
    assert not calls


def test_errors(monkeypatch) -> None:
    pytest.importorskip("triton")
    x = torch.randn(10, 3)
    with pytest.raises(ValidationError, match="k: the triton k-NN kernel takes 1 <= k <= 16"):
        tk.knn_triton(x[None], x[None], torch.tensor([10]), torch.tensor([10]), 17)
    with pytest.raises(ValidationError, match="x: the triton k-NN kernel takes dimension <= 8"):
        tk.knn_triton(torch.randn(1, 4, 9), torch.randn(1, 4, 9), torch.tensor([4]), torch.tensor([4]), 1)
    with pytest.raises(ValidationError, match="kind: unknown fused normal kernel"):
        tk.varifold_sum_triton(x[None], x[None], x[None, :, 0], x[None], x[None], x[None, :, 0], torch.tensor([10]),
                               torch.tensor([10]), inv_s2=1.0, kind="cubic")
    custom = NormalKernel(lambda t, s: t * t * t)
    monkeypatch.setitem(VARIFOLD_KERNELS._items, "cubic_test", custom)
    with pytest.raises(ValidationError, match="backend: 'triton' evaluates the built-in normal kernels only"):
        varifold_distance(x, x, x_normals=x, y_normals=x, kernel="cubic_test", backend="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValidationError, match="backend: 'triton' needs CUDA tensors"):
        knn_points(x, x, backend="triton")
    with pytest.raises(ValidationError, match="backend: 'triton' needs CUDA tensors"):
        varifold_distance(x, x, x_normals=x, y_normals=x, backend="triton")
    with pytest.raises(ValidationError, match="backend='triton': needs CUDA tensors"):
        tk.knn_triton(x[None], x[None], torch.tensor([10]), torch.tensor([10]), 1)


CHECKS = {
    **{f"varifold_sum[{k}]": (check_varifold_sum_value_and_gradients_match_dense, (k,))
       for k in ("linear", "binet", "exp_linear")},
    "varifold_sum_symmetric": (check_varifold_sum_symmetric_self_term, ()),
    **{f"varifold_distance[{k}]": (check_varifold_distance_triton_backend_matches_torch, (k,))
       for k in sorted(VARIFOLD_KERNELS)},
    **{f"knn_kernel[k={k},d={d}]": (check_knn_kernel_matches_dense, (k, d)) for k, d in ((1, 3), (4, 3), (3, 6), (2, 8))},
    **{f"knn_points[k={k}]": (check_knn_points_triton_backend_matches_torch_with_gradients, (k,)) for k in (1, 3)},
    "chamfer": (check_chamfer_triton_matches_torch, ()),
    "knn_ties_nan": (check_knn_ties_prefer_lower_index_and_nan_query, ()),
    "varifold_nan": (check_varifold_nan_position_gives_nan, ()),
}


def _run_checks(names) -> dict[str, str]:
    out = {}
    for name in names:
        fn, args = CHECKS[name]
        try:
            fn(*args)
            out[name] = "ok"
        except Exception:  # reported to the test of this check
            out[name] = traceback.format_exc()
    return out


@pytest.fixture(scope="module")
def outcomes() -> dict[str, str]:
    pytest.importorskip("triton")
    if _IN_PROCESS:
        return _run_checks(CHECKS)
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        pytest.fail(f"the interpreter subprocess failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(CHECKS))
def test_triton_kernel_under_interpreter(outcomes: dict[str, str], name: str) -> None:
    assert outcomes[name] == "ok", outcomes[name]


if __name__ == "__main__":
    print(json.dumps(_run_checks(CHECKS)))
