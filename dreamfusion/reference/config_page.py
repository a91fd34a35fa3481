"""The trial config reference as Markdown, from the schema: a section per block with a table of its keys (dotted
key, type, default, meaning), the registered names a component-selecting key accepts, and the options the
registered components add to the block, with the components that read each."""

from __future__ import annotations

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from dreamfusion import registry
from dreamfusion.config.base import Selecting
from dreamfusion.config.files import component_options
from dreamfusion.config.schema import TrialConfig
from dreamfusion.reference.fields import code_defaults, default_text, meaning, option_row, type_text
from dreamfusion.reference.markdown import anchor, code, prose, table

INTRO = (
    "Every key of a trial config: the YAML file of `df-sweep run --config` and the `base` of a sweep spec. A key "
    "is addressed by its dotted path in `--set` and in a sweep's `space`; `df-sweep config` prints the same keys as "
    "commented YAML. A block that names a component (a prior, a schedule, a loss, ...) also takes the chosen "
    "component's own options as keys of its own: they follow the block's table, with the components that read "
    "them. Defaults are the code's own, with no environment variable set."
)
HEADERS = ("key", "type", "default", "meaning")


def config_markdown() -> str:
    """The whole page, from the schema and the components registered now."""
    with code_defaults():
        defaults = TrialConfig()
    lines = ["# Trial config", "", prose(INTRO), "", "## Top-level keys {#top-level}", ""]
    lines += table(HEADERS, _rows(defaults, ""))
    lines += _sections(defaults, "")
    return "\n".join(lines) + "\n"


def _sections(block: BaseModel, prefix: str) -> list[str]:
    """A section for each block nested in `block`, depth first in schema order (`sds`, then `sds.timesteps`)."""
    lines: list[str] = []
    for name, info in type(block).model_fields.items():
        value = getattr(block, name)
        if isinstance(value, BaseModel):
            key = prefix + name
            lines += ["", f"## {key} {{#{anchor(key)}}}", ""]
            lines += [prose(t) + "\n" for t in (info.description, type(value).__dict__.get("__doc__")) if t]
            lines += table(HEADERS, _rows(value, key + "."))
            if isinstance(value, Selecting):
                lines += _component_options(type(value), key)
            lines += _sections(value, key + ".")
    return lines


def _rows(block: BaseModel, prefix: str) -> list[list[str]]:
    selects = block.selects if isinstance(block, Selecting) else {}
    rows = []
    for name, info in type(block).model_fields.items():
        value = getattr(block, name)
        if isinstance(value, BaseModel):
            key = prefix + name
            rows.append([f"[{code(key)}](#{anchor(key)})", "block", "", meaning(info)])
        else:
            shown = _meaning(info, selects.get(name))
            rows.append([code(prefix + name), prose(type_text(info)), default_text(value), shown])
    return rows


def _meaning(info: FieldInfo, kind: str | None) -> str:
    """The field's docstring, and for a field that names a component, every name registered now."""
    text = meaning(info)
    if kind is None:
        return text
    return f"{text} Registered: {', '.join(code(n) for n in registry.names(kind))}."


def _component_options(block: type[Selecting], key: str) -> list[str]:
    found = component_options(block)
    lines = ["", f"### {key}: component options {{#{anchor(key, 'options')}}}", ""]
    if not found:
        return [*lines, "No registered component of this block declares an option."]
    rows: list[list[str]] = []
    for option, (owners, info) in found.items():
        row = option_row(f"{key}.{option}", info)
        rows.append([*row[:3], ", ".join(code(c.name) for c in owners), row[3]])
    return lines + table(("key", "type", "default", "read by", "meaning"), rows)
