"""Atomic file writes of checkpoints and caches (geomot._core.files)."""

import logging

import numpy as np
import pytest
import torch

from geomot._core.files import atomic_savez, atomic_torch_save, atomic_write, config_differences


def test_atomic_write_replaces_and_a_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "sub" / "f.bin"
    atomic_write(path, lambda fh: fh.write(b"old"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, lambda fh: (fh.write(b"half"), (_ for _ in ()).throw(RuntimeError("disk on fire"))))
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]  # no temporary file left


def test_atomic_torch_save_round_trips(tmp_path):
    atomic_torch_save({"w": torch.arange(3)}, tmp_path / "c.pt")
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.arange(3))


def test_atomic_savez_logs_and_returns_false_when_the_folder_cannot_be_written(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the cache folder should be
    with caplog.at_level(logging.WARNING):
        assert atomic_savez(blocker / "cache" / "a.npz", {"a": np.zeros(2)}, what="spectral_basis") is False
    assert "spectral_basis: could not write the cache file" in caplog.text
    assert atomic_savez(tmp_path / "a.npz", {"a": np.ones(2)}, what="x") is True
    with np.load(tmp_path / "a.npz") as z:
        assert z["a"].tolist() == [1.0, 1.0]


def test_config_differences_names_changed_and_missing_settings():
    assert config_differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": None}) == ["b"]
    assert config_differences({"a": 1}, {"c": 2}) == ["a", "c"]
