"""Draw the guide pictures that come from the shapes shipped in ``data/`` (nothing from ``../shared/data``).

    python scripts/make_docs_pictures.py                     # rewrites the two files below (minutes on a CPU)
    python scripts/make_docs_pictures.py --only matching     # one of them; --out DIR writes elsewhere

* ``docs/matching_pair.png``: ``geomot.match`` from ``data/pair/off/bumps_0.off`` to ``bumps_1.off`` (the
  vertices are shuffled between the two files), shown as a colour transfer with 20 correspondence lines;
* ``docs/deformation_frames.png``: ``geomot.deform.fit`` of ``data/icosphere.off`` onto ``data/blob.off`` with
  its default settings, at times 0, 0.5 and 1 of the flow, coloured by the displacement ``|x_t - x_0|``.

Rendering is off-screen (pyvista, the ``viz`` extra). The numbers that go with the pictures (mean geodesic
error, ASSD / HD90) are printed, so that the pages' captions can be checked against them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

import geomot
from geomot import viz
from geomot.metrics import geodesic_error

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT / "data" / "pair"


def matching_picture(path: Path) -> None:
    source = geomot.load(PAIR / "off" / "bumps_0.off", dtype=torch.float64)
    target = geomot.load(PAIR / "off" / "bumps_1.off", dtype=torch.float64)
    res = geomot.match(source, target)
    gt = geomot.read_vts(PAIR / "corres" / "bumps_0.vts"), geomot.read_vts(PAIR / "corres" / "bumps_1.vts")
    err = geodesic_error(res.p2p_21, target.verts, target.faces, *gt)
    print(f"matching: mean geodesic error {100 * float(err):.2f} (x100)")
    viz.show_correspondence(source, target, res.p2p_21, n_lines=20, window_size=(1000, 500), screenshot=path,
                            off_screen=True)
    print(f"wrote {path}")


def deformation_picture(path: Path) -> None:
    source = geomot.load(ROOT / "data" / "icosphere.off", dtype=torch.float64)
    target = geomot.load(ROOT / "data" / "blob.off", dtype=torch.float64)
    res = geomot.deform.fit(source, target, progress=False)
    print(f"deformation: {res.n_steps} steps, ASSD {res.metrics.assd:.4f}, HD90 {res.metrics.hd90:.4f}")
    import imageio.v3 as iio  # the viz extra

    with tempfile.TemporaryDirectory() as tmp:
        frames = []
        for t in (0.0, 0.5, 1.0):
            shot = Path(tmp) / f"t{t}.png"
            viz.show_deformation(res, target=target, time=t, window_size=(420, 400), screenshot=shot,
                                 off_screen=True)
            frames.append(iio.imread(shot)[..., :3])
    iio.imwrite(path, np.concatenate(frames, axis=1))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder of the two PNG files (default docs/)")
    ap.add_argument("--only", choices=("matching", "deformation"), default=None, help="draw one picture")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "matching"):
        matching_picture(args.out / "matching_pair.png")
    if args.only in (None, "deformation"):
        deformation_picture(args.out / "deformation_frames.png")


if __name__ == "__main__":
    main()
