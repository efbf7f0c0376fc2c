"""L7: the ``geomot`` command.

Each sub-command lives in its own module of this package and exposes ``add_parser(subparsers)`` (which sets
``func``) and nothing else public. Register a new one by adding its module name to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Sequence

from geomot import __version__
from geomot._core.errors import GeomotError

__all__ = ["COMMANDS", "build_parser", "main", "plain_text"]

COMMANDS: tuple[str, ...] = (
    # one line per sub-command module
    "demo",
    "deform",
    "distance",
    "evaluate",
    "info",
    "match",
    "reconstruct",
    "train",
    "view",
)


_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj|exc|ref|doc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")
_STRONG = re.compile(r"\*\*([^*]+)\*\*")


def plain_text(text: str | None) -> str | None:
    """``text`` without reStructuredText markup, for terminal help: double-backquoted literals, roles such as
    ``:func:`name``` and ``**strong**`` become their plain words."""
    if text is None:
        return None
    return _STRONG.sub(r"\1", _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text)))


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip markup from the description, epilog and argument help of ``parser`` and of its sub-commands."""
    parser.description, parser.epilog = plain_text(parser.description), plain_text(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
            for sub in action.choices.values():
                _plain_help(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geomot", description="Optimal transport for meshes and point clouds: distances, matching, deformation."
    )
    parser.add_argument("--version", action="version", version=f"geomot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"geomot.cli.{name}").add_parser(sub)
    _plain_help(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``geomot`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (GeomotError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"geomot {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
