"""Reading configs: YAML files, `--set a.b=c` overrides, validation into one-line errors, the dotted-key (MLflow
params) view, and the commented reference `df-sweep config` prints."""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dreamfusion import registry
from dreamfusion.config.base import OPTION_ERROR, Selecting
from dreamfusion.config.schema import PriorConfig, TrialConfig
from dreamfusion.errors import ConfigError


def describe_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """The first pydantic error as one line, `file: key.path: what was expected`, with how many more there are."""
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return describe_errors(err, source, prefix)[0] + extra


def describe_errors(err: ValidationError, source: str, prefix: str = "") -> list[str]:
    """One line per pydantic error, in the form `file: key.path: what was expected`: a spec's check lists them all."""
    return [_describe(error, source, prefix) for error in err.errors()]


def _describe(error: Any, source: str, prefix: str) -> str:
    loc, msg = _located(error)
    key = ".".join(p for p in (prefix, loc) if p)
    if error["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {key + ': ' if key else ''}{msg}"  # a whole-config check names its keys itself


def _located(error: Any) -> tuple[str, str]:
    """A pydantic error's dotted key and message."""
    loc = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == OPTION_ERROR:  # a component's option: the error's location is its block
        loc, msg = ".".join(p for p in (loc, error["ctx"]["key"]) if p), error["ctx"]["message"]
    return loc, msg


def value_source(
    key: str, path: str | Path | None, overrides: Sequence[str], options: Mapping[str, str] | None = None
) -> str:
    """Where the value of dotted `key` came from, for its error: the option that set it (`options`: config key →
    option, such as `steps` → `--steps`), else `--set`, else the config file, else the defaults."""
    for text in reversed(overrides):
        given = text.partition("=")[0].strip()
        if given == key or key.startswith(f"{given}.") or given.startswith(f"{key}."):
            return (options or {}).get(given, "--set")
    if not key and overrides and not path:  # a check of the whole config: the overrides made it
        return "--set"
    return str(path) if path else "the defaults"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key given twice in one YAML mapping."""


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the last one silently, so a spec
    with two `space:` blocks would sweep only the second, and a config with two `steps:` would run the other one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be given more than once
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in first:
                raise DuplicateKeyError(
                    None, None, f"{key} is given twice (first at line {first[key]})", key_node.start_mark
                )
            first.setdefault(key, line)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping (a key given twice is an error), turning every failure into a one-line ConfigError."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; expected a YAML file")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.load(path.read_text(), Loader=UniqueKeyLoader)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: expected a YAML text file, got bytes that are not UTF-8") from None
    except DuplicateKeyError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(f"{path}: line {line}: {exc.problem}; expected each key once") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` → ("a.b", yaml value of c): `--set sds.guidance_scale=50` gives a float, not a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. sds.guidance_scale=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate mappings; a shorthand string value is kept as is."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part == "prior":  # `prior: toyworld` shorthand, then `--set prior.dtype=...`
            child = _expand_prior(child)
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def _expand_prior(shorthand: str) -> dict[str, Any]:
    """The mapping a `prior: NAME_OR_MODEL` shorthand stands for; one that names nothing is left for validation
    to report with its file and key."""
    try:
        return PriorConfig.model_validate(shorthand).model_dump(exclude_defaults=True)
    except ValidationError:
        return {"kind": shorthand}


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = _deep_copy(data)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(out, key, value)
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def build_trial_config(data: dict[str, Any], source: str, prefix: str = "") -> TrialConfig:
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_error(err, source, prefix)) from None


def load_trial_config(
    path: str | Path | None, overrides: Sequence[str] = (), options: Mapping[str, str] | None = None
) -> TrialConfig:
    """The config of `df-sweep run`: an optional YAML file, then `--set` overrides, validated as one. An error names
    where its value came from: the option (`options`, config key → option), `--set`, the file or the defaults."""
    data = apply_overrides(read_yaml(path) if path else {}, list(overrides))
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as err:
        key, _ = _located(err.errors()[0])
        raise ConfigError(describe_error(err, value_source(key, path, overrides, options))) from None


def flatten(cfg: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config: the MLflow params and the keys a sweep's search space addresses."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        set_dotted(nested, key, value)
    return nested


def to_yaml(cfg: TrialConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def reference(model: type[BaseModel] = TrialConfig, indent: int = 0) -> list[str]:
    """The schema as commented YAML (defaults and every field's docstring), a block's component options after its
    own fields: what `df-sweep config` prints."""
    lines: list[str] = []
    pad = "  " * indent
    defaults = model()
    for name, info in model.model_fields.items():
        value = getattr(defaults, name)
        doc = " ".join((info.description or "").split()) + _registered_names(info)
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{'  # ' + doc if doc else ''}")
            lines += reference(type(value), indent + 1)
            continue
        lines.append(_entry(pad, name, value, doc))
    if issubclass(model, Selecting):
        for key, (owners, info) in component_options(model).items():
            readers = f"{owners[0].kind} {', '.join(c.name for c in owners)} only: "
            doc = readers + " ".join((info.description or "").split())
            lines.append(_entry(pad, key, info.get_default(call_default_factory=True), doc))
    return lines


def component_options(block: type[Selecting]) -> dict[str, tuple[list[type[registry.Component]], Any]]:
    """Every registered option a block accepts: key → (the components that declare it, the first one's field)."""
    found: dict[str, tuple[list[type[registry.Component]], Any]] = {}
    for kind in block.selects.values():
        for component in registry.components(kind):
            for key, info in component.Options.model_fields.items():
                found.setdefault(key, ([], info))[0].append(component)
    return found


def key_annotation(key: str, model: type[BaseModel] = TrialConfig) -> Any:
    """The type a dotted key's field is annotated with (a component's option included), or None for a key the schema
    does not have: a sweep's check reads from it whether a dimension may draw floats."""
    head, _, rest = key.partition(".")
    info = model.model_fields.get(head)
    if info is None:
        found = component_options(model).get(head) if issubclass(model, Selecting) and not rest else None
        return found[1].annotation if found else None
    if not rest:
        return info.annotation
    inner = info.annotation
    return key_annotation(rest, inner) if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def takes_integers(annotation: Any) -> bool:
    """Whether a field holds integers only (`int`, or `int | None`): `bool` and `int | float` do not count."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if union else (annotation,)
    return [a for a in args if a is not type(None)] == [int]


def _entry(pad: str, name: str, value: Any, doc: str) -> str:
    rendered = json.dumps(value, ensure_ascii=False)  # JSON scalars and lists are valid YAML
    return f"{pad}{name}: {rendered}{'  # ' + doc if doc else ''}"


def _registered_names(info: Any) -> str:
    """` (registered: a, b, c)` for a field that names a component, so the reference lists what a plugin added."""
    extra = info.json_schema_extra
    kind = extra.get("component") if isinstance(extra, dict) else None
    return f" (registered: {', '.join(registry.names(kind))})" if kind else ""
