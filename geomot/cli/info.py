"""``geomot info FILE``: what a mesh or point-cloud file holds (counts, area, watertightness, bounds), or what a
``.vts`` correspondence file holds (entries, unique indices, range), or what an ``off/`` + ``corres/`` dataset
folder holds (shapes, classes, ground-truth files)."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from geomot.io.dataset import ShapeDataset
from geomot.io.files import file_format, load
from geomot.io.vts import read_vts
from geomot.structures import Mesh, PointCloud

__all__ = ["add_parser"]


def _edge_counts(faces: torch.Tensor) -> tuple[int, int]:
    """``(boundary edges, non-manifold edges)``: undirected edges used by one face / by more than two faces."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0).sort(dim=1).values
    _, counts = torch.unique(e, dim=0, return_counts=True)
    return int((counts == 1).sum()), int((counts > 2).sum())


def _fmt(v: torch.Tensor) -> str:
    return "(" + ", ".join(f"{float(x):.6g}" for x in v) + ")"


def _describe(obj: Mesh | PointCloud) -> list[tuple[str, str]]:
    """``(label, value)`` lines printed by ``geomot info``."""
    if isinstance(obj, Mesh):
        v, f = obj.verts, obj.faces
        boundary, nonmanifold = _edge_counts(f)
        closed = boundary == 0 and nonmanifold == 0
        detail = "" if closed else f" ({boundary} boundary edges, {nonmanifold} non-manifold edges)"
        n_used = int(torch.unique(f).numel())
        rows = [
            ("type", "triangle mesh"),
            ("vertices", f"{v.shape[0]}" + ("" if n_used == v.shape[0] else f" ({v.shape[0] - n_used} unreferenced)")),
            ("faces", f"{f.shape[0]}"),
            ("area", f"{float(obj.total_area()[0]):.6g}"),
            ("watertight", ("yes" if closed else "no") + detail),
        ]
    elif len(obj) > 1:  # a (B, N, 3) batch
        pts = obj.points_list()
        sizes = sorted({p.shape[0] for p in pts})
        v = torch.cat(pts)
        extents = torch.stack([p.amax(0) - p.amin(0) for p in pts]).norm(dim=1)
        rows = [("type", f"batch of {len(obj)} point clouds"),
                ("points", f"{sizes[0]} each" if len(sizes) == 1 else f"{sizes[0]} .. {sizes[-1]}"),
                ("normals", "yes" if obj.normals_list() is not None else "no"),
                ("item extents", f"min {float(extents.min()):.6g}  mean {float(extents.mean()):.6g}  "
                                 f"max {float(extents.max()):.6g} (bounding-box diagonals)")]
    else:
        v = obj.points_list()[0]
        rows = [("type", "point cloud"), ("points", f"{v.shape[0]}"),
                ("normals", "yes" if obj.normals_list() is not None else "no")]
    lo, hi = v.min(0).values, v.max(0).values
    rows += [("bounds", f"min {_fmt(lo)}  max {_fmt(hi)}"), ("extent", _fmt(hi - lo))]
    return rows


def _vts_rows(path: str) -> list[tuple[str, str]]:
    idx = read_vts(path)
    return [
        ("format", "VTS correspondence (1-based on disk)"),
        ("entries", f"{idx.shape[0]}"),
        ("unique", f"{int(torch.unique(idx).numel())}"),
        ("range", f"{int(idx.min()) + 1} .. {int(idx.max()) + 1} (1-based)"),
    ]


def _dataset_rows(path: str) -> list[tuple[str, str]]:
    ds = ShapeDataset(path)
    classes = ds.classes()
    listed = ", ".join(f"{c} ({len(v)})" for c, v in list(classes.items())[:8]) + (" ..." if len(classes) > 8 else "")
    n_gt = sum(ds.has_correspondence(n) for n in ds.names)
    return [
        ("format", f"dataset folder ({ds.shapes_root.name}/ + {ds.corres_root.name}/)"),
        ("shapes", f"{len(ds)} ({ds.names[0]} .. {ds.names[-1]})"),
        ("classes", f"{len(classes)}: {listed}"),
        ("ground truth", f"{n_gt} .vts files"),
    ]


def _run(args: argparse.Namespace) -> int:
    if Path(args.file).is_dir() and (Path(args.file) / "off").is_dir():
        rows = [("file", str(args.file)), *_dataset_rows(args.file)]
    elif str(args.file).lower().endswith(".vts"):
        rows = [("file", str(args.file)), *_vts_rows(args.file)]
    else:
        fmt = file_format(args.file)
        obj = load(args.file, dtype=torch.float64, kind=args.kind)
        rows = [("file", str(args.file)), ("format", f"{fmt.name} (read with {fmt.backend})"), *_describe(obj)]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k + ':':<{width + 1}} {val}" for k, val in rows))
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "info", help="print what a mesh / point-cloud file holds",
        description="Print the vertex and face counts, surface area, watertightness and bounds of a mesh file, or "
        "the point count, normals and bounds of a point-cloud file (any format geomot.load reads), or the entries "
        "and index range of a .vts correspondence file, or the shapes and classes of a dataset folder "
        "(off/ + corres/).",
    )
    p.add_argument("file", help="mesh / point-cloud file (.off .obj .ply .stl .pcd .xyz .npy .npz .gii[.gz]), "
                   ".vts file, or dataset folder")
    p.add_argument("--kind", choices=["mesh", "points"], default=None,
                   help="read as a mesh (error if the file has no faces) or as a point cloud (default: by content)")
    p.set_defaults(func=_run)
    return p
