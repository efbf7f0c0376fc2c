"""Which ``raise`` statements of ``geomot/`` no test reaches: a coverage-based audit of the error paths.

Run the suite under coverage first, then this script on its data file::

    .venv/bin/python -m coverage run --source=geomot -m pytest -q
    .venv/bin/python scripts/raise_audit.py [--data .coverage] [--module geomot/io] [--list]

A ``raise`` counts as tested when its line ran during the tests (an error path that runs and is not expected
fails its test, so a reached ``raise`` is one some test asserts, or one that is caught and handled on purpose).
Bare re-raises (``raise`` alone) are skipped. Prints the share of reached raise sites per module, and with
``--list`` every unreached one with its file, line and exception.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def raise_sites(path: Path) -> list[tuple[int, str]]:
    """``(line, exception name)`` of every ``raise X`` in a file (bare ``raise`` excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.attr if isinstance(exc, ast.Attribute) else getattr(exc, "id", type(exc).__name__)
            out.append((node.lineno, name))
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT / ".coverage"), help="coverage data file")
    ap.add_argument("--module", default="geomot", help="only files under this path")
    ap.add_argument("--list", action="store_true", help="list every unreached raise site")
    args = ap.parse_args(argv)
    try:
        import coverage
    except ImportError:
        print("raise_audit: needs the coverage package (pip install coverage)", file=sys.stderr)
        return 2
    if not Path(args.data).exists():
        print(f"raise_audit: no coverage data at {args.data}; run the tests under coverage first", file=sys.stderr)
        return 2
    data = coverage.CoverageData(basename=args.data)
    data.read()
    executed = {Path(f).resolve(): set(data.lines(f) or ()) for f in data.measured_files()}
    per_module: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missing: list[str] = []
    for path in sorted((ROOT / args.module).rglob("*.py")):
        rel = path.relative_to(ROOT)
        lines = executed.get(path.resolve(), set())
        for line, name in raise_sites(path):
            key = str(rel.parent if rel.name == "__init__.py" else rel.with_suffix(""))
            per_module[key][1] += 1
            if line in lines:
                per_module[key][0] += 1
            else:
                missing.append(f"{rel}:{line}: {name}")
    reached = sum(v[0] for v in per_module.values())
    total = sum(v[1] for v in per_module.values())
    for key, (hit, n) in sorted(per_module.items(), key=lambda kv: kv[1][0] / kv[1][1]):
        print(f"{hit:4d} / {n:4d}  {100 * hit / n:5.1f}%  {key}")
    print(f"{reached} of {total} raise sites reached by the tests ({100 * reached / max(total, 1):.1f}%)")
    if args.list:
        print("\n".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
