"""Neural-ODE integration (closed forms, adjoint), fitting (decrease, determinism, every loss, normalisation,
blow-up), dataset learning (unseen targets, checkpoint / resume), trajectories and the ``geomot deform`` CLI."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pytest
import torch
from torch import nn

import geomot
from geomot._core.errors import FileFormatError, NumericalError, ShapeError, ValidationError
from geomot.cli import main
from geomot.deformation import DeformResult, integrate
from geomot.deformation.dataset import deform_conditioned, evaluate_conditioned, train_conditioned
from geomot.deformation.trajectory import load_trajectory, save_trajectory
from geomot.metrics import assd
from geomot.structures import Mesh
from tests.conftest import icosphere


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny meshes: one intra-op thread is faster than two (and far faster on a shared, loaded machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class _Linear(nn.Module):
    """``v(x, t) = x A^T``: the flow is ``x(t) = x0 expm(t A)^T``."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a)

    def forward(self, t, x):
        return x @ self.a.T


class _BlowUp(nn.Module):
    """``v = w`` (a translation) that turns NaN once ``max |w_i|`` exceeds ``limit`` (after a few Adam steps), or
    once it has been called more than ``after`` times."""

    def __init__(self, limit: float = float("inf"), after: int = 10**9) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
        self.limit, self.after, self.calls = limit, after, 0

    def forward(self, t, x):
        self.calls += 1
        v = x * 0 + self.w
        if self.calls > self.after or float(self.w.detach().abs().max()) > self.limit:
            return v * float("nan")
        return v


def _ellipsoid(v: torch.Tensor) -> torch.Tensor:
    return v * torch.tensor([1.3, 0.8, 1.0], dtype=v.dtype) + torch.tensor([0.1, 0.0, -0.05], dtype=v.dtype)


# -- integration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method,tol", [("euler", 1e-12), ("rk4", 1e-12), ("dopri5", 1e-12)])
def test_constant_field_is_a_translation(method, tol):
    c = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)

    class Const(nn.Module):
        def forward(self, t, x):
            return x * 0 + c

    x0 = torch.randn(8, 3, dtype=torch.float64)
    tr = integrate(Const(), x0, times=5, method=method, n_steps=4)
    assert tr.points.shape == (5, 8, 3)
    torch.testing.assert_close(tr.points[-1], x0 + c, atol=tol, rtol=0)
    torch.testing.assert_close(tr.points[2], x0 + 0.5 * c, atol=tol, rtol=0)


def test_linear_field_matches_matrix_exponential_and_adjoint_gradients():
    a = torch.tensor([[0.1, -0.4, 0.0], [0.4, 0.1, 0.2], [0.0, -0.2, -0.3]], dtype=torch.float64)
    x0 = torch.randn(6, 3, dtype=torch.float64)
    exact = x0 @ torch.linalg.matrix_exp(a).T
    assert (integrate(_Linear(a), x0, method="rk4", n_steps=20).points[-1] - exact).abs().max() < 1e-7
    assert (integrate(_Linear(a), x0, method="dopri5", rtol=1e-10, atol=1e-12).points[-1] - exact).abs().max() < 1e-8
    euler = integrate(_Linear(a), x0, method="euler", n_steps=10).points[-1]
    assert 1e-4 < (euler - exact).abs().max() < 0.1  # first order
    grads = []
    for adjoint in (False, True):
        f = _Linear(a.clone())
        loss = integrate(f, x0, method="rk4", n_steps=10, adjoint=adjoint).points[-1].pow(2).sum()
        loss.backward()
        grads.append(f.a.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-6)


def test_integrate_blow_up_names_the_time_and_keeps_the_last_good_state():
    x0 = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(NumericalError, match=r"velocity became NaN/Inf at t=0\.5 \(field evaluation 6\)") as e:
        integrate(_BlowUp(after=5), x0, method="euler", n_steps=10)
    t, state = e.value.last_good
    assert t == pytest.approx(0.4) and torch.isfinite(state).all()


def test_integrate_bad_inputs():
    f = _Linear(torch.eye(3, dtype=torch.float64))
    with pytest.raises(ValidationError, match="method: unknown ODE solver 'rk5'"):
        integrate(f, torch.zeros(3, 3, dtype=torch.float64), method="rk5")
    with pytest.raises(ValidationError, match="times: expected strictly increasing"):
        integrate(f, torch.zeros(3, 3, dtype=torch.float64), times=[0.0, 0.5, 0.2])
    with pytest.raises(ValidationError, match="x0: contains 1 NaN/Inf"):
        integrate(f, torch.tensor([[0.0, float("nan"), 0.0]], dtype=torch.float64))
    with pytest.raises(ShapeError, match="x0: expected last dimension 3"):
        integrate(f, torch.zeros(4, 2, dtype=torch.float64))


# -- fitting -------------------------------------------------------------------------------------------
def test_fit_decreases_the_loss_and_the_surface_distance():
    v, f = icosphere(2)
    tgt = (_ellipsoid(v), f)
    res = geomot.deform.fit((v, f), tgt, max_iter=40, n_frames=5, progress=False)
    assert isinstance(res, DeformResult)
    assert res.trajectory.shape == (5, v.shape[0], 3) and res.times.shape == (5,)
    torch.testing.assert_close(res.trajectory[0], v)  # frame 0 is the source (joint frame)
    assert res.loss_history.shape == (40,) and res.n_steps == 40
    assert res.loss_history[-5:].mean() < 0.2 * res.loss_history[0]
    before = assd((v, f), tgt)
    assert res.metrics.assd < 0.35 * before
    assert res.frame_self_intersections == (0,) * 5 and res.metrics.flipped_faces == 0
    assert not res.normalization.aligned


def test_fit_is_deterministic_for_a_seed():
    v, f = icosphere(1)
    tgt = (_ellipsoid(v), f)
    kw = {"loss": "sw-varifold+surface", "max_iter": 5, "progress": False, "metrics": False}
    a = geomot.deform.fit((v, f), tgt, seed=3, **kw)
    b = geomot.deform.fit((v, f), tgt, seed=3, **kw)
    c = geomot.deform.fit((v, f), tgt, seed=4, **kw)
    assert torch.equal(a.trajectory, b.trajectory)
    assert not torch.equal(a.trajectory, c.trajectory)  # the sliced term's directions and samples follow the seed
    # the default objective has no random part: the seed does not matter
    d = geomot.deform.fit((v, f), tgt, max_iter=5, progress=False, metrics=False, seed=3)
    e = geomot.deform.fit((v, f), tgt, max_iter=5, progress=False, metrics=False, seed=4)
    assert torch.equal(d.trajectory, e.trajectory)


@pytest.mark.parametrize("loss", ["sw-varifold", "sw", "varifold", "sinkhorn", "chamfer", "surface"])
def test_every_loss_and_field_runs(loss):
    v, f = icosphere(1)
    tgt = (_ellipsoid(v), f)
    opts = {"n_samples": 100 if loss == "sinkhorn" else 300} if loss not in ("varifold", "surface") else {}
    for field in ("kernel", "mlp") if loss == "sw-varifold" else ("kernel",):
        res = geomot.deform.fit((v, f), tgt, loss=loss, field=field, max_iter=3, progress=False, metrics=False,
                                loss_options=opts, regularizers={"edge": 0.1, "laplacian": 0.1, "normal": 0.01})
        assert torch.isfinite(res.loss_history).all() and res.mesh.verts.shape == v.shape


def test_surface_loss_is_the_area_weighted_squared_point_to_surface_distance():
    from geomot.deformation.losses import DEFORM_LOSSES
    from geomot.metrics.surface import point_to_surface
    from geomot.ops.geometry import vertex_areas

    v, f = icosphere(2)
    w, g = icosphere(1)
    tgt = Mesh(_ellipsoid(w), g)
    x = (v * 1.1).requires_grad_()
    loss = DEFORM_LOSSES.get("surface")(x, f, tgt)
    d_st = torch.from_numpy(point_to_surface(x.detach(), tgt).distance) ** 2
    d_ts = torch.from_numpy(point_to_surface(tgt.verts, (x.detach(), f)).distance) ** 2
    a, b = vertex_areas(x.detach(), f), vertex_areas(tgt.verts, g)
    ref = 0.5 * ((a * d_st).sum() / a.sum() + (b * d_ts).sum() / b.sum())
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-6, atol=1e-9)
    (grad,) = torch.autograd.grad(loss, x)
    closest = torch.from_numpy(point_to_surface(x.detach(), tgt).closest)
    # the source-to-target half pulls every vertex straight towards its closest target point
    cos = torch.nn.functional.cosine_similarity(grad, x.detach() - closest, dim=1)
    assert float(cos.median()) > 0.9


def test_loss_combinations_weights_and_annealing():
    from geomot.deformation.losses import COMBINATION_WEIGHTS, make_loss, parse_loss

    assert parse_loss("chamfer") == {"chamfer": 1.0}
    assert parse_loss("sw-varifold+surface") == {"sw-varifold": COMBINATION_WEIGHTS["sw-varifold"], "surface": 1.0}
    assert parse_loss({"sw": 2.0, "surface": 0.5}) == {"sw": 2.0, "surface": 0.5}
    with pytest.raises(ValidationError, match="unknown deformation loss 'nope'"):
        parse_loss("surface+nope")
    with pytest.raises(ValidationError, match="repeated"):
        parse_loss("surface+surface")
    with pytest.raises(ValidationError, match="a combination takes"):
        make_loss("sw+surface", 80, {"n_samples": 10})
    v, f = icosphere(1)
    tgt = Mesh(_ellipsoid(v), f)
    both = make_loss("sw+surface", int(f.shape[0]), {"sw": {"n_samples": 200}})
    local = make_loss("surface", int(f.shape[0]))
    gen = torch.Generator().manual_seed(0)
    # the sliced term's weight decays as 1 - progress: at the end of the run only the local term is left
    torch.testing.assert_close(both(v, f, tgt, generator=gen, progress=1.0), local(v, f, tgt))
    assert float(both(v, f, tgt, generator=gen, progress=0.0)) > float(local(v, f, tgt))
    single = make_loss("sw", int(f.shape[0]), {"n_samples": 200})  # alone, a sliced term is not annealed
    assert float(single(v, f, tgt, generator=gen, progress=1.0)) > 0


def test_lr_schedule_warms_up_then_decays():
    from geomot.deformation.fit import FINAL_LR, lr_factor

    steps = 200
    f = [lr_factor(k, steps) for k in range(steps)]
    assert f[0] == pytest.approx(1 / 10) and f[9] == pytest.approx(1.0, abs=0.01)  # 5 % warm-up = 10 steps
    assert all(a >= b for a, b in itertools.pairwise(f[10:]))
    assert f[-1] == pytest.approx(FINAL_LR, abs=1e-3)
    assert lr_factor(3, 10**6, elapsed=50.0, max_time=100.0) == pytest.approx(
        FINAL_LR + (1 - FINAL_LR) * 0.5, rel=1e-6)  # a run cut by time follows its time


def test_cached_regularizers_match_the_losses_module():
    from geomot.deformation.losses import DEFORM_REGULARIZERS
    from geomot.losses.regularizers import edge_length_loss, laplacian_residual
    from geomot.ops.geometry import edges

    v0, f = icosphere(2)
    v = v0 + 0.05 * torch.randn(v0.shape, generator=torch.Generator().manual_seed(0), dtype=v0.dtype)
    lap = DEFORM_REGULARIZERS.get("laplacian")(v, f, v0)
    torch.testing.assert_close(lap, (laplacian_residual(v, f) - laplacian_residual(v0, f)).pow(2).sum(-1).mean())
    e = edges(f)
    length = float((v0[e[:, 0]] - v0[e[:, 1]]).norm(dim=-1).mean())
    torch.testing.assert_close(DEFORM_REGULARIZERS.get("edge")(v, f, v0), edge_length_loss(v, faces=f, target_length=length))


def test_fit_aligns_a_target_in_another_unit_or_far_away(caplog):
    v, f = icosphere(1)
    tgt = (_ellipsoid(v) * 1000 + 5000, f)  # metres -> millimetres, and far away
    with caplog.at_level(logging.WARNING, logger="geomot.deformation.normalize"):
        res = geomot.deform.fit((v, f), tgt, max_iter=40, progress=False)
    assert "target aligned onto the source" in caplog.text and "another unit" in caplog.text
    assert res.normalization.aligned and res.normalization.scale_ratio > 500
    # the result is expressed in the target's frame and lands on it
    assert res.metrics.assd < 0.5 * assd((res.trajectory[0], f), tgt)
    assert float(res.mesh.verts.mean(0)[0]) == pytest.approx(5000, abs=100)
    joint = geomot.deform.fit((v, f), tgt, max_iter=1, progress=False, metrics=False, normalize="joint")
    assert not joint.normalization.aligned


def test_fit_stops_on_a_blow_up_with_the_last_good_state():
    v, f = icosphere(1)
    tgt = (_ellipsoid(v), f)
    field = _BlowUp(limit=2.5e-3)  # Adam moves w by ~1e-3 per step: steps 0-2 are fine, step 3 blows up
    with pytest.raises(NumericalError, match="blew up at optimisation step 3") as e:
        geomot.deform.fit((v, f), tgt, field=field, max_iter=10, lr=1e-3, progress=False, metrics=False)
    last = e.value.last_good
    assert isinstance(last, DeformResult) and last.loss_history.shape == (3,)
    assert torch.isfinite(last.trajectory).all() and float(field.w.detach().abs().max()) <= 2.5e-3


def test_fit_bad_inputs():
    v, f = icosphere(1)
    bad = v.clone()
    bad[0, 1] = float("inf")
    with pytest.raises(ValidationError, match="source: verts: contains 1 NaN/Inf"):
        geomot.deform.fit((bad, f), (v, f), max_iter=1, progress=False)
    with pytest.raises(ValidationError, match="target: verts: contains 1 NaN/Inf"):
        geomot.deform.fit((v, f), (bad, f), max_iter=1, progress=False)
    fd = f.clone()
    fd[3] = torch.tensor([1, 1, 2])
    with pytest.raises(ValidationError, match="source: 1 degenerate face"):
        geomot.deform.fit((v, fd), (v, f), max_iter=1, progress=False)
    with pytest.raises(ValidationError, match="loss: unknown deformation loss 'emd'"):
        geomot.deform.fit((v, f), (v, f), loss="emd", max_iter=1, progress=False)
    with pytest.raises(ValidationError, match="regularizers: unknown deformation regulariser 'bend'"):
        geomot.deform.fit((v, f), (v, f), regularizers={"bend": 1.0}, max_iter=1, progress=False)
    with pytest.raises(ValidationError, match="'kinetic' needs a kernel field"):
        geomot.deform.fit((v, f), (v, f), field="mlp", regularizers={"kinetic": 1.0}, max_iter=1, progress=False)
    with pytest.raises(ValidationError, match="normalize: unknown normalization 'unit'"):
        geomot.deform.fit((v, f), (v, f), normalize="unit", max_iter=1, progress=False)
    with pytest.raises(ShapeError, match="source: expected a Mesh or a \\(verts, faces\\) pair"):
        geomot.deform.fit(v, (v, f), max_iter=1, progress=False)
    with pytest.raises(ValidationError, match="max_iter: expected an integer >= 1, got 0"):
        geomot.deform.fit((v, f), (v, f), max_iter=0, progress=False)


def test_zero_area_faces_are_allowed_and_logged(caplog):
    v, f = icosphere(1)
    v2 = v.clone()
    a, b, c = f[0]
    v2[c] = 0.5 * (v2[a] + v2[b])  # face 0 collapses to a segment
    with caplog.at_level(logging.WARNING, logger="geomot.deformation.fit"):
        res = geomot.deform.fit((v, f), (v2, f), max_iter=2, progress=False, metrics=False)
    assert "zero-area face" in caplog.text and torch.isfinite(res.trajectory).all()


# -- dataset learning ----------------------------------------------------------------------------------
def _dataset():
    v, f = icosphere(1)
    scales = [(1.2, 0.9, 1.0), (0.8, 1.1, 1.0), (1.0, 1.0, 1.3), (1.3, 0.8, 0.9), (1.1, 1.1, 0.8)]
    return (v, f), [(v * torch.tensor(s, dtype=v.dtype), f) for s in scales]


def test_train_conditioned_generalises_to_unseen_targets():
    # a two-parameter family (scales along x and z) on a grid; the unseen shapes lie between grid nodes
    (v, f), _ = _dataset()

    def ellipsoid(a, c):
        return v * torch.tensor([a, 1.0, c], dtype=v.dtype), f

    train = [ellipsoid(a, c) for a in (0.8, 1.0, 1.2, 1.4) for c in (0.8, 1.0, 1.2)]
    unseen = [ellipsoid(1.1, 0.9), ellipsoid(1.3, 1.1)]
    fitted = train_conditioned((v, f), train, max_iter=150, batch_size=4, code_dim=8, n_points=64, n_time_steps=4,
                               progress=False, field_options={"hidden": 32, "fourier_features": 0})
    assert fitted.loss_history.shape == (150,)
    assert fitted.loss_history[-10:].mean() < 0.6 * fitted.loss_history[:10].mean()
    learned = [m.assd for m in evaluate_conditioned(fitted, (v, f), unseen)]
    undeformed = [assd((v, f), t) for t in unseen]
    assert sum(learned) < 0.6 * sum(undeformed)
    traj = deform_conditioned(fitted, (v, f), unseen, n_frames=3)
    assert traj.shape == (3, 2, v.shape[0], 3)


def test_train_conditioned_losses_and_regularizers():
    tpl, targets = _dataset()
    kw = {"max_iter": 3, "batch_size": 2, "code_dim": 4, "n_points": 32, "n_time_steps": 2, "progress": False,
          "field_options": {"hidden": 8, "fourier_features": 0}}
    # a combination takes {term: options}; its sliced term is annealed over k / steps
    fitted = train_conditioned(tpl, targets, loss="sw-varifold+surface",
                               loss_options={"sw-varifold": {"n_samples": 200, "n_projections": 10}}, **kw)
    assert fitted.loss_history.shape == (3,) and torch.isfinite(fitted.loss_history).all()
    bare = train_conditioned(tpl, targets, regularizers={}, **kw)
    lap = train_conditioned(tpl, targets, regularizers={"laplacian": 100.0}, **kw)
    assert lap.loss_history[-1] > bare.loss_history[-1]  # the regulariser is part of the objective
    with pytest.raises(ValidationError, match="regularizers"):
        train_conditioned(tpl, targets, regularizers={"nope": 1.0}, **kw)
    with pytest.raises(ValidationError, match="loss_options"):
        train_conditioned(tpl, targets, loss="sw-varifold+surface", loss_options={"n_samples": 10}, **kw)


def test_checkpoint_and_exact_resume(tmp_path, monkeypatch):
    import geomot.deformation.dataset as ds

    tpl, targets = _dataset()
    kw = {"batch_size": 2, "code_dim": 8, "n_points": 64, "n_time_steps": 4, "progress": False,
          "loss": "sw-varifold+surface", "loss_options": {"sw-varifold": {"n_samples": 200}},
          "field_options": {"hidden": 16, "fourier_features": 0}}
    straight = train_conditioned(tpl, targets, max_iter=6, **kw)
    ckpt = tmp_path / "c.pt"
    save = ds._save_checkpoint

    def save_then_stop(*args):
        save(*args)
        raise KeyboardInterrupt  # the run dies right after its first checkpoint

    monkeypatch.setattr(ds, "_save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_conditioned(tpl, targets, max_iter=6, checkpoint=ckpt, checkpoint_every=4, **kw)
    monkeypatch.setattr(ds, "_save_checkpoint", save)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4 and state["history"].shape == (4,)
    resumed = train_conditioned(tpl, targets, max_iter=6, checkpoint=ckpt, resume=True, **kw)
    assert resumed.n_steps == 6
    torch.testing.assert_close(resumed.loss_history, straight.loss_history)
    with pytest.raises(ValidationError, match="checkpoint: made with"):
        train_conditioned(tpl, targets, max_iter=8, checkpoint=ckpt, resume=True, **{**kw, "code_dim": 4})
    with pytest.raises(FileFormatError, match="checkpoint: no file"):
        train_conditioned(tpl, targets, max_iter=8, checkpoint=tmp_path / "none.pt", resume=True, **kw)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FileFormatError, match="checkpoint: cannot read"):
        train_conditioned(tpl, targets, max_iter=8, checkpoint=tmp_path / "junk.pt", resume=True, **kw)
    with pytest.raises(ValidationError, match="targets: expected at least one target"):
        train_conditioned(tpl, [], max_iter=1, **kw)


# -- trajectories and CLI ------------------------------------------------------------------------------
def test_trajectory_roundtrip_and_errors(tmp_path):
    v, f = icosphere(1)
    traj = torch.stack([v, 2 * v])
    p = save_trajectory(tmp_path / "t.npz", traj, f, torch.tensor([0.0, 1.0]))
    lv, lf, lt = load_trajectory(p)
    assert lv.dtype == torch.float32 and lf.dtype == torch.int64 and lt.shape == (2,)
    torch.testing.assert_close(lv, traj.float())
    with pytest.raises(ShapeError, match="times: expected shape \\(2,\\)"):
        save_trajectory(tmp_path / "u.npz", traj, f, torch.zeros(3))
    np.savez(tmp_path / "bad.npz", verts=np.zeros((2, 3)))
    with pytest.raises(FileFormatError, match="lacks"):
        load_trajectory(tmp_path / "bad.npz")


def test_cli_deform_writes_the_npz_and_prints_metrics(tmp_path, capsys):
    v, f = icosphere(1, dtype=torch.float32)
    geomot.save(Mesh(v, f), tmp_path / "src.off")
    geomot.save(Mesh(_ellipsoid(v), f), tmp_path / "tgt.gii")
    out = tmp_path / "res.npz"
    rc = main(["deform", str(tmp_path / "src.off"), str(tmp_path / "tgt.gii"), "--max-iter", "5", "--frames", "4",
               "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "ASSD" in text and "HD90" in text and "self-intersections" in text
    with np.load(out) as z:
        assert z["verts"].dtype == np.float32 and z["verts"].shape == (4, v.shape[0], 3)
        assert z["faces"].dtype == np.int64 and z["faces"].shape == tuple(f.shape)
        assert z["times"].shape == (4,)
    rc = main(["deform", str(tmp_path / "src.off"), str(tmp_path / "tgt.gii"), "--out", str(out),
               "--regularize", "edge:1"])
    assert rc == 2 and "expected NAME=WEIGHT" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_fit_on_the_shipped_demo_pair():
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data"
    if not (data / "icosphere.off").exists() or not (data / "blob.off").exists():
        pytest.skip("data/icosphere.off and data/blob.off are generated by scripts/make_data.py")
    src, tgt = geomot.load(data / "icosphere.off"), geomot.load(data / "blob.off")
    res = geomot.deform.quick_fit(src, tgt, max_iter=60, progress=False)
    assert res.metrics.assd < 0.25 * assd(src, tgt)
    assert max(res.frame_self_intersections) == 0


def test_fold_regularizer_is_zero_until_a_face_turns_over_and_pushes_it_back():
    from geomot.deformation.losses import DEFORM_REGULARIZERS, FOLD_MARGIN
    from geomot.metrics import flipped_faces

    fold = DEFORM_REGULARIZERS.get("fold")
    v, f = icosphere(1)
    v, f = v.double(), f
    # rigid motions, scalings and smooth bulges keep every face's projected area: the term is exactly 0
    turned = v @ torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))[0]
    assert float(fold(v, f, v)) == 0.0 and float(fold(2.0 * v, f, v)) == 0.0
    assert float(fold(v * (1 + 0.2 * v[:, 2:]), f, v)) == 0.0
    assert float(fold(turned, f, turned)) == 0.0
    # pushing one vertex through the surface flips its faces: the term counts them, and its gradient pulls back
    bad = v.clone()
    bad[0] = -0.5 * v[0]
    n_flipped = flipped_faces(Mesh(v, f), Mesh(bad, f))
    assert n_flipped > 0
    x = bad.clone().requires_grad_(True)
    value = fold(x, f, v)
    assert float(value.detach()) > FOLD_MARGIN**2 * n_flipped / f.shape[0]
    value.backward()
    assert float((x.grad[0] * v[0]).sum()) < 0  # descent moves vertex 0 back outwards
    # differentiable where it is smooth (a face crossing the margin but not the flip)
    assert torch.autograd.gradcheck(lambda y: fold(y, f, v), (bad.clone().requires_grad_(True),))
    # NaN in, NaN out
    assert torch.isnan(fold(torch.full_like(v, float("nan")), f, v))
