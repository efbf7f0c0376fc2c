"""Which compiled paths a tensor can use: Triton kernels (CUDA, or Triton's CPU interpreter) and numba kernels.

Triton runs on CUDA tensors when the ``triton`` package imports; with ``TRITON_INTERPRET=1`` in the environment
(read when triton is first imported) its interpreter runs the same kernels on CPU tensors, slowly: that is how
the kernels are tested without a GPU. ``GEOMOT_TRITON=0`` or ``GEOMOT_NUMBA=0`` turns a path off.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

__all__ = ["numba_available", "triton_available", "triton_interpreted", "triton_usable"]


def _enabled(var: str) -> bool:
    return os.environ.get(var, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.cache
def triton_available() -> bool:
    """Whether ``triton`` is installed and not turned off by ``GEOMOT_TRITON=0`` (it is not imported here)."""
    return _enabled("GEOMOT_TRITON") and importlib.util.find_spec("triton") is not None


def triton_interpreted() -> bool:
    """Whether Triton kernels run in the CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip() == "1"


def triton_usable(t: torch.Tensor) -> bool:
    """Whether Triton kernels can run on ``t``: a CUDA tensor, or any tensor under the interpreter."""
    return triton_available() and (t.is_cuda or (triton_interpreted() and t.device.type == "cpu"))


@functools.cache
def numba_available() -> bool:
    """Whether ``numba`` is installed and not turned off by ``GEOMOT_NUMBA=0`` (it is not imported here)."""
    return _enabled("GEOMOT_NUMBA") and importlib.util.find_spec("numba") is not None
