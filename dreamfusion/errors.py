"""The errors every user mistake and every failure outside df-sweep become, and the one-line form of any exception
and of any value echoed back, shared by every layer."""

from __future__ import annotations

#: The most characters of a user's value (a prompt, an override) an error message repeats.
MAX_ECHO = 80


class ConfigError(ValueError):
    """A user mistake in a config or spec: the message is one line naming the file, the key and what was expected."""


class RunError(RuntimeError):
    """Something outside the user's config failed while working (the tracking store refused a write, say): the
    message is one line saying what happened, what was kept and how to go on."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none: libraries (transformers, diffusers,
    Ray) write messages many lines long, and a user needs the line that says what went wrong."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1].strip()  # Tune's errors carry the traceback as their message: its last line is the error
    return lines[0] if lines else type(exc).__name__


def shorten(value: object, limit: int = MAX_ECHO) -> str:
    """`repr(value)`, cut to `limit` characters with its length said: a 10 KB prompt is not repeated in an error."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(str(value)):,} characters)"
