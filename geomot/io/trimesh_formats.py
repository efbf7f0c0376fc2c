"""OFF, OBJ, PLY and STL: parsed by geomot (:mod:`geomot.io.mesh_parsers` and the OBJ parser below); OFF, OBJ
and STL written by trimesh (``process=False``), PLY written here.

Vertex ``i`` of the file is vertex ``i`` of the result, which correspondence files (``.vts``) rely on; nothing is
merged or dropped (trimesh's OBJ loader splits vertices at texture seams or drops unreferenced ones, hence the
parser here). A bad file raises :class:`~geomot._core.errors.FileFormatError` naming the line and what was expected.
PLY is written here (binary, in the positions' own precision, with normals for clouds). Polygons with more than
three corners are fan-triangulated. STL stores a triangle soup: its corners are merged after loading, vertices
numbered in the order of their first use by the faces; writing a mesh whose vertex order differs from that warns.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np

from geomot._core.errors import FileFormatError
from geomot.io._formats import FileFormat, RawShape
from geomot.io._optional import require
from geomot.io.mesh_parsers import _floats, merge_soup, parse_off, parse_ply, parse_stl

__all__ = ["MESH_FORMATS"]


def _trimesh():
    return require("trimesh", what="reading and writing OFF/OBJ/PLY/STL files")


def _obj_index(token: str, n_defined: int, path: Path, lineno: int) -> int:
    """0-based vertex index of one ``f`` entry (``i``, ``i/t``, ``i//n``, ``i/t/n``; negative = relative)."""
    head = token.split("/", 1)[0]
    try:
        i = int(head)
    except ValueError:
        raise FileFormatError(f"{path}: line {lineno}: bad face entry {token!r}") from None
    if i == 0:
        raise FileFormatError(f"{path}: line {lineno}: OBJ indices are 1-based, got 0")
    j = i - 1 if i > 0 else n_defined + i
    if j < 0:
        raise FileFormatError(f"{path}: line {lineno}: relative index {i} points before the first vertex")
    return j


_OBJ_SLASH = re.compile(r"/\S*")


def _read_obj_slow(text: str, path: Path) -> RawShape:
    """Line-by-line parse: polygons, relative indices, comments; exact error messages with line numbers."""
    verts: list[tuple[int, list[str]]] = []
    faces: list[tuple[int, int, int]] = []
    face_lines: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tok = line.split("#", 1)[0].split()
        if not tok:
            continue
        if tok[0] == "v":
            if len(tok) < 4:
                raise FileFormatError(f"{path}: line {lineno}: a vertex needs 3 coordinates, got {line.strip()!r}")
            verts.append((lineno, tok[1:4]))
        elif tok[0] == "f":
            if len(tok) < 4:
                raise FileFormatError(f"{path}: line {lineno}: a face needs at least 3 vertices, got {line.strip()!r}")
            idx = [_obj_index(t, len(verts), path, lineno) for t in tok[1:]]
            faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
            face_lines += [lineno] * (len(idx) - 2)
    if not verts:
        raise FileFormatError(f"{path}: no geometry could be read from the file (no 'v' lines)")
    v = _floats(verts, 3, path, "vertex (x y z)")
    if not faces:
        return RawShape(v, None)
    f = np.array(faces, dtype=np.int64)
    bad = np.flatnonzero((f >= len(v)).any(axis=1))
    if bad.size:
        i = int(bad[0])
        raise FileFormatError(f"{path}: line {face_lines[i]}: a face refers to vertex {int(f[i].max()) + 1} "
                              f"(1-based), but the file has {len(v)} vertices")
    return RawShape(v, f)


def read_obj(path: Path) -> RawShape:
    """Positions (``v``) and faces (``f``, fan-triangulated) of a Wavefront OBJ, every ``v`` line kept in order.

    Parsed here rather than by trimesh, whose OBJ loader drops unreferenced vertices of textured files and would
    shift the indices that correspondence files refer to. Texture coordinates, normals, groups and materials are
    ignored. Files made only of plain triangles (the common case) are parsed with regular expressions; anything
    else (polygons, relative indices, comments on data lines), and any file with an error, line by line so that
    the error names its line.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").replace("\\\n", " ")
    except UnicodeDecodeError as e:
        raise FileFormatError(
            f"{path}: not a text OBJ file: byte 0x{data[e.start]:02x} at offset {e.start} is not UTF-8 text"
        ) from None
    fast = _read_obj_fast(text)
    return _read_obj_slow(text, path) if fast is None else fast


def _read_obj_fast(text: str) -> RawShape | None:
    """Vectorised parse of the common case (``v x y z`` lines, triangles with positive indices, no comments on
    data lines); ``None`` when the file is anything else, which then goes through the line-by-line parser."""
    lines = text.splitlines()
    vl = [ln[2:] for ln in lines if ln.startswith(("v ", "v\t"))]
    fl = [ln[2:] for ln in lines if ln.startswith(("f ", "f\t"))]
    if not vl or "#" in "".join(vl) or "#" in "".join(fl):
        return None
    try:
        v = np.loadtxt(io.StringIO("\n".join(vl)), dtype=np.float64, ndmin=2)
        if v.shape[1] != 3:
            return None
        if not fl:
            return RawShape(v, None)
        joined = "\n".join(fl)
        if "-" in joined:
            return None
        f = np.loadtxt(io.StringIO(_OBJ_SLASH.sub("", joined) if "/" in joined else joined), dtype=np.int64, ndmin=2)
    except ValueError:
        return None
    if f.shape[1] != 3:
        return None
    if f.min() < 1 or f.max() > len(v):
        return None
    return RawShape(v, f - 1)


def read_off(path: Path) -> RawShape:
    return parse_off(path)


def read_ply(path: Path) -> RawShape:
    """PLY mesh or point cloud; stored vertex normals (``nx ny nz``) are kept for point clouds."""
    return parse_ply(path)


def read_stl(path: Path) -> RawShape:
    """STL triangle soup; corners merged, vertices numbered in first-use order."""
    return parse_stl(path)


def _export(path: Path, shape: RawShape, file_type: str, **kwargs) -> None:
    trimesh = _trimesh()
    tm = trimesh.Trimesh(vertices=shape.verts, faces=shape.faces, process=False)
    data = trimesh.exchange.export.export_mesh(tm, None, file_type=file_type, **kwargs)
    mode = "w" if isinstance(data, str) else "wb"
    with open(path, mode) as fh:
        fh.write(data)


def write_off(path: Path, shape: RawShape) -> None:
    _export(path, shape, "off", digits=10)


def write_obj(path: Path, shape: RawShape) -> None:
    _export(path, shape, "obj", include_normals=False, include_texture=False, include_color=False, digits=10)


def write_stl(path: Path, shape: RawShape) -> None:
    """Binary STL. STL has no shared vertices: reading the file back merges the corners and numbers the vertices in
    the order of their first use by the faces; a warning says so when that order (or the vertex count, for
    unreferenced vertices or corners equal in float32) differs from this mesh's."""
    _export(path, shape, "stl")
    f = np.asarray(shape.faces)
    v32 = np.asarray(shape.verts, dtype=np.float32)
    back_verts, back_faces = merge_soup(v32[f].reshape(-1, 3))
    if len(back_verts) != len(v32):
        why = f"{len(back_verts)} vertices, not {len(v32)} (unreferenced vertices, or corners equal in float32)"
    elif not np.array_equal(back_faces, f):
        why = "vertices numbered in the order of their first use by the faces, not in this mesh's order"
    else:
        return
    warnings.warn(
        f"{path}: STL stores no shared vertices; loading this file back gives {why}; save as .ply, .off or "
        ".obj to keep the vertices as they are",
        UserWarning,
        stacklevel=3,
    )


def write_ply(path: Path, shape: RawShape) -> None:
    """Binary little-endian PLY written here: ``x y z`` (+ ``nx ny nz`` for clouds with normals) in the positions'
    precision (``float`` or ``double``, so float64 meshes round-trip exactly), and for meshes a ``face`` element
    with ``uchar``-counted ``int`` index lists."""
    cols = [shape.verts] if shape.normals is None else [shape.verts, shape.normals]
    arr = np.ascontiguousarray(np.concatenate(cols, axis=1))
    kind = "double" if arr.dtype == np.float64 else "float"
    arr = arr.astype("<f8" if kind == "double" else "<f4", copy=False)
    names = ["x", "y", "z"] + ([] if shape.normals is None else ["nx", "ny", "nz"])
    header = ["ply", "format binary_little_endian 1.0", "comment written by geomot", f"element vertex {len(arr)}"]
    header += [f"property {kind} {n}" for n in names]
    body = [arr.tobytes()]
    if shape.faces is not None:
        faces = np.zeros(len(shape.faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        faces["n"] = 3
        faces["idx"] = shape.faces
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
        body.append(faces.tobytes())
    buf = io.BytesIO()
    buf.write(("\n".join([*header, "end_header"]) + "\n").encode("ascii"))
    for b in body:
        buf.write(b)
    path.write_bytes(buf.getvalue())


MESH_FORMATS: tuple[FileFormat, ...] = (
    FileFormat("OFF", (".off",), read_off, write_off, meshes=True, points=False, backend="trimesh"),
    FileFormat("OBJ", (".obj",), read_obj, write_obj, meshes=True, points=False, backend="geomot"),
    FileFormat("PLY", (".ply",), read_ply, write_ply, meshes=True, points=True, backend="trimesh"),
    FileFormat("STL", (".stl",), read_stl, write_stl, meshes=True, points=False, backend="trimesh"),
)
