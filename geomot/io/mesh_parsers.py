"""Parsers of OFF, PLY (ASCII and binary) and STL (ASCII and binary) written for their error messages.

Each reader returns a :class:`~geomot.io._formats.RawShape` or raises :class:`~geomot._core.errors.FileFormatError`
naming the file, the line (text files) or byte offset (binary files), what was expected and what was found.
Nothing else escapes: no ``ValueError`` from numpy, no ``UnicodeDecodeError``, no ``struct.error``.

* OFF (``OFF``, ``COFF``, ``NOFF``... header; counts on the header line or the next one; ``#`` comments): the first
  three numbers of a vertex line are its position (colours, normals after them are ignored); a face line is
  ``n i_1 ... i_n`` (0-based), polygons are fan-triangulated.
* PLY: a ``vertex`` element with ``x y z`` (``nx ny nz`` kept when present) and a ``face`` element with a
  ``vertex_indices`` (or ``vertex_index``) list; other elements are skipped. ASCII holds one element per line.
* STL: a triangle soup. Corners with bit-identical positions are merged into one vertex, numbered in the order of
  their first use (face by face, corner by corner), so a mesh whose vertices are numbered in first-use order
  comes back with the same vertex order (the STL writer warns when the order cannot be kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geomot._core.errors import FileFormatError
from geomot.io._formats import RawShape

__all__ = ["first_use_order", "merge_soup", "parse_off", "parse_ply", "parse_stl"]


def _text(data: bytes, path: Path, fmt: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileFormatError(
            f"{path}: not a text {fmt} file: byte 0x{data[e.start]:02x} at offset {e.start} is not UTF-8 text"
        ) from None


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, tokens)`` of the non-empty lines, ``#`` comments removed."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        tok = line.split("#", 1)[0].split()
        if tok:
            out.append((i, tok))
    return out


def _int(tok: str, path: Path, lineno: int, what: str) -> int:
    try:
        return int(tok)
    except ValueError:
        raise FileFormatError(f"{path}: line {lineno}: expected {what} (an integer), found {tok!r}") from None


def _floats(rows: list[tuple[int, list[str]]], n: int, path: Path, what: str) -> np.ndarray:
    """``(len(rows), n)`` float64 array of the first ``n`` tokens of each row; errors name the line."""
    for lineno, tok in rows:
        if len(tok) < n:
            raise FileFormatError(
                f"{path}: line {lineno}: a {what} needs {n} numbers, found {len(tok)}: {' '.join(tok)!r}"
            )
    try:
        return np.array([tok[:n] for _, tok in rows], dtype=np.float64).reshape(len(rows), n)
    except ValueError:
        for lineno, tok in rows:
            for t in tok[:n]:
                try:
                    float(t)
                except ValueError:
                    msg = f"{path}: line {lineno}: expected a number in a {what}, found {t!r}"
                    raise FileFormatError(msg) from None
        raise  # pragma: no cover - numpy and float() accept the same strings


def _fan(polys: list[list[int]]) -> np.ndarray:
    if isinstance(polys, np.ndarray):  # (F, k) polygons of one size
        k = polys.shape[1]
        return np.stack([polys[:, [0, i, i + 1]] for i in range(1, k - 1)], axis=1).reshape(-1, 3)
    tris = [(p[0], p[k], p[k + 1]) for p in polys for k in range(1, len(p) - 1)]
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def _check_range(faces: np.ndarray, n_verts: int, path: Path, where: str) -> None:
    if faces.size and (faces.min() < 0 or faces.max() >= n_verts):
        bad = int(faces.min()) if faces.min() < 0 else int(faces.max())
        raise FileFormatError(
            f"{path}: {where}a face refers to vertex {bad}, but the file has {n_verts} vertices (0..{n_verts - 1})"
        )


# -- OFF -------------------------------------------------------------------------------------------------------
def _off_fast(text: str) -> RawShape | None:
    """Vectorised parse of the common case (no comments, one header, vertex lines of equal length, triangles);
    ``None`` for anything else, which then goes through the line-by-line parser and its messages."""
    if "#" in text:
        return None
    lines = [ln for ln in text.splitlines() if ln and not ln.isspace()]
    head = lines[0].split() if lines else []
    if not head or head[0] not in ("OFF", "COFF", "NOFF", "CNOFF"):
        return None
    start = 1 if len(head) > 2 else 2
    counts = head[1:] if len(head) > 2 else (lines[1].split() if len(lines) > 1 else [])
    try:
        nv, nf = int(counts[0]), int(counts[1])
        if nv <= 0 or nf < 0 or len(lines) < start + nv + nf:
            return None
        # both chunks are non-empty here (nv > 0, and the faces are read only when nf > 0), so loadtxt never
        # warns about empty input
        v = np.loadtxt(lines[start:start + nv], dtype=np.float64, ndmin=2)
        f = np.loadtxt(lines[start + nv:start + nv + nf], dtype=np.int64, ndmin=2) if nf else None
    except (ValueError, IndexError):
        return None
    if v.shape != (nv, v.shape[1]) or v.shape[1] < 3:
        return None
    if f is None:
        return RawShape(v[:, :3])
    if f.shape != (nf, f.shape[1]) or f.shape[1] < 4 or not (f[:, 0] == 3).all():
        return None
    faces = np.ascontiguousarray(f[:, 1:4])
    if faces.min() < 0 or faces.max() >= nv:
        return None
    return RawShape(np.ascontiguousarray(v[:, :3]), faces)


def parse_off(path: Path) -> RawShape:
    """Read an ASCII OFF file (see the module docstring)."""
    text = _text(path.read_bytes(), path, "OFF")
    fast = _off_fast(text)
    if fast is not None:
        return fast
    rows = _rows(text)
    if not rows:
        raise FileFormatError(f"{path}: empty OFF file (no 'OFF' header)")
    lineno, head = rows[0]
    if not head[0].upper().endswith("OFF"):
        raise FileFormatError(f"{path}: line {lineno}: expected the 'OFF' header keyword, found {head[0]!r}")
    if any(t.upper() == "BINARY" for t in head[1:]):
        raise FileFormatError(f"{path}: line {lineno}: binary OFF files are not supported; convert to ASCII OFF/PLY")
    counts, start = head[1:], 1
    if len(counts) < 2:
        if len(rows) < 2:
            raise FileFormatError(f"{path}: OFF header without vertex/face counts")
        lineno, counts = rows[1]
        start = 2
    if len(counts) < 2:
        raise FileFormatError(f"{path}: line {lineno}: bad OFF counts line {' '.join(counts)!r}: expected "
                              "'n_vertices n_faces [n_edges]'")
    try:
        nv, nf = int(counts[0]), int(counts[1])
    except ValueError:
        raise FileFormatError(f"{path}: line {lineno}: bad OFF counts line {' '.join(counts)!r}: expected "
                              "'n_vertices n_faces [n_edges]'") from None
    if nv < 0 or nf < 0:
        raise FileFormatError(f"{path}: line {lineno}: negative OFF counts {nv} vertices, {nf} faces")
    data = rows[start:]
    if len(data) < nv + nf:
        last = data[-1][0] if data else lineno
        raise FileFormatError(
            f"{path}: truncated OFF file: the header (line {lineno}) declares {nv} vertices and {nf} faces, "
            f"but only {len(data)} data lines follow (the file ends at line {last})"
        )
    verts = _floats(data[:nv], 3, path, "vertex (x y z)")
    polys: list[list[int]] = []
    for ln, tok in data[nv:nv + nf]:
        n = _int(tok[0], path, ln, "the number of corners of a face")
        if n < 3:
            raise FileFormatError(f"{path}: line {ln}: a face needs at least 3 vertices, found a count of {n}")
        if len(tok) < n + 1:
            raise FileFormatError(
                f"{path}: line {ln}: a face of {n} vertices needs {n} indices, found {len(tok) - 1}: {' '.join(tok)!r}"
            )
        idx = [_int(t, path, ln, "a vertex index") for t in tok[1:n + 1]]
        if min(idx) < 0 or max(idx) >= nv:
            bad = min(idx) if min(idx) < 0 else max(idx)
            raise FileFormatError(
                f"{path}: line {ln}: a face refers to vertex {bad}, but the file has {nv} vertices (0..{nv - 1})"
            )
        polys.append(idx)
    return RawShape(verts, _fan(polys) if polys else None)


# -- PLY -------------------------------------------------------------------------------------------------------
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2", "ushort": "u2",
    "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4", "float": "f4", "float32": "f4",
    "double": "f8", "float64": "f8",
}
_PLY_FORMATS = {"ascii": "", "binary_little_endian": "<", "binary_big_endian": ">"}


class _Element:
    def __init__(self, name: str, count: int) -> None:
        self.name, self.count = name, count
        self.props: list[tuple[str, str, str | None]] = []  # (name, value type, list count type or None)


def _ply_type(tok: str, path: Path, lineno: int) -> str:
    if tok not in _PLY_TYPES:
        raise FileFormatError(
            f"{path}: line {lineno}: unknown PLY property type {tok!r}; expected one of {', '.join(_PLY_TYPES)}"
        )
    return _PLY_TYPES[tok]


def _ply_header(data: bytes, path: Path) -> tuple[str, list[_Element], int]:
    """``(format, elements, offset of the first data byte)``."""
    if not data.startswith(b"ply"):
        raise FileFormatError(f"{path}: not a PLY file (no 'ply' magic on line 1)")
    end = data.find(b"end_header")
    if end < 0:
        raise FileFormatError(f"{path}: not a PLY file or a truncated header (no 'end_header' line)")
    nl = data.find(b"\n", end)
    body = len(data) if nl < 0 else nl + 1
    text = data[:end].decode("ascii", errors="replace")
    fmt, elements = None, []
    for lineno, line in enumerate(text.splitlines(), 1):
        tok = line.split()
        if not tok or tok[0] in ("ply", "comment", "obj_info"):
            continue
        if tok[0] == "format":
            if len(tok) < 2 or tok[1] not in _PLY_FORMATS:
                raise FileFormatError(f"{path}: line {lineno}: unknown PLY format {line.strip()!r}; expected "
                                      "ascii, binary_little_endian or binary_big_endian")
            fmt = tok[1]
        elif tok[0] == "element":
            if len(tok) != 3 or not tok[2].isdigit():
                raise FileFormatError(f"{path}: line {lineno}: expected 'element NAME COUNT', found {line.strip()!r}")
            elements.append(_Element(tok[1], int(tok[2])))
        elif tok[0] == "property":
            if not elements:
                raise FileFormatError(f"{path}: line {lineno}: a property before any element")
            if len(tok) == 5 and tok[1] == "list":
                elements[-1].props.append((tok[4], _ply_type(tok[3], path, lineno), _ply_type(tok[2], path, lineno)))
            elif len(tok) == 3:
                elements[-1].props.append((tok[2], _ply_type(tok[1], path, lineno), None))
            else:
                raise FileFormatError(f"{path}: line {lineno}: expected 'property TYPE NAME' or 'property list "
                                      f"COUNT_TYPE TYPE NAME', found {line.strip()!r}")
        else:
            raise FileFormatError(f"{path}: line {lineno}: unexpected PLY header line {line.strip()!r}")
    if fmt is None:
        raise FileFormatError(f"{path}: the PLY header has no 'format' line")
    return fmt, elements, body


def _ply_ascii(data: bytes, body: int, elements: list[_Element], path: Path) -> dict[str, list]:
    n_header = data[:body].count(b"\n")
    lines = _text(data[body:], path, "PLY").splitlines()
    rows = [(n_header + i + 1, ln.split()) for i, ln in enumerate(lines) if ln.strip()]
    need = sum(e.count for e in elements)
    if len(rows) < need:
        declared = " + ".join(f"{e.count} {e.name}" for e in elements)
        raise FileFormatError(f"{path}: truncated PLY file: the header declares {declared} = {need} data lines, "
                              f"but only {len(rows)} follow")
    out: dict[str, list] = {}
    pos = 0
    for e in elements:
        chunk, pos = rows[pos:pos + e.count], pos + e.count
        if all(c is None for _, _, c in e.props):
            arr = _floats(chunk, len(e.props), path, f"{e.name} ({' '.join(p for p, _, _ in e.props)})")
            out[e.name] = [arr[:, i] for i in range(len(e.props))]
            continue
        cols: list[list] = [[] for _ in e.props]
        for ln, tok in chunk:
            k = 0
            for j, (name, _, count_type) in enumerate(e.props):
                if k >= len(tok):
                    raise FileFormatError(f"{path}: line {ln}: the {e.name} line ends before its {name!r} property")
                if count_type is None:
                    cols[j].append(tok[k])
                    k += 1
                    continue
                n = _int(tok[k], path, ln, f"the length of the {name!r} list")
                if n < 0 or k + 1 + n > len(tok):
                    raise FileFormatError(f"{path}: line {ln}: the {name!r} list declares {n} entries, "
                                          f"found {len(tok) - k - 1}")
                cols[j].append([_int(t, path, ln, f"an entry of {name!r}") for t in tok[k + 1:k + 1 + n]])
                k += 1 + n
        out[e.name] = cols
    return out


def _ply_uniform_lists(data: bytes, pos: int, e: _Element, endian: str) -> tuple[list, int] | None:
    """Vectorised read of an element whose only property is a list, when every list has the length of the first
    (a mesh of triangles); ``None`` otherwise (the caller then walks the element item by item)."""
    if len(e.props) != 1 or e.count == 0:
        return None
    _, t, count_type = e.props[0]
    ct = np.dtype(endian + str(count_type))
    if pos + ct.itemsize > len(data):
        return None
    k = int(np.frombuffer(data, dtype=ct, count=1, offset=pos)[0])
    if k <= 0:
        return None
    dt = np.dtype([("n", ct), ("idx", endian + t, (k,))])
    if pos + dt.itemsize * e.count > len(data):
        return None
    arr = np.frombuffer(data, dtype=dt, count=e.count, offset=pos)
    if not bool((arr["n"] == k).all()):
        return None
    return [arr["idx"].astype(np.int64)], pos + dt.itemsize * e.count


def _ply_binary(data: bytes, body: int, elements: list[_Element], endian: str, path: Path) -> dict[str, list]:
    out: dict[str, list] = {}
    pos = body
    for e in elements:
        if all(c is None for _, _, c in e.props):
            dt = np.dtype([(f"p{i}", endian + t) for i, (_, t, _) in enumerate(e.props)])
            size = dt.itemsize * e.count
            if pos + size > len(data):
                raise FileFormatError(
                    f"{path}: truncated binary PLY file: {e.count} {e.name} elements need {size} bytes from offset "
                    f"{pos}, the file has {len(data) - pos}"
                )
            arr = np.frombuffer(data, dtype=dt, count=e.count, offset=pos)
            out[e.name] = [arr[f"p{i}"].astype(np.float64) for i in range(len(e.props))]
            pos += size
            continue
        fast = _ply_uniform_lists(data, pos, e, endian)
        if fast is not None:
            out[e.name], pos = fast
            continue
        cols: list[list] = [[] for _ in e.props]
        for _ in range(e.count):
            for j, (name, t, count_type) in enumerate(e.props):
                ct = np.dtype(endian + (count_type or t))
                if pos + ct.itemsize > len(data):
                    raise FileFormatError(f"{path}: truncated binary PLY file: it ends at byte {len(data)} inside "
                                          f"{e.name} {len(cols[0])} of {e.count}")
                v = np.frombuffer(data, dtype=ct, count=1, offset=pos)[0]
                pos += ct.itemsize
                if count_type is None:
                    cols[j].append(v)
                    continue
                it = np.dtype(endian + t)
                n = int(v)
                if n < 0 or pos + n * it.itemsize > len(data):
                    raise FileFormatError(f"{path}: truncated binary PLY file: the {name!r} list of {e.name} "
                                          f"{len(cols[j])} declares {n} entries past the end of the file")
                cols[j].append(np.frombuffer(data, dtype=it, count=n, offset=pos).astype(np.int64).tolist())
                pos += n * it.itemsize
        out[e.name] = cols
    return out


def _ply_faces(elem: _Element, cols: list, path: Path) -> np.ndarray | None:
    names = [p for p, _, _ in elem.props]
    key = next((n for n in ("vertex_indices", "vertex_index") if n in names), None)
    if key is None or elem.count == 0:
        return None
    polys = cols[names.index(key)]
    if isinstance(polys, np.ndarray):
        if polys.shape[1] < 3:
            raise FileFormatError(f"{path}: the faces have {polys.shape[1]} vertices; a face needs at least 3")
        return _fan(polys)
    for i, p in enumerate(polys):
        if len(p) < 3:
            raise FileFormatError(f"{path}: face {i} has {len(p)} vertices; a face needs at least 3")
    return _fan(polys)


def parse_ply(path: Path) -> RawShape:
    """Read an ASCII or binary PLY mesh or cloud (see the module docstring)."""
    data = path.read_bytes()
    fmt, elements, body = _ply_header(data, path)
    if fmt == "ascii":
        values = _ply_ascii(data, body, elements, path)
    else:
        values = _ply_binary(data, body, elements, _PLY_FORMATS[fmt], path)
    by_name = {e.name: e for e in elements}
    if "vertex" not in by_name:
        raise FileFormatError(f"{path}: the PLY file has no vertex element")
    ve = by_name["vertex"]
    names = [p for p, _, _ in ve.props]
    missing = [c for c in "xyz" if c not in names]
    if missing or any(ve.props[names.index(c)][2] is not None for c in "xyz"):
        raise FileFormatError(f"{path}: the PLY vertex element needs scalar x, y, z properties, found {names}")
    cols = values["vertex"]

    def stack(keys: str) -> np.ndarray:
        return np.stack([np.asarray(cols[names.index(c)], dtype=np.float64) for c in keys], axis=1).reshape(-1, 3)

    verts = stack("xyz")
    faces = _ply_faces(by_name["face"], values["face"], path) if "face" in by_name else None
    if faces is not None:
        _check_range(faces, len(verts), path, "")
    normals = stack(("nx", "ny", "nz")) if faces is None and all(c in names for c in ("nx", "ny", "nz")) else None
    return RawShape(verts, faces, normals)


# -- STL -------------------------------------------------------------------------------------------------------
def first_use_order(faces: np.ndarray, n_verts: int) -> np.ndarray:
    """Vertex indices in the order of their first use by ``faces (F, 3)`` (face by face, corner by corner)."""
    flat = faces.reshape(-1)
    _, first = np.unique(flat, return_index=True)
    return flat[np.sort(first)]


def merge_soup(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge the bit-identical rows of ``corners (3F, 3)``: ``(verts (V, 3), faces (F, 3))``, vertices numbered in
    the order of their first appearance."""
    _, first, inverse = np.unique(corners, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    verts = corners[np.sort(first)]
    return verts, rank[inverse.reshape(-1)].reshape(-1, 3)


def _stl_ascii(data: bytes, path: Path) -> np.ndarray:
    rows = _rows(_text(data, path, "STL"))
    vrows = [(ln, tok[1:]) for ln, tok in rows if tok[0] == "vertex"]
    if not vrows:
        raise FileFormatError(f"{path}: no geometry could be read from the file (no 'vertex' lines; empty or "
                              "corrupted STL)")
    if len(vrows) % 3:
        raise FileFormatError(f"{path}: truncated or corrupted STL file: {len(vrows)} 'vertex' lines is not a "
                              f"multiple of 3 (the last one is line {vrows[-1][0]})")
    return _floats(vrows, 3, path, "vertex (x y z)")


def parse_stl(path: Path) -> RawShape:
    """Read an ASCII or binary STL file and merge its corners (see the module docstring)."""
    data = path.read_bytes()
    if len(data) >= 84:
        n = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
        if len(data) == 84 + 50 * n:
            rec = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])
            tris = np.frombuffer(data, dtype=rec, count=n, offset=84)
            corners = tris["corners"].reshape(-1, 3).astype(np.float64)
            if n == 0:
                raise FileFormatError(f"{path}: no geometry could be read from the file (a binary STL of 0 triangles)")
            return RawShape(*merge_soup(corners))
    if data.lstrip().startswith(b"solid"):
        return RawShape(*merge_soup(_stl_ascii(data, path)))
    if len(data) < 84:
        raise FileFormatError(f"{path}: no geometry could be read from the file: {len(data)} bytes is shorter than "
                              "a binary STL header (84 bytes) and it is not an ASCII STL ('solid' ...)")
    n = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
    raise FileFormatError(
        f"{path}: truncated or corrupted binary STL file: the header declares {n} triangles "
        f"({84 + 50 * n} bytes), the file has {len(data)} bytes"
    )
