"""A typed field as the reference shows it: its type with its bounds, its default and its meaning, read from the
pydantic field (config blocks and components' options alike)."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo

from dreamfusion import registry
from dreamfusion.reference.markdown import code, prose

#: Bounds of a constrained field (annotated_types' attribute names), as the reference writes them.
_BOUNDS = (
    ("ge", "≥ {}"),
    ("gt", "> {}"),
    ("le", "≤ {}"),
    ("lt", "< {}"),
    ("multiple_of", "multiple of {}"),
    ("min_length", "length ≥ {}"),
    ("max_length", "length ≤ {}"),
)


@contextmanager
def code_defaults() -> Iterator[None]:
    """Defaults as the code states them, with no environment variable set: a default that the environment changes
    (`DF_SWEEP_SPEEDUPS=off` turns the speed-ups off) would otherwise make the pages differ between machines."""
    saved = dict(os.environ)
    os.environ.clear()
    try:
        yield
    finally:
        os.environ.update(saved)


def type_text(info: FieldInfo) -> str:
    """`int, ≥ 1, ≤ 64`, `"glb" | "obj" | "ply"`, `prior name`, `prompt | None`, as plain text."""
    shown = _annotation(info.annotation)
    mark = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if shown == "str" and mark.get("component"):
        shown = f"{mark['component']} name"
    elif shown == "str" and registry.is_prompt(info):
        shown = "prompt"
    bounds = [text.format(getattr(m, attr)) for m in info.metadata for attr, text in _BOUNDS if hasattr(m, attr)]
    return ", ".join([shown, *bounds])


def default_text(value: Any) -> str:
    """The default as it would be written in YAML (JSON scalars and lists are YAML), as a code span."""
    return code(json.dumps(value, ensure_ascii=False))


def meaning(info: FieldInfo) -> str:
    return prose(info.description or "")


def documented_default(info: FieldInfo) -> Any:
    """A component option's default, computed as the code states it (see `code_defaults`)."""
    with code_defaults():
        return info.get_default(call_default_factory=True)


def option_row(key: str, info: FieldInfo) -> list[str]:
    """key, type, default, meaning: a row of an options table."""
    return [code(key), prose(type_text(info)), default_text(documented_default(info)), meaning(info)]


def _annotation(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is Annotated:
        return _marked(args[0], args[1:])
    if origin is Literal:
        return " | ".join(json.dumps(a, ensure_ascii=False) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_annotation(a) for a in args)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_annotation(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation))


def _marked(inner: Any, metadata: tuple[Any, ...]) -> str:
    """A type carrying the registry's marks: a component's name (`evaluator name`) or a prompt the prior must know."""
    for m in metadata:
        extra = getattr(m, "json_schema_extra", None)
        if isinstance(extra, dict) and extra.get("component"):
            return f"{extra['component']} name"
        if isinstance(extra, dict) and extra.get("prompt"):
            return "prompt"
    return _annotation(inner)
