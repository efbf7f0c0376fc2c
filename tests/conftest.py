"""Shared fixtures: small meshes built in code, paths to ../shared/data (skipped with a reason when absent)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT / ".." / "shared" / "data").resolve()


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with a clear reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"research data not available: {p} (see ../shared/data/README.md)")
    return p


@pytest.fixture
def one_torch_thread():
    """Run a test on one intra-op thread (small tensors: more threads only add contention on a shared machine);
    modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def icosphere(subdiv: int = 2, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere (verts (V,3), faces (F,3)) built in code, outward-oriented."""
    t = (1.0 + math.sqrt(5.0)) / 2.0
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t), (0, 1, -t),
         (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4), (11, 10, 2),
         (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9), (4, 9, 5), (2, 4, 11),
         (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    verts = [list(p) for p in v]
    faces = [list(x) for x in f]
    for _ in range(subdiv):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict[tuple[int, int], int] = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                verts.append([(verts[a][i] + verts[b][i]) / 2 for i in range(3)])
                cache[key] = len(verts) - 1
            return cache[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            new += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = new
    vt = torch.tensor(verts, dtype=dtype)
    vt = vt / vt.norm(dim=1, keepdim=True)
    return vt, torch.tensor(faces, dtype=torch.long)


@pytest.fixture
def sphere() -> tuple[torch.Tensor, torch.Tensor]:
    return icosphere(2)


@pytest.fixture
def deform_fit_kwargs(monkeypatch) -> dict:
    """The keywords ``geomot deform`` passes to ``deform.fit`` (the fit still runs), filled in by the call."""
    import importlib

    fit = importlib.import_module("geomot.deformation.fit").fit
    seen: dict = {}

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return fit(*args, **kwargs)

    monkeypatch.setattr("geomot.cli.deform.fit", spy)
    return seen
