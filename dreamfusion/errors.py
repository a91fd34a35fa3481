"""The error every user mistake becomes, and the one-line form of any exception, shared by every layer."""

from __future__ import annotations


class ConfigError(ValueError):
    """A user mistake in a config or spec: the message is one line naming the file, the key and what was expected."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none: libraries (transformers, diffusers,
    Ray) write messages many lines long, and a user needs the line that says what went wrong."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
