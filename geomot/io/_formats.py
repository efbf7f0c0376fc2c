"""File-format table used by :func:`geomot.io.load` / :func:`geomot.io.save`.

A reader returns a :class:`RawShape` of numpy arrays (no torch, no validation); ``load`` turns it into a
:class:`~geomot.structures.Mesh` or :class:`~geomot.structures.PointCloud` and validates it. A writer receives the
same arrays. Formats register under each of their suffixes (lower case, with the dot; ``".gii.gz"`` counts as one
suffix).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from geomot._core.errors import FileFormatError
from geomot._core.registry import Registry

__all__ = ["FORMATS", "FileFormat", "RawShape", "format_for", "register_format", "suffix_of"]


class RawShape(NamedTuple):
    """What a reader found in a file.

    Attributes:
        verts: ``(V, 3)`` float positions (vertices or points), or ``(B, N, 3)`` for a batch of clouds (``.npy``).
        faces: ``(F, 3)`` integer triangles, or ``None`` for a point cloud.
        normals: ``(V, 3)`` per-point normals stored in the file, or ``None``.
        weights: ``(V,)`` per-point masses of a weighted cloud (``.npz`` only), or ``None``.
    """

    verts: np.ndarray
    faces: np.ndarray | None = None
    normals: np.ndarray | None = None
    weights: np.ndarray | None = None


class FileFormat(NamedTuple):
    """One supported file format.

    Attributes:
        name: human-readable name (``"OFF"``).
        suffixes: the suffixes it is registered under.
        read: ``read(path) -> RawShape``.
        write: ``write(path, shape: RawShape) -> None``, or ``None`` when the backend cannot write it.
        meshes: whether ``write`` accepts triangle meshes.
        points: whether ``write`` accepts point clouds.
        backend: the package that reads the format (for messages and docs).
        weights: whether the format stores per-point weights of a cloud.
    """

    name: str
    suffixes: tuple[str, ...]
    read: Callable[[Path], RawShape]
    write: Callable[[Path, RawShape], None] | None
    meshes: bool
    points: bool
    backend: str
    weights: bool = False


FORMATS: Registry[FileFormat] = Registry("file format")


def register_format(fmt: FileFormat) -> FileFormat:
    for s in fmt.suffixes:
        FORMATS.add(s, fmt)
    return fmt


def suffix_of(path: Path) -> str:
    """The registered suffix ``path`` ends with (longest match, case-insensitive), or its last suffix."""
    name = path.name.lower()
    for s in sorted(FORMATS.names(), key=len, reverse=True):
        if name.endswith(s) and len(name) > len(s):
            return s
    return path.suffix.lower()


def format_for(path: Path) -> FileFormat:
    """The :class:`FileFormat` for ``path``'s suffix; raises :class:`FileFormatError` listing the supported ones."""
    s = suffix_of(path)
    if s not in FORMATS:
        got = repr(s) if s else "no suffix"
        raise FileFormatError(
            f"{path}: unsupported file type ({got}); supported suffixes: {', '.join(FORMATS.names())}"
        )
    return FORMATS.get(s)
