"""Readers fed random bytes, truncations and single-byte corruptions of valid files: each reader raises only
geomot's FileFormatError, naming the file (a file that parses into NaN/Inf coordinates too: its data fails the
checks of the structures, and ``load`` says which)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geomot.errors import FileFormatError
from geomot.io import file_format, load, read_vts, save
from geomot.structures import Mesh, PointCloud
from tests.conftest import icosphere

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = [".off", ".obj", ".ply", ".stl", ".npy", ".npz", ".xyz", ".vts"]


def _valid_bytes() -> dict[str, bytes]:
    """One small valid file per format (ASCII and binary PLY, binary STL, ASCII STL)."""
    mesh = Mesh(*icosphere(0))
    cloud = PointCloud(torch.randn(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    out = {}
    with tempfile.TemporaryDirectory() as d, pytest.warns(UserWarning, match="STL stores no shared vertices"):
        for suffix in (".off", ".obj", ".ply", ".stl", ".npz"):
            out[suffix] = save(mesh, Path(d) / f"m{suffix}").read_bytes()
        out[".npy"] = save(cloud, Path(d) / "c.npy").read_bytes()
        out[".xyz"] = save(cloud, Path(d) / "c.xyz").read_bytes()
    v, f = mesh.verts.numpy(), mesh.faces.numpy()
    header = (f"ply\nformat ascii 1.0\nelement vertex {len(v)}\nproperty double x\nproperty double y\n"
              f"property double z\nelement face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    out["ascii.ply"] = (header + "".join(f"{a} {b} {c}\n" for a, b, c in v)
                        + "".join(f"3 {a} {b} {c}\n" for a, b, c in f)).encode()
    facets = "".join(
        "facet normal 0 0 1\nouter loop\n" + "".join(f"vertex {x} {y} {z}\n" for x, y, z in v[t]) + "endloop\nendfacet\n"
        for t in f
    )
    out["ascii.stl"] = f"solid s\n{facets}endsolid s\n".encode()
    out[".vts"] = b"".join(f"{i + 1}\n".encode() for i in range(12))
    return out


VALID = _valid_bytes()


OUTCOMES = {"read", "rejected"}


def _read(name: str, data: bytes) -> str:
    """Read ``data`` as a file called ``name``: ``"read"`` or ``"rejected"`` (a :class:`FileFormatError` naming the
    file). Any other exception propagates and fails the calling test."""
    suffix = "." + name.rsplit(".", 1)[-1]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"f{suffix}"
        p.write_bytes(data)
        if suffix != ".vts":  # the reader alone raises FileFormatError, never numpy's / trimesh's errors
            try:
                file_format(p).read(p)
            except FileFormatError as e:
                assert str(p) in str(e)
        try:
            if suffix == ".vts":
                read_vts(p)
            else:
                load(p)
        except FileFormatError as e:
            assert str(p) in str(e)
            return "rejected"
        return "read"


def test_valid_files_load():
    for name, data in VALID.items():
        assert _read(name, data) == "read", name
    with tempfile.TemporaryDirectory() as d:
        for name in ("ascii.ply", "ascii.stl"):
            p = Path(d) / f"f.{name.rsplit('.', 1)[-1]}"
            p.write_bytes(VALID[name])
            assert isinstance(load(p), Mesh)


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), data=st.binary(max_size=400))
def test_random_bytes(name, data):
    assert _read(name, data) in OUTCOMES


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_truncations(name, data):
    full = VALID[name]
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1))
    assert _read(name, full[:cut]) in OUTCOMES


@FUZZ
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_single_byte_corruptions(name, data):
    full = bytearray(VALID[name])
    i = data.draw(st.integers(min_value=0, max_value=len(full) - 1))
    full[i] = data.draw(st.integers(min_value=0, max_value=255))
    assert _read(name, bytes(full)) in OUTCOMES


@FUZZ
@given(name=st.sampled_from([n for n in sorted(VALID) if n not in (".npy", ".npz", ".stl", ".ply")]),
       data=st.data())
def test_text_files_with_garbled_tokens(name, data):
    """Text formats with one whitespace-separated token replaced by a random word."""
    lines = VALID[name].decode().splitlines()
    i = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    tok = lines[i].split() or [""]
    j = data.draw(st.integers(min_value=0, max_value=len(tok) - 1))
    tok[j] = data.draw(st.sampled_from(["", "x", "-1", "1e999", "nan", "3.5", "99999", "0x1f", "1/2/3"]))
    lines[i] = " ".join(tok)
    assert _read(name, "\n".join(lines).encode()) in OUTCOMES


def test_float_overflow_in_a_text_file_is_a_file_format_error(tmp_path):
    p = tmp_path / "big.off"
    p.write_text("OFF\n3 1 0\n0 0 1e999\n1 0 0\n0 1 0\n3 0 1 2\n")
    with pytest.raises(FileFormatError, match=r"big\.off: verts: contains 1 NaN/Inf"):
        load(p)


def test_npy_header_that_python_cannot_parse_is_a_file_format_error(tmp_path):
    """numpy parses the header with Python's tokenizer: a null byte in place of ``{`` makes it raise TokenError."""
    data = bytearray(VALID[".npy"])
    data[data.index(b"{")] = 0  # numpy then fails in tokenize (TokenError), not with a ValueError
    p = tmp_path / "bad.npy"
    p.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="corrupted header"):
        load(p)
