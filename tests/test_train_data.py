"""Point-set datasets, the ragged collate function and atomic checkpoints (geomot.train)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import geomot
from geomot._core.errors import FileFormatError, ValidationError
from geomot.io.synthetic import bumpy_sphere
from geomot.train import (
    PointSetDataset,
    collate_point_sets,
    load_checkpoint,
    normalize_points,
    save_checkpoint,
)


@pytest.fixture
def npy(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(5, 40, 3)) * 3.0 + 10.0
    path = tmp_path / "clouds.npy"
    np.save(path, arr)
    return path


@pytest.fixture
def mesh_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "meshes" / "off"
    folder.mkdir(parents=True)
    for i in range(3):
        geomot.save(bumpy_sphere(300 + 50 * i), folder / f"shape_{i}.off")
    return folder.parent


def test_normalize_points_maps_into_the_unit_ball_and_back():
    pts = torch.randn(50, 3, dtype=torch.float64) * 4 + 2
    out, c, s = normalize_points(pts)
    assert torch.allclose(out.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert float(out.norm(dim=-1).max()) == pytest.approx(1.0)
    assert torch.allclose(out * s + c, pts)
    same, _, s1 = normalize_points(torch.ones(4, 3))
    assert float(s1) == 1.0 and torch.equal(same, torch.zeros(4, 3))


def test_npy_rows_are_seeded_subsets_normalised_with_their_inverse(npy):
    ds = PointSetDataset(npy, n_points=16, seed=3)
    assert len(ds) == 5
    item = ds[2]
    raw = torch.as_tensor(np.load(npy)[2])
    back = (item["points"] * item["scale"] + item["centre"]).double()
    # every reconstructed point is one of the row's points
    assert float(torch.cdist(back, raw).min(dim=1).values.max()) < 1e-4
    assert item["points"].shape == (16, 3) and item["name"] == "clouds[2]"
    again = PointSetDataset(npy, n_points=16, seed=3)[2]["points"]
    other = PointSetDataset(npy, n_points=16, seed=4)[2]["points"]
    assert torch.equal(item["points"], again) and not torch.equal(item["points"], other)


def test_resample_changes_the_points_with_the_epoch_only(npy):
    ds = PointSetDataset(npy, n_points=16, resample=True)
    a = ds[0]["points"]
    ds.set_epoch(1)
    b = ds[0]["points"]
    ds.set_epoch(0)
    assert not torch.equal(a, b) and torch.equal(a, ds[0]["points"])
    fixed = PointSetDataset(npy, n_points=16)
    fixed.set_epoch(5)
    assert torch.equal(fixed[0]["points"], PointSetDataset(npy, n_points=16)[0]["points"])


def test_mesh_folder_items_are_area_samples_on_the_surface(mesh_folder):
    ds = PointSetDataset(mesh_folder, n_points=200, normalize=False, dtype=torch.float64)
    assert [ds[i]["name"] for i in range(len(ds))] == ["shape_0", "shape_1", "shape_2"]
    mesh = geomot.load(mesh_folder / "off" / "shape_1.off", dtype=torch.float64)
    pts = ds[1]["points"]
    assert pts.shape == (200, 3)
    # samples lie on the surface: within the bounding box and close to the mesh
    assert float(torch.cdist(pts, mesh.verts).min(dim=1).values.max()) < 0.2


def test_single_shape_files_are_items(mesh_folder):
    files = sorted((mesh_folder / "off").iterdir())
    ds = PointSetDataset(files[1:], n_points=30)
    assert [ds[i]["name"] for i in range(len(ds))] == ["shape_1", "shape_2"]
    with pytest.raises(ValidationError, match="n_points: required to sample the mesh"):
        PointSetDataset(files[0], n_points=None)


def test_collate_pads_ragged_items_and_a_dataloader_uses_it(npy, mesh_folder):
    a = PointSetDataset(npy, n_points=16)
    b = PointSetDataset(mesh_folder, n_points=24)
    batch = collate_point_sets([a[0], b[0], a[1]])
    assert batch["points"].shape == (3, 24, 3)
    assert batch["lengths"].tolist() == [16, 24, 16]
    assert torch.equal(batch["points"][0, 16:], torch.zeros(8, 3))
    assert batch["centre"].shape == (3, 3) and batch["scale"].shape == (3,)
    loader = DataLoader(PointSetDataset([npy, mesh_folder], n_points=16), batch_size=4, collate_fn=collate_point_sets)
    sizes = [len(b["name"]) for b in loader]
    assert sizes == [4, 4]


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda p: PointSetDataset([]), ValidationError, "sources: expected at least one"),
        (lambda p: PointSetDataset(p / "missing"), FileFormatError, "no such file or folder"),
        (lambda p: PointSetDataset(p / "empty"), FileFormatError, "no shape files found"),
        (lambda p: PointSetDataset(p / "a.txt"), FileFormatError, "expected a .npy array of points, a shape file or a folder"),
        (lambda p: PointSetDataset(p / "bad.npy"), FileFormatError, "not a readable .npy array"),
        (lambda p: PointSetDataset(p / "flat.npy"), ValidationError, r"expected points of shape \(B, N, 3\)"),
        (lambda p: PointSetDataset(p / "ints.npy"), ValidationError, "expected floating-point points"),
        (lambda p: PointSetDataset(p / "small.npy", n_points=64), ValidationError, "fewer than n_points=64"),
        (lambda p: PointSetDataset(p / "meshes", n_points=None), ValidationError, "n_points: required"),
        (lambda p: PointSetDataset(p / "small.npy", n_points=0), ValidationError, "n_points: expected an integer"),
        (lambda p: PointSetDataset(p / "nan.npy", n_points=4)[0], ValidationError, r"nan\[0\]: contains NaN/Inf"),
        (lambda p: PointSetDataset(p / "small.npy", n_points=4)[9], IndexError, "index 9 out of range"),
        (lambda p: collate_point_sets([]), ValidationError, "expected at least one item"),
    ],
)
def test_dataset_errors(tmp_path, make, error, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "meshes").mkdir()
    geomot.save(bumpy_sphere(200), tmp_path / "meshes" / "s.off")
    (tmp_path / "a.txt").write_text("1 2 3\n")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(tmp_path / "flat.npy", np.zeros((4, 2)))
    np.save(tmp_path / "ints.npy", np.zeros((1, 4, 3), dtype=np.int64))
    np.save(tmp_path / "small.npy", np.zeros((1, 8, 3)))
    np.save(tmp_path / "nan.npy", np.full((1, 8, 3), np.nan))
    with pytest.raises(error, match=message):
        make(tmp_path)


def test_checkpoint_round_trip_kind_check_and_atomic_write(tmp_path):
    path = tmp_path / "run" / "last.pt"
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "rng": torch.get_rng_state()}
    save_checkpoint(path, kind="autoencoder", config={"n_points": 16}, state=state)
    data = load_checkpoint(path, kind="autoencoder")
    assert data["epoch"] == 2 and data["config"] == {"n_points": 16}
    assert torch.equal(data["model"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left
    with pytest.raises(ValidationError, match="a checkpoint of a 'autoencoder' model, expected 'matcher'"):
        load_checkpoint(path, kind="matcher")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, kind="autoencoder", config={}, state={"epoch": 1})

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, kind="autoencoder", config={}, state={"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize(
    "content, error, message",
    [
        (None, FileFormatError, "no such checkpoint file"),
        ("truncate", FileFormatError, "not a readable checkpoint"),
        ("foreign", FileFormatError, "not a geomot checkpoint"),
    ],
)
def test_checkpoint_read_errors(tmp_path, content, error, message):
    path = tmp_path / "c.pt"
    if content == "truncate":
        save_checkpoint(path, kind="autoencoder", config={}, state={"w": torch.zeros(1000)})
        path.write_bytes(path.read_bytes()[:300])
    elif content == "foreign":
        torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(error, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "kind, state, message",
    [("", {}, "kind: expected a non-empty string"), ("ae", {"kind": 1}, r"keys \['kind'\] are reserved")],
)
def test_checkpoint_write_errors(tmp_path, kind, state, message):
    with pytest.raises(ValidationError, match=message):
        save_checkpoint(tmp_path / "c.pt", kind=kind, config={}, state=state)
