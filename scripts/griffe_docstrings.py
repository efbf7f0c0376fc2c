"""Griffe extension of the documentation build (``mkdocs.yml``: mkdocstrings ``extensions``).

geomot's docstrings are Google style with a few reStructuredText habits that Markdown does not know. Before the
docstrings are parsed this extension rewrites, in the text given to the site only (the source is unchanged):

- cross-reference roles such as ``:func:`match``` or ``:class:`~geomot.Mesh``` into code spans;
- runs of interactive lines (``>>> `` and their ``... `` continuations) into fenced Python blocks.
"""

from __future__ import annotations

import re
from typing import Any

try:
    import griffe
except ModuleNotFoundError:  # the rewrites below work (and are tested) without the docs extra
    griffe = None

ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc|ref|doc|py:\w+):`~?([^`<]+?)(?:\s*<[^>]+>)?`")
PROMPT = re.compile(r"^(\s*)(>>>|\.\.\.)( |$)")


def roles_to_code(text: str) -> str:
    """``:func:`x``` -> `` `x` `` (the last dotted part for ``~``-prefixed targets, as Sphinx shows them)."""

    def code(match: re.Match[str]) -> str:
        target = match.group(1).strip()
        if match.group(0).startswith(":") and "`~" in match.group(0):
            target = target.rsplit(".", 1)[-1]
        return f"`{target}`"

    return ROLE.sub(code, text)


def prompts_to_fences(text: str) -> str:
    """Wrap each run of ``>>>`` / ``...`` lines in a fenced Python block, prompts removed, indentation kept."""
    out: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        match = PROMPT.match(lines[i])
        if not match or match.group(2) != ">>>":
            out.append(lines[i])
            i += 1
            continue
        indent = match.group(1)
        block = []
        while i < len(lines) and (m := PROMPT.match(lines[i])) and m.group(1) == indent:
            block.append(lines[i][len(indent) + len(m.group(2)) + len(m.group(3)) :])
            i += 1
        out += [f"{indent}```python", *(f"{indent}{line}" for line in block), f"{indent}```"]
    return "\n".join(out)


if griffe is not None:

    class DocstringMarkup(griffe.Extension):
        """Rewrites the reStructuredText habits of every loaded docstring (see the module docstring)."""

        def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
            if obj.docstring is not None:
                obj.docstring.value = prompts_to_fences(roles_to_code(obj.docstring.value))
