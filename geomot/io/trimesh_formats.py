"""OFF, OBJ, PLY and STL: read through trimesh (a core dependency) except OBJ; written by trimesh except PLY.

Readers never let trimesh reorder or merge vertices (``process=False``): vertex ``i`` of the file is vertex ``i``
of the result, which correspondence files (``.vts``) rely on. OBJ is parsed here (trimesh's OBJ loader splits
vertices at texture seams or drops unreferenced ones) and written by trimesh; PLY is written here (binary, in the
positions' own precision, with normals for clouds). Polygons with more than three corners
are fan-triangulated; in PLY files with mixed polygon sizes the triangles may come out in a different order than
the polygons. STL stores a triangle soup, so its duplicated corners are merged after loading.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from geomot._core.errors import FileFormatError
from geomot.io._formats import FileFormat, RawShape
from geomot.io._optional import require

__all__ = ["MESH_FORMATS"]


def _trimesh():
    return require("trimesh", what="reading and writing OFF/OBJ/PLY/STL files")


def _raw_from_trimesh(obj: object, path: Path) -> RawShape:
    """RawShape of what ``trimesh.load`` returned (Trimesh, PointCloud or Scene)."""
    trimesh = _trimesh()
    if isinstance(obj, trimesh.Scene):
        geoms = list(obj.geometry.values())
        if not geoms:
            raise FileFormatError(f"{path}: no geometry could be read from the file (empty or corrupted)")
        if len(geoms) > 1:
            obj = trimesh.util.concatenate(geoms)
        else:
            obj = geoms[0]
    verts = np.asarray(obj.vertices)
    faces = getattr(obj, "faces", None)
    if faces is not None:
        faces = np.asarray(faces)
        if faces.size == 0:
            faces = None
    return RawShape(verts, faces, None)


def _load(path: Path, file_type: str, **kwargs) -> object:
    trimesh = _trimesh()
    return trimesh.load(str(path), file_type=file_type, process=False, **kwargs)


def _off_declared_counts(path: Path) -> tuple[int, int, int] | None:
    """``(n_verts, n_faces, n_data_lines)`` declared by / found in an ASCII OFF file, or None if no header."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    head_lines = [ln.split("#", 1)[0].split() for ln in lines[:2]]
    if not head_lines or not head_lines[0] or not head_lines[0][0].upper().endswith("OFF"):
        return None
    head, n_rest = head_lines[0][1:], len(lines) - 1
    if len(head) < 2:
        if n_rest == 0:
            raise FileFormatError(f"{path}: OFF header without vertex/face counts")
        head, n_rest = head_lines[1], n_rest - 1
    try:
        nv, nf = int(head[0]), int(head[1])
    except (ValueError, IndexError):
        raise FileFormatError(f"{path}: bad OFF counts line {' '.join(head)!r}") from None
    return nv, nf, n_rest


def read_off(path: Path) -> RawShape:
    counts = _off_declared_counts(path)
    raw = _raw_from_trimesh(_load(path, "off"), path)
    if counts is not None:
        nv, nf, ndata = counts
        if ndata < nv + nf:
            raise FileFormatError(
                f"{path}: truncated OFF file: the header declares {nv} vertices and {nf} faces, "
                f"but only {ndata} data lines follow"
            )
        if raw.verts.shape[0] != nv:
            raise FileFormatError(f"{path}: the header declares {nv} vertices, {raw.verts.shape[0]} were read")
    return raw


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


def _read_obj_slow(text: str, path: Path) -> tuple[list[list[str]], list[tuple[int, int, int]]]:
    """Line-by-line parse: polygons, relative indices, comments; exact error messages with line numbers."""
    verts: list[list[str]] = []
    faces: list[tuple[int, int, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        tok = line.split("#", 1)[0].split()
        if not tok:
            continue
        if tok[0] == "v":
            if len(tok) < 4:
                raise FileFormatError(f"{path}: line {lineno}: a vertex needs 3 coordinates, got {line.strip()!r}")
            verts.append(tok[1:4])
        elif tok[0] == "f":
            if len(tok) < 4:
                raise FileFormatError(f"{path}: line {lineno}: a face needs at least 3 vertices, got {line.strip()!r}")
            idx = [_obj_index(t, len(verts), path, lineno) for t in tok[1:]]
            faces += [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]
    return verts, faces


def read_obj(path: Path) -> RawShape:
    """Positions (``v``) and faces (``f``, fan-triangulated) of a Wavefront OBJ, every ``v`` line kept in order.

    Parsed here rather than by trimesh, whose OBJ loader drops unreferenced vertices of textured files and would
    shift the indices that correspondence files refer to. Texture coordinates, normals, groups and materials are
    ignored. Files made only of plain triangles (the common case) are parsed with regular expressions; anything
    else (polygons, relative indices, comments on data lines) line by line.
    """
    with open(path, encoding="utf-8", errors="strict") as fh:
        text = fh.read().replace("\\\n", " ")
    fast = _read_obj_fast(text)
    if fast is None:
        verts, tris = _read_obj_slow(text, path)
        if not verts:
            raise FileFormatError(f"{path}: no geometry could be read from the file (no 'v' lines)")
        try:
            v = np.array(verts, dtype=np.float64)
        except ValueError as e:
            raise FileFormatError(f"{path}: bad vertex coordinate ({e})") from None
        return RawShape(v, np.array(tris, dtype=np.int64) if tris else None)
    return fast


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
    if f.min() < 1:
        return None
    return RawShape(v, f - 1)


def read_stl(path: Path) -> RawShape:
    obj = _load(path, "stl")
    if isinstance(obj, _trimesh().Trimesh) and len(obj.faces):
        obj.merge_vertices()
    return _raw_from_trimesh(obj, path)


def _ply_header(path: Path) -> tuple[str, dict[str, int], int]:
    """``(format, {element: count}, number of non-empty data lines (ASCII only, else 0))`` of a PLY file."""
    with open(path, "rb") as fh:
        raw = fh.read()
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise FileFormatError(f"{path}: not a PLY file (no 'ply' magic / 'end_header' line)")
    counts: dict[str, int] = {}
    fmt = ""
    for line in raw[:end].decode("ascii", errors="replace").splitlines():
        tok = line.split()
        if len(tok) >= 2 and tok[0] == "format":
            fmt = tok[1]
        elif len(tok) == 3 and tok[0] == "element":
            counts[tok[1]] = int(tok[2]) if tok[2].isdigit() else -1
    n_lines = 0
    if fmt == "ascii":
        n_lines = sum(1 for ln in raw[end:].splitlines()[1:] if ln.strip())
    return fmt, counts, n_lines


def read_ply(path: Path) -> RawShape:
    """PLY mesh or point cloud; stored vertex normals (``nx ny nz``) are kept for point clouds."""
    trimesh = _trimesh()
    fmt, counts, n_lines = _ply_header(path)
    if fmt == "ascii" and n_lines < sum(counts.values()):
        raise FileFormatError(
            f"{path}: truncated PLY file: the header declares {counts} elements, but only {n_lines} data lines follow"
        )
    with open(path, "rb") as fh:
        data = trimesh.exchange.ply.load_ply(fh)
    verts = data.get("vertices")
    if verts is None:
        raise FileFormatError(f"{path}: the PLY file has no vertex element")
    faces = data.get("faces")
    faces = None if faces is None or np.asarray(faces).size == 0 else np.asarray(faces)
    if faces is not None and faces.ndim == 2 and faces.shape[1] > 3:  # all polygons of one size k: fan split
        k = faces.shape[1]
        faces = np.concatenate([faces[:, [0, i, i + 1]] for i in range(1, k - 1)], axis=1).reshape(-1, 3)
    n_faces = counts.get("face", 0)
    if len(verts) != counts.get("vertex", len(verts)) or (faces is None and n_faces) or (
        faces is not None and len(faces) < n_faces
    ):
        got = 0 if faces is None else len(faces)
        raise FileFormatError(
            f"{path}: the header declares {counts.get('vertex')} vertices and {n_faces} faces, read {len(verts)} "
            f"vertices and {got} triangles (truncated or corrupted file?)"
        )
    normals = data.get("vertex_normals")
    normals = None if normals is None else np.asarray(normals)
    return RawShape(np.asarray(verts), faces, normals)


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
    _export(path, shape, "stl")


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
