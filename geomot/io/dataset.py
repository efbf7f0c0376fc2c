"""Shape-matching dataset folders: ``root/off/<name>.off`` shapes and ``root/corres/<name>.vts`` ground truth.

This is the layout of the remeshed FAUST / SCAPE / TOSCA / SMAL benchmarks (Ren et al. 2018, "Continuous and
orientation-preserving correspondences via functional maps"; Donati et al. 2022). Every ``.vts`` line ``k`` names
the vertex of its shape that corresponds to template vertex ``k``, so two shapes ``A``, ``B`` of one dataset match
by ``A.vts[k] <-> B.vts[k]``. Nothing is loaded or copied until asked for.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot.io._formats import FORMATS, suffix_of
from geomot.io.files import load
from geomot.io.vts import read_vts
from geomot.structures import Mesh

__all__ = ["GroundTruth", "ShapeDataset", "default_class_of"]


class GroundTruth(NamedTuple):
    """Ground-truth correspondence of a pair ``(A, B)``: vertex ``src_idx[k]`` of A matches ``tgt_idx[k]`` of B.

    Attributes:
        src_idx: ``(K,)`` int64, 0-based vertices of the source shape A.
        tgt_idx: ``(K,)`` int64, 0-based vertices of the target shape B.
    """

    src_idx: torch.Tensor
    tgt_idx: torch.Tensor


def _natural_key(name: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def default_class_of(name: str) -> str:
    """Class of a shape name: the name without its trailing digits and separators (``"cat10"`` -> ``"cat"``,
    ``"tr_reg_003"`` -> ``"tr_reg"``)."""
    return re.sub(r"[\d_\-]+$", "", name) or name


def _declared_off_verts(path: Path) -> int | None:
    """Vertex count in an OFF header (reads a few lines only), or None for other formats / odd headers."""
    if path.suffix.lower() != ".off":
        return None
    tokens: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            tokens += line.split("#", 1)[0].split()
            if len(tokens) >= 3:
                break
    if len(tokens) >= 2 and tokens[0].upper().endswith("OFF") and tokens[1].isdigit():
        return int(tokens[1])
    return None


class ShapeDataset:
    """A folder of shapes with optional ``.vts`` ground truth, read lazily.

    Args:
        root: the dataset folder (e.g. ``.../FAUST_r``).
        shapes_dir: sub-folder of the shapes (any suffix :func:`geomot.io.load` reads; ``"off"`` by convention).
        corres_dir: sub-folder of the ``.vts`` files, named like the shapes.
        class_of: maps a shape name to its class for ``pairs(within_class=True)``; default
            :func:`default_class_of` (TOSCA: ``"cat3"`` -> ``"cat"``).
        correspondence: ``"vts"`` reads ``corres_dir/<name>.vts``; ``"identity"`` declares that all shapes share
            one vertex order (e.g. ``deform_sph``, fsaverage surfaces), so vertex ``i`` matches vertex ``i``.

    Example:
        >>> ds = ShapeDataset("../shared/data/FAUST_r")             # doctest: +SKIP
        >>> mesh = ds["tr_reg_000"]; gt = ds.ground_truth("tr_reg_000", "tr_reg_001")  # doctest: +SKIP
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        shapes_dir: str = "off",
        corres_dir: str = "corres",
        class_of: Callable[[str], str] | None = None,
        correspondence: str = "vts",
    ) -> None:
        if correspondence not in ("vts", "identity"):
            raise ValidationError(f"correspondence: expected 'vts' or 'identity', got {correspondence!r}")
        self.correspondence_kind = correspondence
        self.root = Path(root)
        self.shapes_root = self.root / shapes_dir
        self.corres_root = self.root / corres_dir
        if not self.shapes_root.is_dir():
            raise FileFormatError(f"{self.root}: not a dataset folder (expected a sub-folder {shapes_dir!r})")
        self.class_of = class_of or default_class_of
        files: dict[str, Path] = {}
        for f in self.shapes_root.iterdir():
            s = suffix_of(f)
            if not f.is_file() or s not in FORMATS:
                continue
            name = f.name[: -len(s)]
            if name in files:
                raise FileFormatError(f"{self.shapes_root}: two files for shape {name!r}: {files[name].name}, {f.name}")
            files[name] = f
        if not files:
            raise FileFormatError(f"{self.shapes_root}: no shape files found")
        self._files = dict(sorted(files.items(), key=lambda kv: _natural_key(kv[0])))

    # -- listing -----------------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        """Shape names (file stems), in natural order (``cat2`` before ``cat10``)."""
        return list(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def __repr__(self) -> str:
        return f"ShapeDataset({str(self.root)!r}, shapes={len(self)})"

    def _name(self, name: str | int) -> str:
        if isinstance(name, int) and not isinstance(name, bool):
            if not -len(self) <= name < len(self):
                raise ValidationError(f"name: index {name} out of range for {len(self)} shapes")
            return self.names[name]
        if not isinstance(name, str) or name not in self._files:
            near = [n for n in self._files if isinstance(name, str) and n.startswith(name[:3])][:5]
            raise ValidationError(f"name: unknown shape {name!r} in {self.root}" + (f"; close: {near}" if near else ""))
        return name

    def path(self, name: str | int) -> Path:
        """The shape file of ``name`` (a name or a position in :attr:`names`)."""
        return self._files[self._name(name)]

    def correspondence_path(self, name: str | int) -> Path:
        return self.corres_root / f"{self._name(name)}.vts"

    def has_correspondence(self, name: str | int) -> bool:
        return self.correspondence_kind == "identity" or self.correspondence_path(name).is_file()

    # -- loading -----------------------------------------------------------------------------------------
    def load(
        self, name: str | int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
    ) -> Mesh:
        """Read shape ``name`` as a :class:`Mesh` (vertex order of the file, as the ``.vts`` indices need)."""
        return load(self.path(name), dtype=dtype, device=device, kind="mesh")

    def __getitem__(self, name: str | int) -> Mesh:
        return self.load(name)

    def correspondence(self, name: str | int) -> torch.Tensor:
        """``(K,)`` int64 0-based vertex indices of ``name`` matching template vertices ``0..K-1``.

        With ``correspondence="identity"`` this is ``arange(V)`` (the vertex count comes from the OFF header, or
        from loading the shape for other formats).

        Raises:
            FileFormatError: no ``.vts`` file for this shape, a malformed one, or an index past the vertex count
                declared in the shape's OFF header.
        """
        n = self._name(name)
        if self.correspondence_kind == "identity":
            nv = _declared_off_verts(self._files[n])
            return torch.arange(nv if nv is not None else self.load(n).verts.shape[0])
        p = self.correspondence_path(n)
        if not p.is_file():
            raise FileFormatError(f"{p}: no ground-truth file for shape {n!r}")
        return read_vts(p, n_verts=_declared_off_verts(self._files[n]))

    def ground_truth(self, a: str | int, b: str | int) -> GroundTruth:
        """Ground truth of the pair ``(a, b)``: ``GroundTruth(src_idx=a.vts - 1, tgt_idx=b.vts - 1)``, each ``(K,)``.

        The mean geodesic error of a predicted map ``p2p_ab`` (vertices of B, one per vertex of A) is then
        ``mean_k d_B(p2p_ab[src_idx[k]], tgt_idx[k]) / sqrt(area(B))``. The pairing is meaningful only where the two
        ``.vts`` files index one template: any pair of FAUST_r or SMAL_r, pairs within a class of TOSCA_r (see
        :meth:`pairs`).
        """
        ia, ib = self.correspondence(a), self.correspondence(b)
        if ia.shape != ib.shape:
            raise FileFormatError(
                f"{self.root}: {self._name(a)}.vts has {ia.shape[0]} entries but {self._name(b)}.vts has "
                f"{ib.shape[0]}; they do not share a template"
            )
        return GroundTruth(ia, ib)

    # -- pairs -------------------------------------------------------------------------------------------
    def classes(self) -> dict[str, list[str]]:
        """Class name -> shape names (by ``class_of``)."""
        out: dict[str, list[str]] = {}
        for n in self._files:
            out.setdefault(self.class_of(n), []).append(n)
        return out

    def pairs(self, *, within_class: bool = False, ordered: bool = False) -> list[tuple[str, str]]:
        """Pairs of distinct shape names.

        Args:
            within_class: only pairs whose two shapes have the same ``class_of`` (TOSCA's ground truth holds
                within a class only).
            ordered: both ``(a, b)`` and ``(b, a)``; otherwise each unordered pair once with ``a`` before ``b``.

        Returns:
            list of ``(a, b)`` names, in natural order.
        """
        groups = list(self.classes().values()) if within_class else [self.names]
        combine = itertools.permutations if ordered else itertools.combinations
        return [pair for g in groups for pair in combine(g, 2)]
