"""The documentation site covers the public API: every name of ``geomot.__all__`` and of each public subpackage's
``__all__`` has an entry in ``docs/api/``, every entry names an object that exists, the navigation lists every
page, the generated CLI page lists every command, and the packaging facts the docs rely on hold (one version,
``py.typed``)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

import geomot

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
SUBPACKAGES = (
    "ops",
    "structures",
    "transport",
    "losses",
    "correspondence",
    "models",
    "deformation",
    "metrics",
    "io",
    "train",
    "viz",
    "errors",
)
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)
LINK = re.compile(r"\]\[([\w.]+)\]")


def _resolve(path: str) -> object:
    """The object a dotted path names at run time: attributes first (``geomot.transport.sinkhorn`` is the function
    that the package imports, not its module of the same name), modules where no attribute exists
    (``geomot.transport.sinkhorn.sinkhorn`` is the function in that module)."""
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i in range(1, len(parts)):
        if hasattr(obj, parts[i]):
            obj = getattr(obj, parts[i])
            continue
        if not isinstance(obj, ModuleType):  # an object standing where a module of the same name is
            obj = importlib.import_module(".".join(parts[:i]))
            if hasattr(obj, parts[i]):
                obj = getattr(obj, parts[i])
                continue
        obj = importlib.import_module(".".join(parts[: i + 1]))
    return obj


def _shadowed(path: str) -> bool:
    """True when ``path`` names a function or class at run time but a module to the docs generator (a package
    attribute with the name of one of its submodules): such an entry must use the defining module's path."""
    parent = path.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(path) if parent else None
    except (ImportError, ValueError):
        spec = None
    return spec is not None and not isinstance(_resolve(path), ModuleType)


def documented_paths(pages: dict[str, str]) -> dict[str, str]:
    """``{dotted path: page}`` of every ``::: path`` directive in the given page texts."""
    return {path: page for page, text in pages.items() for path in DIRECTIVE.findall(text)}


def missing_entries(module: str, names: list[str], documented: set[str]) -> list[str]:
    """Names of ``module.__all__`` with no entry: neither ``::: module.name`` (not shadowed by a submodule) nor an
    entry for the same object under its defining module's path."""
    ids = {id(_resolve(path)) for path in documented if not _shadowed(path)}
    mod = importlib.import_module(module)
    return [
        name
        for name in names
        if not (
            (f"{module}.{name}" in documented and not _shadowed(f"{module}.{name}")) or id(getattr(mod, name)) in ids
        )
    ]


def _pages() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(API.glob("*.md"))}


def test_missing_entries_reports_an_undocumented_name():
    pages = {"x.md": "# x\n\n::: geomot.ops.knn_points\n\n::: geomot.ops.face_areas\n"}
    documented = set(documented_paths(pages))
    assert missing_entries("geomot.ops", ["knn_points", "face_areas"], documented) == []
    assert missing_entries("geomot.ops", ["knn_points", "knn_gather"], documented) == ["knn_gather"]


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_every_public_name_of_a_subpackage_has_an_api_entry(sub):
    module = importlib.import_module(f"geomot.{sub}")
    page = API / f"{sub}.md"
    assert page.exists(), f"docs/api/{sub}.md is missing"
    documented = set(documented_paths({page.name: page.read_text()}))
    missing = missing_entries(f"geomot.{sub}", list(module.__all__), documented)
    assert not missing, f"docs/api/{sub}.md has no '::: geomot.{sub}.NAME' entry for: {', '.join(missing)}"


def test_every_api_entry_names_an_existing_object():
    for path, page in documented_paths(_pages()).items():
        try:
            _resolve(path)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"docs/api/{page}: '::: {path}' does not resolve ({e})")
        assert not _shadowed(path), f"docs/api/{page}: '::: {path}' would render the module {path}; name the object"


def test_an_entry_shadowed_by_a_submodule_does_not_count():
    # geomot.transport.sinkhorn is the function at run time, but the docs generator renders the module
    assert _shadowed("geomot.transport.sinkhorn") and not _shadowed("geomot.transport.sinkhorn.sinkhorn")
    assert missing_entries("geomot.transport", ["sinkhorn"], {"geomot.transport.sinkhorn"}) == ["sinkhorn"]
    assert missing_entries("geomot.transport", ["sinkhorn"], {"geomot.transport.sinkhorn.sinkhorn"}) == []


def test_every_top_level_name_is_listed_and_documented():
    pages = _pages()
    top = pages["geomot.md"]
    documented = documented_paths(pages)
    by_id = {id(_resolve(path)): path for path in documented}
    links = set(LINK.findall(top))
    for name in geomot.__all__:
        if name == "__version__" or name in SUBPACKAGES:
            continue
        assert f"`geomot.{name}`" in top, f"docs/api/geomot.md does not list geomot.{name}"
        if name == "deform":  # the package geomot.deformation under another name
            assert geomot.deform is importlib.import_module("geomot.deformation")
            continue
        target = by_id.get(id(getattr(geomot, name)))
        assert target is not None, f"geomot.{name} has no API entry in docs/api/"
        assert target in links, f"docs/api/geomot.md: geomot.{name} should link to [{target}]"


def test_the_navigation_lists_every_api_page_and_the_generated_pages():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in sorted(API.glob("*.md")):
        assert f"api/{page.name}" in nav, f"mkdocs.yml nav lacks api/{page.name}"
    for generated in ("cli.md", "benchmarks.md", "changelog.md"):
        assert generated in nav
    for note in sorted((ROOT / "docs" / "notes").glob("*.md")):
        assert f"notes/{note.name}" in nav, f"mkdocs.yml nav lacks notes/{note.name}"


def test_the_site_loads_no_web_fonts():
    text = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^\s+font:\s*false", text, re.M)
    assert "extra_javascript" not in text and "analytics" not in text


def _hooks():
    spec = importlib.util.spec_from_file_location("geomot_mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_page_has_every_command_and_option():
    from geomot.cli import COMMANDS, build_parser

    page = _hooks().cli_markdown()
    for name in COMMANDS:
        assert f"\n## geomot {name}\n" in page, f"the CLI page has no section for geomot {name}"
    match = next(a for a in build_parser()._actions if a.dest == "command").choices["match"]
    for action in match._actions:
        for flag in action.option_strings:
            assert f"`{flag}`" in page, f"the CLI page does not document geomot match {flag}"


def test_the_optional_pages_leave_the_navigation_only_when_absent(tmp_path):
    hooks = _hooks()
    for page in ("present.md", "other.md"):
        (tmp_path / page).write_text("# p\n")
    hooks.OPTIONAL_PAGES = ("present.md", "absent.md")
    config = {
        "docs_dir": str(tmp_path),
        "nav": [{"Guide": [{"P": "present.md"}, {"A": "absent.md"}, "other.md"]}, {"Gone": "absent.md"}],
    }
    assert hooks.on_config(config)["nav"] == [{"Guide": [{"P": "present.md"}, "other.md"]}]


def test_a_page_missing_from_the_navigation_is_listed_under_more(tmp_path):
    hooks = _hooks()
    (tmp_path / "notes").mkdir()
    for page in ("a.md", "new.md", "notes/n.md"):
        (tmp_path / page).write_text("# p\n")
    config = {"docs_dir": str(tmp_path), "nav": [{"A": "a.md"}]}
    assert hooks.on_config(config)["nav"] == [{"A": "a.md"}, {"More": ["new.md", "notes/n.md"]}]


def test_the_version_is_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml: the version belongs in geomot/__init__.py only"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "geomot.__version__"}
    assert importlib.metadata.version("geomot") == geomot.__version__


def test_the_package_is_typed():
    assert (ROOT / "geomot" / "py.typed").exists()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["geomot"]


def _markup():
    spec = importlib.util.spec_from_file_location("geomot_griffe_docstrings", ROOT / "scripts" / "griffe_docstrings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docstring_roles_become_code_spans():
    roles_to_code = _markup().roles_to_code
    assert roles_to_code("see :func:`match` and :class:`~geomot.structures.Mesh`.") == "see `match` and `Mesh`."
    assert roles_to_code(":meth:`Mesh.update_verts` keeps ``faces``") == "`Mesh.update_verts` keeps ``faces``"


def test_docstring_prompts_become_fenced_blocks():
    text = "Example:\n    >>> x = f(\n    ...     1)\n    >>> g(x)\n    text after"
    assert _markup().prompts_to_fences(text) == (
        "Example:\n    ```python\n    x = f(\n        1)\n    g(x)\n    ```\n    text after"
    )
