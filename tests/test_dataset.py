""".vts files, ShapeDataset (off/ + corres/ folders) and the offline fsaverage5 loader."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geomot._core.errors import FileFormatError, ShapeError, ValidationError
from geomot.io import ShapeDataset, load, load_fsaverage5, read_vts, save, write_vts
from geomot.io.dataset import default_class_of
from geomot.io.fsaverage import fsaverage5_candidates
from geomot.io.synthetic import bumpy_pair, icosphere
from tests.conftest import ROOT, shared_path


# -- .vts -----------------------------------------------------------------------------------------------
def test_vts_round_trip_is_one_based_on_disk(tmp_path):
    idx = torch.tensor([0, 5, 2, 2, 41])
    p = write_vts(tmp_path / "a.vts", idx)
    assert p.read_text() == "1\n6\n3\n3\n42\n"
    back = read_vts(p)
    assert back.dtype == torch.int64 and torch.equal(back, idx)
    assert torch.equal(read_vts(write_vts(tmp_path / "b.vts", np.array([3, 1], dtype=np.int32))), torch.tensor([3, 1]))


def test_vts_tolerates_blank_lines_and_whitespace(tmp_path):
    (tmp_path / "w.vts").write_text("  4\n\n2 \r\n")
    assert read_vts(tmp_path / "w.vts").tolist() == [3, 1]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("1\n0\n3\n", r"z\.vts: line 2: indices are 1-based and must be >= 1, got 0"),
        ("1\n-2\n", r"z\.vts: line 2: expected one positive integer, got '-2'"),
        ("1\n2.5\n", r"z\.vts: line 2: expected one positive integer, got '2.5'"),
        ("1 2\n", r"z\.vts: line 1: expected one positive integer, got '1 2'"),
        ("\n\n", r"z\.vts: empty \.vts file"),
        ("1\n9\n", r"z\.vts: line 2: index 9 exceeds the mesh's 5 vertices"),
    ],
)
def test_vts_bad_content(tmp_path, content, match):
    (tmp_path / "z.vts").write_text(content)
    with pytest.raises(FileFormatError, match=match):
        read_vts(tmp_path / "z.vts", n_verts=5)


def test_vts_bad_paths_and_indices(tmp_path):
    with pytest.raises(FileFormatError, match=r"none\.vts: no such file"):
        read_vts(tmp_path / "none.vts")
    with pytest.raises(FileFormatError, match="is a directory"):
        read_vts(tmp_path)
    (tmp_path / "bin.vts").write_bytes(b"\xff\xfe1\n")
    with pytest.raises(FileFormatError, match=r"bin\.vts: not a text \.vts file"):
        read_vts(tmp_path / "bin.vts")
    with pytest.raises(ValidationError, match="idx: indices are 0-based and must be >= 0, got -1"):
        write_vts(tmp_path / "n.vts", torch.tensor([0, -1]))
    with pytest.raises(ShapeError, match=r"idx: expected integer indices, got dtype float32"):
        write_vts(tmp_path / "n.vts", torch.tensor([0.0, 1.0]))
    with pytest.raises(ShapeError, match=r"idx: expected a non-empty 1-D index tensor \(K,\), got shape \(2, 2\)"):
        write_vts(tmp_path / "n.vts", torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(FileFormatError, match="does not exist"):
        write_vts(tmp_path / "no" / "n.vts", torch.tensor([0]))


# -- ShapeDataset on a dataset written here ---------------------------------------------------------------
@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """cat0, cat1, cat10, dog2 meshes; ground truth for all but dog2."""
    (tmp_path / "off").mkdir()
    (tmp_path / "corres").mkdir()
    sph = icosphere(1)
    for k, name in enumerate(["cat0", "cat10", "cat1", "dog2"]):
        save(sph.update_verts(sph.verts * (1 + k)), tmp_path / "off" / f"{name}.off")
        if name != "dog2":
            write_vts(tmp_path / "corres" / f"{name}.vts", torch.arange(k, 40 + k))
    (tmp_path / "off" / "notes.txt").write_text("not a shape")
    return tmp_path


def test_dataset_listing_loading_and_pairs(tiny_dataset):
    ds = ShapeDataset(tiny_dataset)
    assert ds.names == ["cat0", "cat1", "cat10", "dog2"] and len(ds) == 4 and "cat1" in ds
    assert list(ds) == ds.names and "shapes=4" in repr(ds)
    m = ds["cat10"]
    assert m.verts.shape == (42, 3) and torch.allclose(m.verts.norm(dim=1), torch.full((42,), 2.0), atol=1e-6)
    assert torch.equal(ds[0].verts, ds.load("cat0").verts)
    assert ds.load("cat1", dtype=torch.float64).dtype == torch.float64
    assert ds.classes() == {"cat": ["cat0", "cat1", "cat10"], "dog": ["dog2"]}
    assert ds.pairs(within_class=True) == [("cat0", "cat1"), ("cat0", "cat10"), ("cat1", "cat10")]
    assert len(ds.pairs()) == 6 and len(ds.pairs(ordered=True)) == 12
    assert ("cat10", "cat0") in ds.pairs(within_class=True, ordered=True)
    assert torch.equal(ds.correspondence("cat1"), torch.arange(2, 42))
    gt = ds.ground_truth("cat0", "cat10")
    assert torch.equal(gt.src_idx, torch.arange(0, 40)) and torch.equal(gt.tgt_idx, torch.arange(1, 41))
    assert ds.has_correspondence("cat0") and not ds.has_correspondence("dog2")


def test_dataset_errors(tiny_dataset, tmp_path):
    ds = ShapeDataset(tiny_dataset)
    with pytest.raises(ValidationError, match=r"name: unknown shape 'cow' in .*"):
        ds["cow"]
    with pytest.raises(ValidationError, match="name: index 9 out of range for 4 shapes"):
        ds[9]
    with pytest.raises(FileFormatError, match=r"dog2\.vts: no ground-truth file for shape 'dog2'"):
        ds.ground_truth("cat0", "dog2")
    write_vts(tiny_dataset / "corres" / "cat1.vts", torch.arange(10))
    with pytest.raises(FileFormatError, match=r"cat0\.vts has 40 entries but cat1\.vts has 10"):
        ds.ground_truth("cat0", "cat1")
    write_vts(tiny_dataset / "corres" / "cat1.vts", torch.tensor([0, 42]))
    with pytest.raises(FileFormatError, match=r"cat1\.vts: line 2: index 43 exceeds the mesh's 42 vertices"):
        ds.correspondence("cat1")
    with pytest.raises(FileFormatError, match="not a dataset folder"):
        ShapeDataset(tmp_path / "nowhere")
    (tmp_path / "empty" / "off").mkdir(parents=True)
    with pytest.raises(FileFormatError, match="no shape files found"):
        ShapeDataset(tmp_path / "empty")


def test_identity_ground_truth(tiny_dataset):
    ds = ShapeDataset(tiny_dataset, correspondence="identity")
    assert ds.has_correspondence("dog2") and torch.equal(ds.correspondence("dog2"), torch.arange(42))
    gt = ds.ground_truth("cat0", "dog2")
    assert torch.equal(gt.src_idx, gt.tgt_idx)
    with pytest.raises(ValidationError, match="correspondence: expected 'vts' or 'identity', got 'auto'"):
        ShapeDataset(tiny_dataset, correspondence="auto")


def test_deform_sph_identity():
    ds = ShapeDataset(shared_path("deform_sph"), correspondence="identity")
    assert len(ds) == 64 and ds.names[:3] == ["deform_sph_1", "deform_sph_2", "deform_sph_3"]
    a, b = ds[0], ds[-1]
    assert a.verts.shape == b.verts.shape == (1922, 3) and torch.equal(a.faces, b.faces)
    assert torch.equal(ds.ground_truth(0, 63).src_idx, torch.arange(1922))


def test_default_class_of():
    assert [default_class_of(n) for n in ["cat10", "tr_reg_003", "david", "muybridge_014_01", "12"]] == [
        "cat", "tr_reg", "david", "muybridge", "12"
    ]


def test_shipped_pair_through_dataset():
    ds = ShapeDataset(ROOT / "data" / "pair")
    assert ds.names == ["bumps_0", "bumps_1"] and ds.pairs(within_class=True) == [("bumps_0", "bumps_1")]
    src, tgt = ds["bumps_0"], ds["bumps_1"]
    gt = ds.ground_truth("bumps_0", "bumps_1")
    ref = bumpy_pair(src.verts.shape[0], dtype=torch.float32)
    assert torch.allclose(tgt.verts[gt.tgt_idx], ref.target.verts[ref.tgt_idx], atol=1e-6)
    assert torch.allclose(src.verts[gt.src_idx], ref.source.verts[ref.src_idx], atol=1e-6)


# -- real datasets (skipped where ../shared/data is absent) -----------------------------------------------
def test_faust_r():
    ds = ShapeDataset(shared_path("FAUST_r"))
    assert len(ds) == 80 and ds.names[0] == "tr_reg_000" and ds.names[-1] == "tr_reg_079"
    assert ds.pairs(within_class=True) == ds.pairs() and len(ds.pairs()) == 80 * 79 // 2
    for name in ds.names:  # 80 shapes, 5,000 ground-truth points each, checked against each OFF header
        c = ds.correspondence(name)
        assert c.shape == (5000,) and int(c.min()) >= 0
    a, b = ds["tr_reg_000"], ds["tr_reg_001"]
    gt = ds.ground_truth("tr_reg_000", "tr_reg_001")
    assert gt.src_idx.shape == gt.tgt_idx.shape == (5000,)
    assert int(gt.src_idx.max()) < a.verts.shape[0] and int(gt.tgt_idx.max()) < b.verts.shape[0]
    # same template point on two poses of one body: matched points are much closer than random pairs
    d_gt = (a.verts[gt.src_idx] - b.verts[gt.tgt_idx]).norm(dim=1).median()
    d_rand = (a.verts[gt.src_idx] - b.verts[gt.tgt_idx.roll(1000)]).norm(dim=1).median()
    assert d_gt < 0.3 * d_rand
    first = (Path(ds.correspondence_path(0)).read_text().split()[0])
    assert int(ds.correspondence(0)[0]) == int(first) - 1


def test_tosca_r_pairs_within_class_and_smal_r():
    tosca = ShapeDataset(shared_path("TOSCA_r"))
    assert len(tosca) == 76
    classes = tosca.classes()
    assert set(classes) == {"cat", "centaur", "david", "dog", "horse", "michael", "victoria", "wolf"}
    pairs = tosca.pairs(within_class=True)
    assert all(default_class_of(a) == default_class_of(b) for a, b in pairs)
    assert len(pairs) == sum(len(v) * (len(v) - 1) // 2 for v in classes.values())
    assert tosca.names.index("cat2") < tosca.names.index("cat10")  # natural order
    gt = tosca.ground_truth("cat0", "cat1")
    assert gt.src_idx.shape == gt.tgt_idx.shape
    smal = ShapeDataset(shared_path("SMAL_r"))
    assert len(smal) == 32 and smal.correspondence(0).shape == (3889,)


# -- fsaverage5 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("surface", ["white", "pial", "sphere", "inflated"])
def test_fsaverage5_surfaces_share_faces(surface):
    pytest.importorskip("nibabel")
    m = load_fsaverage5(surface, dtype=torch.float64)
    assert m.verts.shape == (10242, 3) and m.faces.shape == (20480, 3)
    assert torch.equal(m.faces, load_fsaverage5("white").faces)
    if surface == "sphere":  # FreeSurfer's sphere has radius 100 mm
        assert torch.allclose(m.verts.norm(dim=1), torch.full((10242,), 100.0, dtype=torch.float64), rtol=1e-3)


def test_fsaverage5_from_nilearn_package_matches_shared_copy():
    pytest.importorskip("nibabel")
    shared = shared_path("fsaverage5")
    nl = [c for c in fsaverage5_candidates() if "nilearn" in str(c)]
    if not nl or not (nl[0] / "white_left.gii.gz").is_file():
        pytest.skip("nilearn is not installed (its package ships fsaverage5)")
    a = load_fsaverage5("white", root=shared)
    b = load_fsaverage5("white", root=nl[0])
    assert torch.equal(a.verts, b.verts) and torch.equal(a.faces, b.faces)
    right = load_fsaverage5("pial", "right")  # only in the nilearn copy
    assert right.verts.shape == (10242, 3) and float(right.verts[:, 0].mean()) > 0 > float(a.verts[:, 0].mean())


def test_fsaverage5_errors(tmp_path):
    with pytest.raises(ValidationError, match=r"surface: expected one of \['inflated', 'pial', 'sphere', 'white'\]"):
        load_fsaverage5("midthickness")
    with pytest.raises(ValidationError, match=r"hemi: expected one of \['left', 'right'\], got 'both'"):
        load_fsaverage5(hemi="both")
    with pytest.raises(FileFormatError, match=r"white_left\.gii\.gz not found offline in .*; install nilearn"):
        load_fsaverage5(root=tmp_path)


def test_fsaverage5_is_loaded_like_any_gifti():
    pytest.importorskip("nibabel")
    p = shared_path("fsaverage5", "sphere_left.gii.gz")
    assert torch.equal(load(p).verts, load_fsaverage5("sphere", root=p.parent).verts)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=200))
def test_vts_round_trip_property(values):
    with tempfile.TemporaryDirectory() as d:
        idx = torch.tensor(values, dtype=torch.long)
        p = write_vts(Path(d) / "x.vts", idx)
        assert torch.equal(read_vts(p), idx)
        assert [int(t) for t in p.read_text().split()] == [v + 1 for v in values]
