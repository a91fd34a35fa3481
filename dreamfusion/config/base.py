"""What every config block shares: unknown keys are errors, floats are finite, and a field that names a component
(a prior, a schedule, a loss, ...) accepts any name the registry knows, so a registered plugin is valid config."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from dreamfusion import registry


class Schema(BaseModel):
    """Base for every config block: unknown keys are errors, assignments are validated, floats are finite."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


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
