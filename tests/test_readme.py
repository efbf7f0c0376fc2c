"""The README's code and the runnable scripts of the user guide work as they are written.

- every name a Python block of the README (or a runnable guide script) uses is defined in it: a static check;
- the guide scripts marked ``<!-- runnable: ARGS -->`` in ``docs/`` run from a folder holding ``data/`` and exit 0;
- the README's Python blocks run as they are (``slow``: the deformation fit and the GIF take ~40 s on one core);
- the ``make`` targets and ``geomot`` commands the README names exist.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)
RUNNABLE = re.compile(r"<!-- runnable(?::([^>]*))? -->\s*```python\n(.*?)```", re.S)
GUIDES = ("getting-started.md", "losses-in-training.md")


def undefined_names(source: str) -> list[str]:
    """Names read by ``source`` before (or without) being bound by it, builtins excepted, in order of first use.

    Statements are followed in order; a name bound anywhere inside a function or class body counts as bound in it.
    """
    tree = ast.parse(source)
    bound = set(dir(builtins))
    missing: list[str] = []

    def bind_target(node: ast.AST) -> None:
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                bound.add(n.id)

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound.add((alias.asname or alias.name).split(".")[0])
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            inner = {a.arg for a in ast.walk(node) if isinstance(a, ast.arg)}
            inner |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            saved = set(bound)
            bound.update(inner)
            for child in node.body:
                visit(child)
            bound.clear()
            bound.update(saved)
            return
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            if node.value is not None:
                visit(node.value)
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                bind_target(target)
            return
        if isinstance(node, (ast.For, ast.comprehension)):
            visit(node.iter)
            bind_target(node.target)
            for child in [*getattr(node, "ifs", []), *getattr(node, "body", []), *getattr(node, "orelse", [])]:
                visit(child)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            for gen in node.generators:
                visit(gen)
            for part in (getattr(node, "elt", None), getattr(node, "key", None), getattr(node, "value", None)):
                if part is not None:
                    visit(part)
            return
        if isinstance(node, ast.withitem):
            visit(node.context_expr)
            if node.optional_vars is not None:
                bind_target(node.optional_vars)
            return
        if isinstance(node, ast.NamedExpr):
            visit(node.value)
            bind_target(node.target)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
            if node.id not in missing:
                missing.append(node.id)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in tree.body:
        visit(statement)
    return missing


def _readme_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text())


def _runnable(page: str) -> tuple[list[str], str]:
    found = RUNNABLE.findall((ROOT / "docs" / page).read_text())
    assert len(found) == 1, f"docs/{page}: expected one block marked <!-- runnable -->, found {len(found)}"
    args, code = found[0]
    return args.split(), code


def _workdir(tmp_path: Path) -> Path:
    """A folder that holds ``data/`` (a link to the project's) so that relative paths in the snippets work."""
    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    return tmp_path


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYVISTA_OFF_SCREEN="true")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_undefined_names_finds_a_name_used_before_it_is_bound():
    assert undefined_names("import torch\nx = torch.rand(3)\nprint(x, y)\ny = 1\n") == ["y"]
    assert undefined_names("for i in range(2):\n    s = i\nprint(s, [j for j in range(i)])\n") == []
    assert undefined_names("def f(a):\n    return a + b\n") == ["b"]
    assert undefined_names("with open('f') as h:\n    h.read()\nz.close()\n") == ["z"]


def test_every_name_in_the_readme_snippets_is_defined():
    blocks = _readme_blocks()
    assert blocks, "README.md has no python block"
    for block in blocks:
        assert undefined_names(block) == [], f"README.md uses names it never defines:\n{block}"


@pytest.mark.parametrize("page", GUIDES)
def test_every_name_in_a_guide_script_is_defined(page):
    _, code = _runnable(page)
    assert undefined_names(code) == []


@pytest.mark.parametrize("page", GUIDES)
def test_a_guide_script_runs(page, tmp_path):
    args, code = _runnable(page)
    work = _workdir(tmp_path)
    (work / "script.py").write_text(code)
    out = subprocess.run(
        [sys.executable, "script.py", *args],
        cwd=work,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, f"docs/{page} script failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    assert "SW_2" in out.stdout


@pytest.mark.slow
def test_the_readme_python_blocks_run_as_written(tmp_path):
    work = _workdir(tmp_path)
    (work / "readme.py").write_text("\n\n".join(_readme_blocks()))
    out = subprocess.run(
        [sys.executable, "readme.py"], cwd=work, env=_env(), capture_output=True, text=True, timeout=900, check=False
    )
    assert out.returncode == 0, f"README snippet failed:\n{out.stderr[-4000:]}"
    assert (work / "flow.gif").stat().st_size > 0 and (work / "flow.html").stat().st_size > 0


def test_the_make_targets_and_commands_the_readme_names_exist():
    from geomot.cli import COMMANDS

    text = README.read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`?make ([a-z-]+)`?", text)):
        assert re.search(rf"^{target}:", makefile, re.M), f"README names 'make {target}', which the Makefile lacks"
    shell = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S))
    assert "geomot match" in shell
    for command in set(re.findall(r"^geomot ([a-z-]+)", shell, re.M)):
        assert command in COMMANDS, f"README names 'geomot {command}', which geomot.cli lacks"
