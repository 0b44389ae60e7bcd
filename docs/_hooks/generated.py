"""mkdocs hook: the pages generated from the code at build time.

``reference/cli.md`` gets the help of every command of ``cup4soil.cli.main``'s parser and
``reference/errors.md`` the exception classes of ``cup4soil.errors`` with their docstrings,
each where the page holds its marker comment. Generated on every build, so neither page can
fall behind the code; ``tests/test_docs.py`` checks the built pages name every command,
option and error class.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from typing import Any

CLI_MARKER = "<!-- generated: cli -->"
ERRORS_MARKER = "<!-- generated: errors -->"


def _rst_to_md(text: str) -> str:
    """Docstring markup as Markdown: ``code`` and :role:`target` as code spans."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_markdown() -> str:
    """The reference of every ``cup4soil`` command, from the parser itself."""
    from cup4soil.cli.main import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "96"  # argparse wraps help at $COLUMNS: the same page everywhere
    try:
        parser = build_parser()
        out = ["## cup4soil", "", parser.description or "", "",
               "```text", parser.format_help().rstrip(), "```", ""]

        def commands(p: argparse.ArgumentParser, prefix: str) -> None:
            for name, sub in _subcommands(p).items():  # nested groups too: openeo export
                out.extend([f"## {prefix} {name}", "", _rst_to_md(sub.description or ""), "",
                            "```text", sub.format_help().rstrip(), "```", ""])
                commands(sub, f"{prefix} {name}")

        commands(parser, "cup4soil")
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return "\n".join(out)


def error_classes() -> list[type[Exception]]:
    """Every exception class defined in ``cup4soil.errors``, in source order."""
    from cup4soil import errors

    return [c for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, errors.Cup4SoilError)
            and c.__module__ == errors.__name__]


def errors_markdown() -> str:
    """A section per error class: its bases and its docstring (what it means, the fix)."""
    out: list[str] = []
    for cls in error_classes():
        bases = ", ".join(f"`{b.__name__}`" for b in cls.__bases__)
        doc = _rst_to_md(inspect.getdoc(cls) or "")
        out += [f"## {cls.__name__}", "", f"*Subclass of {bases}.*", "", doc, ""]
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_markdown())
    if ERRORS_MARKER in markdown:
        markdown = markdown.replace(ERRORS_MARKER, errors_markdown())
    return markdown
