"""A trial's MLflow params, written and read back: the flattened trial config (`config.files.flatten`, dotted keys,
JSON-mode values) as text, because MLflow stores a param as a string. Tracking writes them here; `analysis/`
reads them back here, typed by the trial schema rather than guessed from the text.

Why by the schema: the text alone is ambiguous. A YAML reading keeps `5e-05` a string (YAML 1.1 wants a dot), so a
learning-rate axis would be plotted as categories, and turns a prompt `no` or `on` into a boolean; a prompt `1`
becomes a number. The schema says what each key holds, so `optim.lr_grid` is a float, `prompt` stays text and
`camera.elevation` is a pair of floats.

Keys the schema does not declare (the options of a registered component or a plugin, which live on the
component's class, and keys of an older or newer schema) are read by one documented rule: the text is what
`str()` made of a JSON-mode value, so a Python literal of a number, boolean, null or list is taken as that value,
and anything else stays the text it is (`no`, `a red cube`). A list comes back as a tuple, so that a list-valued
setting can be grouped and compared like any other.
"""

from __future__ import annotations

import ast
import types
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from dreamfusion.config.files import flatten
from dreamfusion.config.schema import TrialConfig
from dreamfusion.tracking.runs import MAX_TAG_VALUE

#: How `str()` writes a null: an optional field that is unset.
NULL = "None"
#: What a logged param's text is read as: by the schema's type of its key.
Kind = Literal["text", "int", "float", "bool", "list"]


def logged_params(cfg: BaseModel) -> dict[str, str]:
    """The params a trial logs: every dotted key of its config, the value as text (cut at MLflow's limit: a cut
    list is read back as the text it then is)."""
    return {key: str(value)[:MAX_TAG_VALUE] for key, value in flatten(cfg).items()}


def typed(key: str, text: Any) -> Any:
    """A logged param's value, typed by the schema's field for `key` (text it cannot be: kept as written); keys the
    schema does not declare by the module's literal rule. A value that is not text (missing: None, NaN) is kept."""
    if not isinstance(text, str):
        return text
    declared = schema_kinds().get(key)
    if declared is None:
        return _literal(text)
    kind, optional = declared
    if optional and text == NULL:
        return None
    return _as(kind, text)


@cache
def schema_kinds() -> dict[str, tuple[Kind, bool]]:
    """Dotted key → (what its value is, whether it may be null), for every field the trial schema declares."""
    return _kinds(TrialConfig, "")


def _kinds(model: type[BaseModel], prefix: str) -> dict[str, tuple[Kind, bool]]:
    found: dict[str, tuple[Kind, bool]] = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= _kinds(annotation, f"{prefix}{name}.")
        else:
            found[f"{prefix}{name}"] = _kind(annotation)
    return found


def _kind(annotation: Any) -> tuple[Kind, bool]:
    """What an annotation holds, and whether it admits None: `float | None` → ("float", True)."""
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(members) < len(get_args(annotation))
        annotation = members[0] if len(members) == 1 else Any
    origin = get_origin(annotation)
    if origin in (list, tuple):
        return "list", optional
    simple: dict[Any, Kind] = {bool: "bool", int: "int", float: "float"}
    return simple.get(annotation, "text"), optional  # str, Literal and the component names are text


def _as(kind: Kind, text: str) -> Any:
    """`text` as a value of `kind`; the text itself when it is not one (a value logged under another schema)."""
    if kind == "text":
        return text
    if kind == "bool":
        return {"True": True, "False": False}.get(text, text)
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        return text
    value = _literal(text)
    return value if isinstance(value, tuple) else text


def _literal(text: str) -> Any:
    """The value `str()` wrote as `text`, when it is the literal of a number, boolean, null or list; else `text`."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    if isinstance(value, list):
        return tuple(value)
    return value if value is None or isinstance(value, (bool, int, float)) else text
