"""`import geomot` is fast and imports no optional heavy package."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pyvista", "vtk", "open3d", "torch_geometric", "pytorch3d", "pykeops", "nibabel", "nilearn", "trimesh")


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_fast_and_light():
    res = _run(
        "import json, sys, time; t = time.perf_counter(); import geomot; dt = time.perf_counter() - t; "
        f"print(json.dumps({{'dt': dt, 'mods': [m for m in {HEAVY!r} if m in sys.modules]}}))"
    )
    assert res["dt"] < 1.0, f"import geomot took {res['dt']:.2f} s"
    assert res["mods"] == []


def test_public_names_resolve_without_heavy_imports():
    res = _run(
        "import json, sys, geomot; missing = [n for n in geomot._LAZY if not hasattr(geomot, n)]; "
        f"print(json.dumps({{'missing': missing, 'mods': [m for m in {HEAVY[:6]!r} if m in sys.modules]}}))"
    )
    assert res["missing"] == []
    assert res["mods"] == []


def test_unknown_attribute_raises():
    import geomot

    try:
        geomot.not_a_name
    except AttributeError as e:
        assert "not_a_name" in str(e)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
