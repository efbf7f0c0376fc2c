"""The FreeSurfer ``fsaverage5`` cortical surfaces (10,242 vertices per hemisphere, coordinates in mm).

Looked up, in order, in ``root`` (when given), in ``$GEOMOT_SHARED_DATA/fsaverage5``, in the ``shared/data``
folder next to the project checkout, and finally in the data that the ``nilearn`` package ships inside itself
(``nilearn/datasets/data/fsaverage5``). The nilearn copy is located with :func:`importlib.util.find_spec`, without
importing nilearn and without calling any nilearn fetcher, so nothing is ever downloaded.

All four surfaces of a hemisphere share one triangulation, so vertex ``i`` of ``white`` and vertex ``i`` of
``sphere`` are the same cortical point (an identity ground truth between surfaces).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from geomot._core.errors import FileFormatError, ValidationError
from geomot.io.files import load
from geomot.structures import Mesh

__all__ = ["FSAVERAGE5_SURFACES", "fsaverage5_candidates", "load_fsaverage5"]

#: surface name -> file stem used by both the shared data folder and nilearn
FSAVERAGE5_SURFACES: dict[str, str] = {"white": "white", "pial": "pial", "sphere": "sphere", "inflated": "infl"}
_HEMIS = ("left", "right")


def _nilearn_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("nilearn")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "fsaverage5"


def fsaverage5_candidates(root: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched by :func:`load_fsaverage5`, in order (existing or not)."""
    if root is not None:
        return [Path(root)]
    out = []
    env = os.environ.get("GEOMOT_SHARED_DATA")
    if env:
        out.append(Path(env) / "fsaverage5")
    out.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "fsaverage5")
    nl = _nilearn_dir()
    if nl is not None:
        out.append(nl)
    return out


def load_fsaverage5(
    surface: str = "white",
    hemi: str = "left",
    root: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Mesh:
    """Load one fsaverage5 hemisphere surface as a :class:`Mesh` (verts ``(10242, 3)`` in mm, faces ``(20480, 3)``).

    Args:
        surface: ``"white"``, ``"pial"``, ``"sphere"`` or ``"inflated"``.
        hemi: ``"left"`` or ``"right"``.
        root: a folder holding ``<surface>_<hemi>.gii.gz`` files; when given, only this folder is searched.
        dtype: dtype of the positions.
        device: device of the returned mesh.

    Raises:
        ValidationError: unknown ``surface`` or ``hemi``.
        FileFormatError: the surface is in none of the searched folders (the message lists them); nothing is
            downloaded.
        MissingDependencyError: nibabel is not installed (``pip install geomot[neuro]``).
    """
    if surface not in FSAVERAGE5_SURFACES:
        raise ValidationError(f"surface: expected one of {sorted(FSAVERAGE5_SURFACES)}, got {surface!r}")
    if hemi not in _HEMIS:
        raise ValidationError(f"hemi: expected one of {list(_HEMIS)}, got {hemi!r}")
    fname = f"{FSAVERAGE5_SURFACES[surface]}_{hemi}.gii.gz"
    searched = fsaverage5_candidates(root)
    for folder in searched:
        p = folder / fname
        if p.is_file():
            return load(p, dtype=dtype, device=device, kind="mesh")
    raise FileFormatError(
        f"fsaverage5 {surface} {hemi}: {fname} not found offline in {[str(s) for s in searched]}; "
        "install nilearn (pip install geomot[neuro]), which ships fsaverage5, or pass root= a folder holding it"
    )
