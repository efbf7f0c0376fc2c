"""Frames for deformation fits: centre and RMS radius of a surface, and the source/target alignment policy.

Fits run in a normalised frame (unit RMS radius) so that their defaults (learning rates, kernel widths, step
counts) do not depend on the unit of the data. A target in another unit or far away is detected here, aligned
with a logged warning, and the decision is recorded in the fit's result.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch

from geomot._core.errors import ValidationError
from geomot._core.registry import Registry
from geomot.ops.geometry import face_areas, face_centroids

__all__ = ["NORMALIZATIONS", "Frame", "Normalization", "choose_frames", "surface_frame"]

log = logging.getLogger(__name__)

#: Ratio of RMS radii beyond which (either way) the target is taken to be in another unit.
SCALE_RATIO_LIMIT = 2.0
#: Distance between centres, in source radii, beyond which the target is taken to be elsewhere.
OFFSET_LIMIT = 1.0

NORMALIZATIONS: Registry[str] = Registry("normalization")
for _k, _doc in (
    ("auto", "joint frame of the source; the target is aligned (centre, RMS radius) only when it is in another "
             "unit (radius ratio > 2) or far away (centres more than one radius apart)"),
    ("joint", "the source's frame for both shapes (relative position and scale kept)"),
    ("separate", "each shape centred and scaled to unit RMS radius; the result is in the target's frame"),
    ("none", "raw coordinates"),
):
    NORMALIZATIONS.add(_k, _doc)


class Frame(NamedTuple):
    """``x_normalised = (x - center) / scale``; ``center (3,)``, ``scale ()``."""

    center: torch.Tensor
    scale: torch.Tensor

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.center) / self.scale

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.center


class Normalization(NamedTuple):
    """What a fit did to its inputs (recorded in its result).

    Attributes:
        mode: the policy used (a name of :data:`NORMALIZATIONS`).
        source: frame of the source.
        target: frame of the target; outputs are mapped back with ``target.invert``.
        aligned: True when the target was moved/rescaled onto the source (another unit or far away).
        scale_ratio: RMS radius of the target / that of the source.
        offset: distance between the centres, in source radii.
    """

    mode: str
    source: Frame
    target: Frame
    aligned: bool
    scale_ratio: float
    offset: float


def surface_frame(verts: torch.Tensor, faces: torch.Tensor) -> Frame:
    """Area-weighted centre ``c = sum_f a_f c_f / A`` and RMS radius ``r = sqrt(sum_f a_f |c_f - c|^2 / A)``."""
    with torch.no_grad():
        a = face_areas(verts, faces)
        total = a.sum()
        if not bool(total > 0):
            raise ValidationError("verts: the surface has zero total area; cannot choose a frame")
        cf = face_centroids(verts, faces)
        c = (a[:, None] * cf).sum(0) / total
        r = ((a * ((cf - c) ** 2).sum(-1)).sum() / total).sqrt()
        if not bool(r > 0):
            raise ValidationError("verts: the surface has zero extent; cannot choose a frame")
    return Frame(c, r)


def choose_frames(
    src_v: torch.Tensor, src_f: torch.Tensor, tgt_v: torch.Tensor, tgt_f: torch.Tensor, mode: str = "auto"
) -> Normalization:
    """Choose the frames of a fit (see :data:`NORMALIZATIONS`); logs a warning when it aligns the target."""
    NORMALIZATIONS.get(mode, arg="normalize")
    fs, ft = surface_frame(src_v, src_f), surface_frame(tgt_v, tgt_f)
    ratio = float(ft.scale / fs.scale)
    offset = float((ft.center - fs.center).norm() / fs.scale)
    if mode == "none":
        one = Frame(src_v.new_zeros(3), src_v.new_ones(()))
        return Normalization(mode, one, one, False, ratio, offset)
    if mode == "joint":
        return Normalization(mode, fs, fs, False, ratio, offset)
    if mode == "separate":
        return Normalization(mode, fs, ft, True, ratio, offset)
    far = offset > OFFSET_LIMIT
    unit = ratio > SCALE_RATIO_LIMIT or ratio < 1.0 / SCALE_RATIO_LIMIT
    if far or unit:
        why = []
        if unit:
            why.append(f"its RMS radius is {ratio:.3g} x the source's (another unit?)")
        if far:
            why.append(f"its centre is {offset:.3g} source radii away")
        log.warning("target aligned onto the source (centre and RMS radius) because %s; the result is mapped "
                    "back to the target's frame", " and ".join(why))
        return Normalization(mode, fs, ft, True, ratio, offset)
    return Normalization(mode, fs, fs, False, ratio, offset)
