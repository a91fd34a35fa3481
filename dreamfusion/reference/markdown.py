"""Markdown that renders as written whatever a docstring holds: code spans kept, and outside them the characters
that would open an HTML tag, an emphasis or a new table cell escaped, so a table's row stays one row."""

from __future__ import annotations

import re
from collections.abc import Sequence

_CODE_SPAN = re.compile(r"(`+).+?\1")
#: An underscore that could open or close an emphasis: one not inside a word (`t_min` is safe as written).
_LOOSE_UNDERSCORE = re.compile(r"(?<!\w)_|_(?!\w)")


def prose(text: str) -> str:
    """A docstring or help text as one line of Markdown: line breaks folded, code spans as written."""
    text = " ".join(text.split())
    pieces, end = [], 0
    for span in _CODE_SPAN.finditer(text):
        pieces += [_escape(text[end : span.start()]), span.group(0)]
        end = span.end()
    return "".join([*pieces, _escape(text[end:])])


def paragraphs(text: str) -> list[str]:
    """A multi-paragraph help text as Markdown paragraphs, each a line, a blank line between them."""
    blocks = [prose(block) for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]
    return [line for block in blocks for line in (block, "")][:-1]


def code(text: str) -> str:
    """`text` as a code span; one with a pipe is escaped prose instead, since no table syntax escapes a pipe in
    a code span the same way on every renderer."""
    return prose(text) if "|" in text else f"`{text}`"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A pipe table of cells that are already Markdown."""
    lines = [_row(headers), _row(["---"] * len(headers))]
    return lines + [_row(row) for row in rows]


def anchor(*parts: str) -> str:
    """An element id from names that may hold dots or other punctuation: `sds.timesteps` → `sds-timesteps`."""
    return re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _escape(text: str) -> str:
    for raw, escaped in (("\\", "\\\\"), ("|", "\\|"), ("*", "\\*"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(raw, escaped)
    return _LOOSE_UNDERSCORE.sub(r"\\_", text)
