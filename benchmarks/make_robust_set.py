"""Re-discretised copies of FAUST_r / TOSCA_r / SMAL_r with their correspondence carried through (issue 26).

Reads the shapes in place from ``../shared/data`` and writes, into the ignored folder ``out/robust_set/`` (never
commit it: FAUST and SMAL forbid redistribution), one dataset folder per variant in the ``off/`` + ``corres/``
layout that :class:`geomot.io.ShapeDataset` and ``geomot evaluate --data`` read, with the stems of the originals:

* ``<DS>_aniso``: anisotropic remeshing. The shape is stretched x3 along a random unit direction
  (``v' = v + 2 (v . d) d``), remeshed isotropically (pymeshlab ``meshing_isotropic_explicit_remeshing``, target
  edge length of an equilateral mesh of 0.9 times the original vertex count, 5 iterations) and mapped back with
  the inverse stretch, so its triangles are about 3 times longer along ``d`` than across.
* ``<DS>_decim``: non-uniform decimation to a random 40-70 % of the vertices: pymeshlab quadric edge collapse with
  the quadric of each vertex weighted by ``1 + 30 exp(-|x - c|^2 / r^2)`` (``c`` a random vertex, ``r`` 0.3 of
  the bounding-box diagonal), so the region around ``c`` keeps more vertices than the rest.
* ``<DS>_jitter``: same connectivity, each vertex moved in its tangent plane (the plane of its area-weighted
  normal) by a Gaussian of standard deviation 0.3 mean edge lengths (clipped at 0.6).
* ``FAUST_r_3k`` / ``FAUST_r_8k``: isotropic remeshing to about 3,000 and 8,000 vertices; a pair of different
  densities takes its source from ``_3k`` and its target from ``_8k``.

Every output is cleaned with pymeshlab (faces on non-manifold edges removed, non-manifold vertices split,
unreferenced vertices removed, faces wound coherently and on the same side as the original's, the largest
connected component kept).

Ground-truth convention: line ``k`` of a new ``.vts`` is the vertex of the re-discretised shape nearest (Euclidean,
in the original embedding) to vertex ``vts[k]`` of the original shape; for ``_jitter`` it is ``vts[k]`` itself.
This adds a floor to the measured error of about half an edge length (the re-discretised vertex nearest to the
true point is not the true point).

Shapes: only those of the benchmark's splits (see :func:`split_shapes`): FAUST_r subjects 0-4 (tr_reg_000-049)
are development, subjects 6-7 (tr_reg_060-079) validation; TOSCA_r classes in sorted order alternate between
development (cat, david, horse, victoria) and validation (centaur, dog, michael, wolf); SMAL_r shapes in sorted
order alternate (even positions development, odd validation). ``--per-split`` shapes per split and dataset are
kept (FAUST_r and SMAL_r: a seeded sample; TOSCA_r: the first shapes of each class in natural order, so that
within-class pairs exist). Deterministic: every random choice comes from ``numpy.random.default_rng`` seeded by
``--seed`` and the shape's name. About 3-4 minutes on one loaded core with the defaults.

Needs pymeshlab (``pip install pymeshlab``, a wheel). Run:
``.venv/bin/python benchmarks/make_robust_set.py [--out out/robust_set] [--per-split 8] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("make_robust_set")

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
DATASETS = ("FAUST_r", "TOSCA_r", "SMAL_r")
TOSCA_DEV = ("cat", "david", "horse", "victoria")
TOSCA_VAL = ("centaur", "dog", "michael", "wolf")
STRETCH = 3.0


def split_of(dataset: str, name: str, all_names: list[str] | None = None) -> str | None:
    """``"dev"``, ``"val"`` or None (not in either split) for shape ``name`` of ``dataset``."""
    if dataset == "FAUST_r":
        i = int(name[-3:])
        return "dev" if i < 50 else "val" if 60 <= i < 80 else None
    if dataset == "TOSCA_r":
        cls = name.rstrip("0123456789")
        return "dev" if cls in TOSCA_DEV else "val" if cls in TOSCA_VAL else None
    if dataset == "SMAL_r":
        names = sorted(all_names or [])
        return ("dev", "val")[names.index(name) % 2]
    raise ValueError(f"dataset: unknown {dataset!r}")


def split_shapes(dataset: str, names: list[str], split: str, n: int, seed: int = 0) -> list[str]:
    """The ``n`` shapes of ``split`` that the robust set and its benchmark use (see the module docstring)."""
    pool = [s for s in names if split_of(dataset, s, names) == split]
    if dataset == "TOSCA_r":
        classes = TOSCA_DEV if split == "dev" else TOSCA_VAL
        per = max(2, n // len(classes))
        return [s for c in classes for s in [s for s in pool if s.rstrip("0123456789") == c][:per]]
    rng = random.Random(f"{seed}-{dataset}-{split}")
    return sorted(rng.sample(sorted(pool), min(n, len(pool))))


def _rng(seed: int, *keys: str) -> np.random.Generator:
    h = hashlib.sha256("-".join([str(seed), *keys]).encode()).digest()
    return np.random.default_rng(int.from_bytes(h[:8], "little"))


def _pm():
    try:
        import pymeshlab
    except ImportError as e:  # pragma: no cover - optional benchmark dependency
        raise SystemExit("make_robust_set needs pymeshlab: .venv/bin/pip install pymeshlab") from e
    return pymeshlab


def _area(v: np.ndarray, f: np.ndarray) -> float:
    t = v[f]
    return float(0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1).sum())


def _mean_edge(v: np.ndarray, f: np.ndarray) -> float:
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    return float(np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1).mean())


def _clean(ms) -> tuple[np.ndarray, np.ndarray]:
    """The current mesh of a pymeshlab MeshSet made manifold (faces on non-manifold edges removed, non-manifold
    vertices split) and coherently wound (faces left with an edge wound twice the same way are removed), without
    unreferenced vertices."""
    pm = _pm()
    for _ in range(4):
        ms.meshing_remove_duplicate_faces()
        ms.meshing_repair_non_manifold_edges()
        ms.meshing_repair_non_manifold_vertices()
        ms.meshing_remove_unreferenced_vertices()
        ms.meshing_re_orient_faces_coherently()
        m = ms.current_mesh()
        v, f = m.vertex_matrix().astype(np.float64), m.face_matrix().astype(np.int64)
        directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        _, inv, counts = np.unique(directed, axis=0, return_inverse=True, return_counts=True)
        bad = (counts[inv.ravel()] > 1).reshape(3, -1).any(0)
        if not bad.any():
            return _largest_component(v, f)
        ms = pm.MeshSet()
        ms.add_mesh(pm.Mesh(v, f[~bad]))
    raise RuntimeError("could not make the remeshed shape manifold and coherently wound")


def _largest_component(v: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The faces of the largest edge-connected component and their vertices, re-indexed."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]]])
    _, label = connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(v), len(v))))
    keep = f[label[f[:, 0]] == np.bincount(label[f[:, 0]]).argmax()]
    used = np.unique(keep)
    new = np.full(len(v), -1)
    new[used] = np.arange(len(used))
    return v[used], new[keep]


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    t = v[f] - v.mean(0)
    return float((t[:, 0] * np.cross(t[:, 1], t[:, 2])).sum()) / 6.0


def _remesh(v: np.ndarray, f: np.ndarray, n_verts: int, iterations: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic remeshing with the edge length of an equilateral mesh of ``n_verts`` vertices (``F ~ 2 V``)."""
    pm = _pm()
    length = float(np.sqrt(2.0 * _area(v, f) / (np.sqrt(3.0) * n_verts)))
    ms = pm.MeshSet()
    ms.add_mesh(pm.Mesh(v, f))
    ms.meshing_isotropic_explicit_remeshing(targetlen=pm.PureValue(length), iterations=iterations)
    return _clean(ms)


def anisotropic(v: np.ndarray, f: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    stretch = np.eye(3) + (STRETCH - 1.0) * np.outer(d, d)
    w, g = _remesh(v @ stretch, f, int(0.9 * v.shape[0]))
    return w @ np.linalg.inv(stretch), g


def decimated(v: np.ndarray, f: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pm = _pm()
    frac = rng.uniform(0.4, 0.7)
    c = v[rng.integers(v.shape[0])]
    r = 0.3 * float(np.linalg.norm(v.max(0) - v.min(0)))
    q = 1.0 + 30.0 * np.exp(-((v - c) ** 2).sum(1) / r**2)
    ms = pm.MeshSet()
    ms.add_mesh(pm.Mesh(v, f, v_scalar_array=q))
    ms.meshing_decimation_quadric_edge_collapse(
        targetfacenum=round(frac * f.shape[0]), qualityweight=True, preservenormal=True, preservetopology=True
    )
    return _clean(ms)


def jittered(v: np.ndarray, f: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = v[f]
    fn = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])  # area-weighted face normals
    n = np.zeros_like(v)
    for j in range(3):
        np.add.at(n, f[:, j], fn)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
    h = _mean_edge(v, f)
    step = rng.normal(scale=0.3 * h, size=v.shape)
    step -= (step * n).sum(1, keepdims=True) * n
    norm = np.linalg.norm(step, axis=1, keepdims=True)
    step *= np.minimum(1.0, 0.6 * h / np.maximum(norm, 1e-30))
    return v + step, f.copy()


def nearest_vertex(points: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """``(K,)`` index of the vertex of ``verts (V, 3)`` nearest to each of ``points (K, 3)``."""
    from scipy.spatial import cKDTree

    return cKDTree(verts).query(points)[1].astype(np.int64)


def _write(folder: Path, name: str, v: np.ndarray, f: np.ndarray, vts: np.ndarray) -> None:
    import torch

    from geomot.io import save, write_vts
    from geomot.structures import Mesh

    (folder / "off").mkdir(parents=True, exist_ok=True)
    (folder / "corres").mkdir(parents=True, exist_ok=True)
    save(Mesh(torch.as_tensor(v), torch.as_tensor(f)), folder / "off" / f"{name}.off")
    write_vts(folder / "corres" / f"{name}.vts", vts)


VARIANTS = {"aniso": anisotropic, "decim": decimated, "jitter": jittered}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "out" / "robust_set"))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--per-split", type=int, default=8, help="shapes per split and dataset (default: 8)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from geomot.io import ShapeDataset

    out = Path(args.out)
    t_start = time.perf_counter()
    for dsname in args.datasets.split(","):
        ds = ShapeDataset(Path(args.data) / dsname)
        shapes = [
            s for split in ("dev", "val") for s in split_shapes(dsname, ds.names, split, args.per_split, args.seed)
        ]
        for name in shapes:
            t0 = time.perf_counter()
            mesh = ds.load(name)
            v, f = mesh.verts.double().numpy(), mesh.faces.long().numpy()
            vts = ds.correspondence(name).numpy()
            variants = dict(VARIANTS)
            if dsname == "FAUST_r":
                variants["3k"] = lambda v, f, rng: _remesh(v, f, 2500)
                variants["8k"] = lambda v, f, rng: _remesh(v, f, 7700)
            counts = {}
            for key, fn in variants.items():
                w, g = fn(v, f, _rng(args.seed, dsname, name, key))
                if _signed_volume(w, g) * _signed_volume(v, f) < 0:  # keep the winding side of the original
                    g = g[:, ::-1].copy()
                new_vts = vts.copy() if key == "jitter" else nearest_vertex(v[vts], w)
                _write(out / f"{dsname}_{key}", name, w, g, new_vts)
                counts[key] = w.shape[0]
            log.info("%s %s (%d verts): %s, %.1f s", dsname, name, v.shape[0], counts, time.perf_counter() - t0)
    log.info("done in %.0f s -> %s", time.perf_counter() - t_start, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
