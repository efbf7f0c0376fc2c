"""Write the small generated shapes of ``data/`` (deterministic; re-running reproduces the committed files).

Usage::

    python scripts/make_data.py [--out data]

Writes ``icosphere.off``, ``torus.off``, ``blob.off`` and the matching pair ``pair/off/bumps_0.off``,
``pair/off/bumps_1.off`` with its ground truth ``pair/corres/bumps_0.vts``, ``pair/corres/bumps_1.vts`` (the
``off/`` + ``corres/`` dataset layout, readable with ``geomot.io.ShapeDataset("data/pair")``). Every shape comes from
:mod:`geomot.io.synthetic`; nothing is downloaded or copied from elsewhere.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from geomot.io import save, write_vts
from geomot.io.synthetic import blob, bumpy_pair, icosphere, torus

log = logging.getLogger("make_data")

ROOT = Path(__file__).resolve().parents[1]


def main(out: Path) -> list[Path]:
    (out / "pair" / "off").mkdir(parents=True, exist_ok=True)
    (out / "pair" / "corres").mkdir(parents=True, exist_ok=True)
    written = [
        save(icosphere(3), out / "icosphere.off"),
        save(torus(), out / "torus.off"),
        save(blob(), out / "blob.off"),
    ]
    pair = bumpy_pair()
    written += [
        save(pair.source, out / "pair" / "off" / "bumps_0.off"),
        save(pair.target, out / "pair" / "off" / "bumps_1.off"),
        write_vts(out / "pair" / "corres" / "bumps_0.vts", pair.src_idx),
        write_vts(out / "pair" / "corres" / "bumps_1.vts", pair.tgt_idx),
    ]
    for p in written:
        log.info("wrote %s (%.1f kB)", p.relative_to(out.parent) if p.is_relative_to(out.parent) else p,
                 p.stat().st_size / 1e3)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "data", help="output folder (default: the project's data/)")
    main(ap.parse_args().out)
