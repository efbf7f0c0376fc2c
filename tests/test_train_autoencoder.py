"""The autoencoder trainer: every loss trains, checkpoints resume exactly, the CLI, torchrun/DDP and errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot.cli import main
from geomot.train.autoencoder import AutoencoderConfig, loss_names, make_loss_factory, train_autoencoder
from geomot.train.checkpoint import load_checkpoint, save_checkpoint
from geomot.train.reconstruct import load_autoencoder, reconstruct

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clouds(tmp_path_factory) -> Path:
    """64 small clouds: noisy ellipsoids of random axes, so the autoencoder has something to learn."""
    rng = np.random.default_rng(0)
    u = rng.normal(size=(64, 48, 3))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    axes = rng.uniform(0.3, 1.0, size=(64, 1, 3))
    path = tmp_path_factory.mktemp("data") / "clouds.npy"
    np.save(path, (u * axes + 0.01 * rng.normal(size=u.shape)).astype(np.float32))
    return path


def _config(loss: str = "sw", **kw) -> AutoencoderConfig:
    settings = dict(n_points=48, latent_dim=8, encoder_widths=(16, 32), decoder_widths=(32,), n_projections=16)
    return AutoencoderConfig(loss=loss, **{**settings, **kw})


@pytest.fixture(scope="module")
def trained(clouds, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("trained")
    train_autoencoder([clouds], run, config=_config(), epochs=1, batch_size=32, progress=False)
    return run


def test_every_loss_name_builds_and_a_step_is_finite(clouds, tmp_path):
    names = [n for n in loss_names() if not n.startswith("amortized-")]
    names += ["amortized-attention-vmf", "amortized-linear-max", "amortized-generalized-linear-vmf"]
    for name in names:
        hist = train_autoencoder([clouds], tmp_path / name, config=_config(name), epochs=1, batch_size=32,
                                 progress=False)
        assert len(hist) == 1 and np.isfinite(hist[0]["loss"]), name


def test_training_lowers_the_loss_and_writes_log_and_checkpoint(clouds, tmp_path):
    hist = train_autoencoder([clouds], tmp_path, config=_config(), epochs=6, batch_size=16, progress=False)
    assert hist[-1]["loss"] < 0.5 * hist[0]["loss"]
    log = json.loads((tmp_path / "log.json").read_text())
    assert [e["epoch"] for e in log] == list(range(1, 7)) and all(e["seconds"] > 0 for e in log)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", kind="autoencoder")
    assert ckpt["epoch"] == 6 and ckpt["config"]["loss"] == "sw"


@pytest.mark.parametrize("loss", ["sw", "amortized-attention-vmf"])
def test_resume_after_a_kill_gives_the_losses_of_an_uninterrupted_run(clouds, tmp_path, loss):
    full = train_autoencoder([clouds], tmp_path / "full", config=_config(loss), epochs=3, batch_size=16,
                             progress=False)
    train_autoencoder([clouds], tmp_path / "cut", config=_config(loss), epochs=1, batch_size=16, progress=False)
    resumed = train_autoencoder([clouds], tmp_path / "cut", config=_config(loss), epochs=3, batch_size=16,
                                resume=True, progress=False)
    assert [e["epoch"] for e in resumed] == [1, 2, 3]
    np.testing.assert_allclose([e["loss"] for e in resumed], [e["loss"] for e in full], rtol=1e-6)


def test_reconstruct_maps_back_to_the_inputs_coordinates(clouds, tmp_path):
    train_autoencoder([clouds], tmp_path, config=_config(), epochs=2, batch_size=16, progress=False)
    shifted = tmp_path / "shifted.npy"
    np.save(shifted, np.load(clouds)[:5] * 10.0 + 100.0)
    rec = reconstruct(tmp_path, shifted)
    assert rec.shape == (5, 48, 3) and rec.dtype == np.float32
    assert np.allclose(rec.mean(axis=1), 100.0, atol=10.0)
    model, config = load_autoencoder(tmp_path / "checkpoint.pt")
    assert not model.training and config["n_points"] == 48


def test_cli_trains_two_epochs_then_reconstructs(clouds, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "autoencoder", "--data", str(clouds), "--loss", "sw", "--points", "48", "--epochs", "2",
            "--batch-size", "16", "--latent-dim", "8", "--encoder-widths", "16", "32", "--decoder-widths", "32",
            "--n-projections", "16", "--out", str(run), "--quiet"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["epoch"] == 2
    out = tmp_path / "rec.npy"
    assert main(["reconstruct", str(run), str(clouds), "--out", str(out)]) == 0
    assert np.load(out).shape == (64, 48, 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_under_torchrun(clouds, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), "-m", "geomot.cli", "train", "autoencoder", "--data", str(clouds), "--points", "48",
           "--epochs", "2", "--batch-size", "8", "--latent-dim", "8", "--encoder-widths", "16", "32",
           "--decoder-widths", "32", "--n-projections", "16", "--out",
           str(tmp_path), "--quiet", "--device", "cpu"]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, timeout=300)
    log = json.loads((tmp_path / "log.json").read_text())
    assert [e["epoch"] for e in log] == [1, 2]
    # each rank saw half of the data: 64 clouds / 2 ranks / 8 per batch = 4 steps each


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p, c: _config("nope"), ValidationError, "loss: unknown loss 'nope'; valid: "),
        (lambda p, c: _config("amortized-transformer-vmf"), ValidationError, "unknown amortised loss"),
        (lambda p, c: _config("amortized-attention-mean"), ValidationError, "amortized-KIND-max or amortized-KIND-vmf"),
        (lambda p, c: _config(kappa=0.0), ValidationError, "kappa: expected a positive value"),
        (lambda p, c: _config(decoder_widths=()), ValidationError, "decoder_widths: expected a non-empty sequence"),
        (
            lambda p, c: train_autoencoder([p / "empty"], p / "run", config=_config(), progress=False),
            FileFormatError,
            "no shape files found",
        ),
        (
            lambda p, c: train_autoencoder([c], p / "none", config=_config(), resume=True, progress=False),
            FileFormatError,
            "--resume given but there is no checkpoint.pt",
        ),
        (
            lambda p, c: train_autoencoder([c], p / "other", config=_config("chamfer"), epochs=2, resume=True,
                                           progress=False),
            ValidationError,
            r"written for another configuration \(differs in loss\)",
        ),
        (lambda p, c: reconstruct(p / "matcher", c), ValidationError, "a checkpoint of a 'matcher' model"),
        (lambda p, c: reconstruct(p / "truncated", c), FileFormatError, "not a readable checkpoint"),
    ],
)
def test_trainer_errors_leave_files_alone(clouds, trained, tmp_path, make, error, message):
    import shutil

    (tmp_path / "empty").mkdir()
    shutil.copytree(trained, tmp_path / "other")
    save_checkpoint(tmp_path / "matcher" / "checkpoint.pt", kind="matcher", config={}, state={})
    good = (tmp_path / "other" / "checkpoint.pt").read_bytes()
    (tmp_path / "truncated").mkdir()
    (tmp_path / "truncated" / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(error, match=message):
        make(tmp_path, clouds)
    assert (tmp_path / "other" / "checkpoint.pt").read_bytes() == good


def test_factories_for_every_amortized_kind():
    for name in loss_names():
        assert callable(make_loss_factory(name))
    assert sum(n.startswith("amortized-") for n in loss_names()) == 12
    assert torch.get_default_dtype() == torch.float32


def test_config_passes_kappa_and_the_projector_optimiser_to_the_amortized_loss():
    gen = torch.Generator().manual_seed(0)
    cfg = AutoencoderConfig(loss="amortized-attention-vmf", n_points=64, projector_lr=5e-3, projector_betas=(0.5, 0.99))
    shell = make_loss_factory(cfg.loss)(cfg, gen)
    loss = next(m for m in shell.modules() if type(m).__name__ == "AmortizedSlicedWasserstein")
    group = loss.optimizer.param_groups[0]
    assert group["lr"] == 5e-3 and tuple(group["betas"]) == (0.5, 0.99)
    assert "kappa" not in loss.settings  # kappa=None: the amortised loss's own default (1) applies
    cfg10 = AutoencoderConfig(loss="amortized-attention-vmf", n_points=64, kappa=10.0)
    shell10 = make_loss_factory(cfg10.loss)(cfg10, gen)
    assert next(m for m in shell10.modules() if type(m).__name__ == "AmortizedSlicedWasserstein").settings[
        "kappa"] == 10.0
    with pytest.raises(ValidationError, match=r"projector_lr: expected a positive value"):
        AutoencoderConfig(loss="amortized-attention-vmf", projector_lr=0.0)
    with pytest.raises(ValidationError, match=r"projector_betas: expected two numbers in \[0, 1\)"):
        AutoencoderConfig(loss="amortized-attention-vmf", projector_betas=(0.5, 1.0))
