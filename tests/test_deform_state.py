"""Deformation fits and models leave process-wide state alone (global RNG, thread count), renamed arguments warn,
checkpoints resume to the uninterrupted result, the ``geomot deform`` field/checkpoint options, the tangential
regulariser."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch

import geomot
from geomot._core.errors import FileFormatError, GeomotDeprecationWarning, ValidationError
from geomot.cli import main
from geomot.deformation.checkpoint import check_config, read_checkpoint, write_checkpoint
from geomot.deformation.dataset import ConditionedDeformer, load_conditioned, train_conditioned
from geomot.deformation.losses import DEFORM_REGULARIZERS
from geomot.models import ConditionedVelocity, MLPVelocity
from geomot.models._spectral import SpectralNorm
from geomot.models.encoder import PointNetEncoder
from geomot.ops.geometry import vertex_normals
from geomot.structures import Mesh
from tests.conftest import icosphere

pytestmark = pytest.mark.usefixtures("one_torch_thread")
fit_module = importlib.import_module("geomot.deformation.fit")  # the package exports the function ``fit``


def _pair(subdiv: int = 1):
    v, f = icosphere(subdiv)
    scale = torch.tensor([1.3, 0.8, 1.0], dtype=v.dtype)
    return (v, f), (v * scale + torch.tensor([0.1, 0.0, -0.05], dtype=v.dtype), f)


def _no_global_state(monkeypatch):
    """Make every process-wide setter raise for the duration of a test."""
    def forbidden(name):
        def raiser(*args, **kwargs):
            raise AssertionError(f"a library call used {name}")
        return raiser

    for name in ("set_num_threads", "manual_seed", "seed", "set_rng_state", "set_flush_denormal"):
        monkeypatch.setattr(torch, name, forbidden(f"torch.{name}"))
    monkeypatch.setattr(torch.random, "fork_rng", forbidden("torch.random.fork_rng"))
    monkeypatch.setattr(torch.random, "manual_seed", forbidden("torch.random.manual_seed"))


# -- process-wide state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["kernel", "mlp"])
def test_fit_leaves_the_global_rng_and_threads_alone(monkeypatch, field):
    src, tgt = _pair()
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    _no_global_state(monkeypatch)
    opts = {"hidden": 16, "fourier_features": 4} if field == "mlp" else None
    a = geomot.deform.fit(src, tgt, field=field, field_options=opts, max_iter=3, progress=False, metrics=False)
    b = geomot.deform.fit(src, tgt, field=field, field_options=opts, max_iter=3, progress=False, metrics=False)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads
    assert torch.equal(a.trajectory, b.trajectory)  # seeded by local generators only


def test_fit_threads_argument_is_deprecated_and_ignored():
    src, tgt = _pair()
    before = torch.get_num_threads()
    with pytest.warns(GeomotDeprecationWarning, match="'threads' is deprecated and ignored"):
        geomot.deform.fit(src, tgt, max_iter=1, progress=False, metrics=False, threads=2)
    assert torch.get_num_threads() == before


def test_train_conditioned_leaves_the_global_rng_alone(monkeypatch):
    (v, f), (w, g) = _pair()
    rng = torch.get_rng_state()
    _no_global_state(monkeypatch)
    kw = {"max_iter": 2, "batch_size": 1, "code_dim": 4, "n_points": 16, "n_time_steps": 2, "progress": False,
          "field_options": {"hidden": 8, "fourier_features": 2}}
    a = train_conditioned((v, f), [(w, g)], **kw)
    b = train_conditioned((v, f), [(w, g)], **kw)
    assert torch.equal(torch.get_rng_state(), rng)
    torch.testing.assert_close(a.loss_history, b.loss_history, rtol=0, atol=0)


def test_models_draw_from_their_generator_only():
    rng = torch.get_rng_state()
    built = []
    for _ in range(2):
        g = torch.Generator().manual_seed(5)
        built.append([MLPVelocity(hidden=8, fourier_features=3, spectral_norm=True, generator=g),
                      ConditionedVelocity(code_dim=3, hidden=8, spectral_norm=True, generator=g),
                      PointNetEncoder(code_dim=4, hidden=(8,), generator=g)])
    assert torch.equal(torch.get_rng_state(), rng)
    for m1, m2 in zip(*built, strict=True):
        s1, s2 = m1.state_dict(), m2.state_dict()
        assert all(torch.equal(s1[k], s2[k]) for k in s1)
    other = PointNetEncoder(code_dim=4, hidden=(8,), generator=torch.Generator().manual_seed(6))
    assert not torch.equal(other.head.weight, built[0][2].head.weight)


def test_spectral_norm_estimates_the_largest_singular_value():
    w = torch.randn(20, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sn = SpectralNorm(w, generator=torch.Generator().manual_seed(2))
    for _ in range(50):
        out = sn(w)
    assert float(torch.linalg.matrix_norm(out, ord=2)) == pytest.approx(1.0, rel=1e-6)
    sn.eval()
    torch.testing.assert_close(sn(w), out)


# -- renamed arguments -------------------------------------------------------------------------------------
def test_steps_is_a_deprecated_alias_of_max_iter():
    src, tgt = _pair()
    new = geomot.deform.fit(src, tgt, max_iter=3, progress=False, metrics=False)
    with pytest.warns(GeomotDeprecationWarning, match=r"'steps' is deprecated .* use 'max_iter'"):
        old = geomot.deform.fit(src, tgt, steps=3, progress=False, metrics=False)
    assert old.n_steps == 3 and torch.equal(old.trajectory, new.trajectory)
    with pytest.raises(ValidationError, match="got both 'steps' \\(deprecated\\) and 'max_iter'"):
        geomot.deform.fit(src, tgt, steps=3, max_iter=3, progress=False)
    with pytest.warns(GeomotDeprecationWarning, match="'steps' is deprecated"):
        fitted = train_conditioned(src, [tgt], steps=1, code_dim=4, n_points=16, n_time_steps=2, progress=False,
                                   field_options={"hidden": 8, "fourier_features": 0})
    assert fitted.n_steps == 1


def test_quick_fit_keeps_steps_without_a_warning():
    src, tgt = _pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = geomot.deform.quick_fit(src, tgt, steps=2, progress=False)
    assert res.n_steps == 2
    assert geomot.deform.quick_fit(src, tgt, max_iter=1, progress=False).n_steps == 1


# -- checkpoints -----------------------------------------------------------------------------------------
class _Killed(Exception):
    pass


def test_fit_resumes_after_a_kill_to_the_uninterrupted_result(tmp_path, monkeypatch):
    src, tgt = _pair()
    kw = {"loss": "sw-varifold+surface", "loss_options": {"sw-varifold": {"n_samples": 300, "n_projections": 20}},
          "max_iter": 10, "progress": False, "metrics": False, "n_frames": 3}
    straight = geomot.deform.fit(src, tgt, **kw)
    ckpt = tmp_path / "run.pt"
    step = fit_module.optimizer_step

    def dies_at_iteration_7(opt, total, history, bar, k):
        if k == 7:
            raise _Killed  # killed between two checkpoints: iterations 6 (the last saved one) and 7 are lost
        step(opt, total, history, bar, k)

    monkeypatch.setattr(fit_module, "optimizer_step", dies_at_iteration_7)
    with pytest.raises(_Killed):
        geomot.deform.fit(src, tgt, checkpoint=ckpt, checkpoint_every=3, **kw)
    monkeypatch.setattr(fit_module, "optimizer_step", step)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 6 and state["history"].shape == (6,)
    assert not (tmp_path / "run.pt.tmp").exists()
    resumed = geomot.deform.fit(src, tgt, checkpoint=ckpt, checkpoint_every=3, resume=True, **kw)
    assert resumed.n_steps == 10
    torch.testing.assert_close(resumed.loss_history, straight.loss_history, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(resumed.trajectory, straight.trajectory, rtol=1e-6, atol=1e-6)
    assert torch.load(ckpt, weights_only=True)["step"] == 10


def test_fit_checkpoint_errors(tmp_path):
    src, tgt = _pair()
    kw = {"progress": False, "metrics": False}
    with pytest.raises(ValidationError, match="resume: needs a checkpoint path"):
        geomot.deform.fit(src, tgt, max_iter=2, resume=True, **kw)
    with pytest.raises(FileFormatError, match=r"checkpoint: no file at .* to resume from"):
        geomot.deform.fit(src, tgt, max_iter=2, resume=True, checkpoint=tmp_path / "none.pt", **kw)
    ckpt = tmp_path / "c.pt"
    geomot.deform.fit(src, tgt, max_iter=2, checkpoint=ckpt, **kw)
    with pytest.raises(ValidationError, match=r"checkpoint: made with .*different: max_iter"):
        geomot.deform.fit(src, tgt, max_iter=3, resume=True, checkpoint=ckpt, **kw)
    with pytest.raises(ValidationError, match="checkpoint_every: expected an integer >= 1, got 0"):
        geomot.deform.fit(src, tgt, max_iter=2, checkpoint=ckpt, checkpoint_every=0, **kw)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FileFormatError, match="checkpoint: cannot read"):
        geomot.deform.fit(src, tgt, max_iter=2, resume=True, checkpoint=tmp_path / "junk.pt", **kw)
    dataset_ckpt = tmp_path / "d.pt"
    train_conditioned(src, [tgt], max_iter=1, code_dim=4, n_points=16, n_time_steps=2, progress=False,
                      checkpoint=dataset_ckpt, field_options={"hidden": 8, "fourier_features": 0})
    with pytest.raises(FileFormatError, match="is not a geomot checkpoint of this kind"):
        geomot.deform.fit(src, tgt, max_iter=2, resume=True, checkpoint=dataset_ckpt, **kw)


def test_checkpoint_helpers(tmp_path):
    p = write_checkpoint(tmp_path / "sub" / "x.pt", {"format": "f/1", "config": {"a": 1}, "t": torch.ones(2)})
    assert p.is_file() and not (tmp_path / "sub" / "x.pt.tmp").exists()
    state = read_checkpoint(p, "f/1")
    check_config(state, {"a": 1})
    with pytest.raises(ValidationError, match="different: a, b"):
        check_config(state, {"a": 2, "b": 0})
    with pytest.raises(FileFormatError, match="not a geomot checkpoint of this kind \\(g/1\\)"):
        read_checkpoint(p, "g/1")


def test_load_conditioned_errors(tmp_path):
    src, _ = _pair()
    with pytest.raises(FileFormatError, match="path: no checkpoint at"):
        load_conditioned(tmp_path / "none.pt", src)
    torch.save({"format": "other"}, tmp_path / "o.pt")
    with pytest.raises(FileFormatError, match="is not a geomot conditioned-deformation checkpoint"):
        load_conditioned(tmp_path / "o.pt", src)


def test_load_conditioned_leaves_the_global_rng_alone(tmp_path, monkeypatch):
    src, tgt = _pair()
    ckpt = tmp_path / "m.pt"
    fitted = train_conditioned(src, [tgt], max_iter=1, code_dim=4, n_points=16, n_time_steps=2, progress=False,
                               checkpoint=ckpt, field_options={"hidden": 8, "fourier_features": 0})
    rng = torch.get_rng_state()
    loaded = load_conditioned(ckpt, src, field_options={"hidden": 8, "fourier_features": 0})
    assert torch.equal(torch.get_rng_state(), rng)
    s1, s2 = fitted.model.state_dict(), loaded.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert isinstance(loaded.model, ConditionedDeformer)


# -- CLI -------------------------------------------------------------------------------------------------
@pytest.fixture
def mesh_files(tmp_path):
    (v, f), (w, g) = _pair()
    geomot.save(Mesh(v.float(), f), tmp_path / "src.off")
    geomot.save(Mesh(w.float(), g), tmp_path / "tgt.off")
    return str(tmp_path / "src.off"), str(tmp_path / "tgt.off")


def test_cli_deform_passes_the_field_options(mesh_files, tmp_path, deform_fit_kwargs, capsys):
    seen = deform_fit_kwargs
    out = str(tmp_path / "r.npz")
    assert main(["deform", *mesh_files, "--out", out, "--quiet", "--max-iter", "2", "--control-points", "20",
                 "--sigma-factor", "2", "--time-bins", "2", "--time-steps", "4", "--lr", "0.01"]) == 0
    assert seen["max_iter"] == 2 and seen["lr"] == 0.01 and seen["n_time_steps"] == 4
    assert seen["field_options"] == {"n_control": 20, "sigma_factor": 2.0, "n_time_bins": 2}
    assert "2 iterations" in capsys.readouterr().out
    assert main(["deform", *mesh_files, "--out", out, "--quiet", "--max-iter", "1", "--field", "mlp",
                 "--hidden", "8", "--layers", "1", "--fourier-features", "0"]) == 0
    assert seen["field"] == "mlp" and seen["field_options"] == {"hidden": 8, "layers": 1, "fourier_features": 0}


def test_cli_deform_option_errors(mesh_files, tmp_path, capsys):
    out = str(tmp_path / "r.npz")
    assert main(["deform", *mesh_files, "--out", out, "--field", "mlp", "--control-points", "5"]) == 2
    assert "--control-points: applies to --field kernel, not mlp" in capsys.readouterr().err
    assert main(["deform", *mesh_files, "--out", out, "--resume"]) == 2
    assert "--resume: needs --checkpoint PATH" in capsys.readouterr().err
    assert main(["deform", *mesh_files, "--out", out, "--steps", "2", "--max-iter", "2"]) == 2
    assert "--steps: deprecated alias of --max-iter" in capsys.readouterr().err
    assert main(["deform", *mesh_files, "--out", out, "--regularize", "edge=x"]) == 2
    assert "weight of 'edge' is not a number" in capsys.readouterr().err


def test_cli_deform_steps_warns_and_checkpoint_resume(mesh_files, tmp_path, capsys):
    out, ckpt = str(tmp_path / "r.npz"), str(tmp_path / "c.pt")
    with pytest.warns(GeomotDeprecationWarning, match="--steps is deprecated"):
        assert main(["deform", *mesh_files, "--out", out, "--quiet", "--steps", "2"]) == 0
    assert main(["deform", *mesh_files, "--out", out, "--quiet", "--max-iter", "3", "--checkpoint", ckpt]) == 0
    with np.load(out) as z:
        first = z["verts"].copy()
    assert torch.load(ckpt, weights_only=True)["step"] == 3
    # resuming a finished run does no further iteration and writes the same result
    assert main(["deform", *mesh_files, "--out", out, "--quiet", "--max-iter", "3", "--checkpoint", ckpt,
                 "--resume"]) == 0
    with np.load(out) as z:
        np.testing.assert_array_equal(z["verts"], first)


def test_cli_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["deform", "--help"])
    text = capsys.readouterr().out
    assert "--control-points" in text and "--max-iter" in text and "--checkpoint" in text
    assert "``" not in text and ":func:" not in text and "--steps" not in text


# -- tangential regulariser ------------------------------------------------------------------------------
def test_tangential_regulariser_closed_form():
    v0, f = icosphere(2)
    n = vertex_normals(v0, f)
    reg = DEFORM_REGULARIZERS.get("tangential")
    assert float(reg(v0 + 0.3 * n, f, v0)) == pytest.approx(0.0, abs=1e-20)  # motion along the normals is free
    t = torch.linalg.cross(n, torch.tensor([0.0, 0.0, 1.0], dtype=v0.dtype).expand_as(n))  # tangent to the sphere
    t = 0.1 * torch.nn.functional.normalize(t, dim=1, eps=1e-12)
    expected = t.pow(2).sum(-1).mean()
    torch.testing.assert_close(reg(v0 + t + 0.2 * n, f, v0), expected)
    x = (v0 + t).requires_grad_()
    assert torch.autograd.gradcheck(lambda y: reg(y, f, v0), (x,))
