"""The generated pages of docs/reference/, and the check that the committed ones are what the code generates now.

The typer app comes in as an argument: the command line imports this package to print the same text, and an import
back from here would make a cycle."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamfusion.reference.catalogue import catalogue_markdown
from dreamfusion.reference.cli_page import cli_markdown
from dreamfusion.reference.config_page import config_markdown

#: How the pages are regenerated: named in each page's first line, and by a failing check.
COMMAND = "python scripts/gen_reference.py"
PROGRAM = "df-sweep"
HEADER = f"<!-- Generated from the code by `{COMMAND}`: edit the docstrings and help texts, not this page. -->\n"


def generate(app: typer.Typer) -> dict[str, str]:
    """File name → text of every reference page."""
    bodies = {
        "cli.md": cli_markdown(app, PROGRAM),
        "components.md": catalogue_markdown(),
        "config.md": config_markdown(),
    }
    return {name: HEADER + body for name, body in sorted(bodies.items())}


def stale(directory: Path, app: typer.Typer) -> list[str]:
    """The pages in `directory` that are missing or differ from what the code generates, by name."""
    return [name for name, text in generate(app).items() if _read(directory / name) != text]


def write(directory: Path, app: typer.Typer) -> list[str]:
    """Write every page whose text changed; the names of those written."""
    written = []
    for name, text in generate(app).items():
        if _read(directory / name) != text:
            (directory / name).write_text(text, encoding="utf-8")
            written.append(name)
    return written


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None
