"""What every config block shares: unknown keys are errors, floats are finite, and a field that names a component
(a prior, a schedule, a loss, ...) accepts any name the registry knows, so a registered plugin is valid config.

A block that names components also holds their options, as keys of its own (`sds.timesteps.strata` beside
`sds.timesteps.schedule`): the option lives on the component's class, and no block is edited to add one."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError, ValidationError

from dreamfusion import registry

#: The pydantic error type of a component option, whose context names the key (the block is the error's location).
OPTION_ERROR = "component_option"


class Schema(BaseModel):
    """Base for every config block: unknown keys are errors, assignments are validated, floats are finite."""

    model_config = registry.STRICT


class Selecting(Schema):
    """A block that names components, and holds the options of every component it may name as keys of its own.

    A key is valid when a registered component of a kind the block selects declares it, and its value is checked
    against that class's `Options`. The chosen components' options are then filled with their defaults, so what
    the trial ran with is in its config, its YAML and its MLflow params. Options of components not chosen are kept
    as written (a sweep's base may set `strata` for the trials that pick `stratified`)."""

    model_config = ConfigDict(extra="allow")
    #: Field → the kind of component it names (a name, a list of names, or a value no component has, e.g. `auto`).
    selects: ClassVar[dict[str, str]] = {}

    def chosen(self) -> list[type[registry.Component]]:
        """The registered components this block names, in field order; null names every one of its kind (as
        `eval.evaluators: null` runs every evaluator that applies)."""
        found = []
        for field, kind in self.selects.items():
            value = getattr(self, field)
            value = registry.names(kind) if value is None else value
            for name in value if isinstance(value, list) else [value]:
                if isinstance(name, str) and name in registry.names(kind):
                    found.append(registry.find(kind, name))
        return found

    def options_for(self, component: type[registry.Component]) -> Any:
        """The typed `Options` of one of the chosen components."""
        extra = self.__pydantic_extra__ or {}
        return component.Options.model_validate({k: extra[k] for k in component.Options.model_fields if k in extra})

    @model_validator(mode="after")
    def _resolve_options(self) -> Selecting:
        given = dict(self.__pydantic_extra__ or {})
        resolved: dict[str, Any] = {}
        for component in self.chosen():
            mine = {k: v for k, v in given.items() if k in component.Options.model_fields}
            resolved.update(_checked(component.Options, mine, "").model_dump())
        for key, value in given.items():
            if key not in resolved:
                resolved[key] = getattr(_checked(self._owner(key).Options, {}, key, value), key)
        object.__setattr__(self, "__pydantic_extra__", resolved)
        return self

    def _owner(self, key: str) -> type[registry.Component]:
        """A registered component of the block's kinds that declares `key`; none is an unknown key."""
        for kind in self.selects.values():
            for component in registry.components(kind):
                if key in component.Options.model_fields:
                    return component
        raise PydanticCustomError(OPTION_ERROR, "{key}: {message}", {"key": key, "message": "unknown key"})


def selecting_blocks(block: BaseModel) -> list[Selecting]:
    """Every block at or under `block` that names components, outermost first: where chosen components live."""
    found = [block] if isinstance(block, Selecting) else []
    for name in type(block).model_fields:
        child = getattr(block, name)
        if isinstance(child, BaseModel):
            found += selecting_blocks(child)
    return found


def _checked(options: type[registry.Options], values: dict[str, Any], key: str, *one: Any) -> registry.Options:
    """`options` validated from `values`, or with the single `key` set to `one[0]` alone; an error names its key
    (none for a check of the options together, which the block's name then locates)."""
    try:
        if one:
            found = options.model_construct()
            options.__pydantic_validator__.validate_assignment(found, key, one[0])
            return found
        return options.model_validate(values)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or key
        raise PydanticCustomError(
            OPTION_ERROR, "{key}: {message}", {"key": where, "message": first["msg"].removeprefix("Value error, ")}
        ) from None


def _registered(kind: str):
    def check(name: str) -> str:
        registry.find(kind, name)  # a ConfigError (a ValueError) that names the known components
        return name

    return check


def _marks(kind: str) -> Any:
    """The field metadata `df-sweep config` reads to list the registered names of a component field."""
    return Field(json_schema_extra={"component": kind})


# The types of the fields that name a registered component.
PriorName = Annotated[str, AfterValidator(_registered("prior")), _marks("prior")]
ScheduleName = Annotated[str, AfterValidator(_registered("schedule")), _marks("schedule")]
WeightingName = Annotated[str, AfterValidator(_registered("weighting")), _marks("weighting")]
LossName = Annotated[str, AfterValidator(_registered("loss")), _marks("loss")]
EvaluatorName = Annotated[str, AfterValidator(_registered("evaluator")), _marks("evaluator")]
