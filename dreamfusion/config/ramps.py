"""Ramps: a float setting that moves during training, written the way threestudio writes it.

threestudio lets a weight or a scale follow `[start_step, start_value, end_value, end_step]` (or `[start_value,
end_value, end_step]`, from step 0): the start value until `start_step`, linear in between, the end value from
`end_step` on. Here the same list is a value of the key itself, and `{ramp: [...], shape: cosine}` eases in and out
instead (half a cosine period between the same end points).

A ramp is a value of its key, not a setting beside it: the YAML, a `--set`, a sweep's grid and the MLflow param all
hold the ramp as written, while the trial's config holds at each step the value of that step (`apply`), so every
part of the trial that reads the key reads the ramped value. The value is a function of the step alone: a resumed
trial ramps on exactly.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

#: What `take`'s `rampable` says of a key whose value may be a list or a mapping of its own (no ramp to look for).
HOLDS_COLLECTIONS = "holds lists or mappings"
#: Blocks of the trial config whose float keys may ramp: the trial reads them at every step. The others are read
#: once (→ why that refuses a ramp).
RAMP_BLOCKS = ("optim", "reg", "nerf", "render", "camera", "sds")
FIXED_BLOCKS = {
    "sds.timesteps": "the timestep schedule fixes the t-range when the trial starts; the anneal and hifa schedules "
    "move it",
    "": "read once, not at every step",
}
#: How a ramp may be written: threestudio's two lists, or the mapping that names a shape.
FORMS = "[start_step, start, end, end_step], [start, end, end_step] or {ramp: [...], shape: linear|cosine}"


class Ramp(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    start_step: int
    start: float
    end: float
    end_step: int
    shape: Literal["linear", "cosine"] = "linear"

    def at(self, step: int) -> float:
        """The value at optimisation step `step` (0-based: the step about to run, threestudio's global_step)."""
        frac = min(max((step - self.start_step) / (self.end_step - self.start_step), 0.0), 1.0)
        if self.shape == "cosine":
            frac = (1 - math.cos(math.pi * frac)) / 2
        return self.start + (self.end - self.start) * frac

    def written(self) -> list[float] | dict[str, Any]:
        """The ramp as a config holds it: threestudio's list, or the mapping when the shape is not linear."""
        points = [self.start_step, self.start, self.end, self.end_step]
        return points if self.shape == "linear" else {"ramp": points, "shape": self.shape}


def parse(value: Any) -> Ramp | None:
    """The ramp `value` is written as, None for a value that is not one (a number), ValueError for a bad one."""
    if isinstance(value, Mapping) and "ramp" in value:
        unknown = set(value) - {"ramp", "shape"}
        if unknown:
            raise ValueError(f"a ramp's mapping has only ramp and shape, got {sorted(map(str, unknown))[0]!r}")
        return _points(value["ramp"], value.get("shape", "linear"))
    if isinstance(value, list | tuple):
        return _points(value, "linear")
    return None


def _points(points: Any, shape: Any) -> Ramp:
    if not isinstance(points, list | tuple) or len(points) not in (3, 4):
        raise ValueError(f"a ramp is {FORMS}; got {points!r}")
    if len(points) == 3:
        points = [0, *points]
    steps, values = (points[0], points[3]), (points[1], points[2])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in steps):
        raise ValueError(f"a ramp's start_step and end_step are whole steps, got {points[0]!r} and {points[3]!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ValueError(f"a ramp's start and end are finite numbers, got {points[1]!r} and {points[2]!r}")
    if shape not in ("linear", "cosine"):
        raise ValueError(f"a ramp's shape is linear or cosine, got {shape!r}")
    if not 0 <= steps[0] < steps[1]:
        raise ValueError(f"a ramp needs 0 <= start_step < end_step, got {steps[0]} and {steps[1]}")
    return Ramp(start_step=steps[0], start=values[0], end=values[1], end_step=steps[1], shape=shape)


def take(data: dict[str, Any], rampable: Callable[[str], str | None], prefix: str = "") -> dict[str, Ramp]:
    """Every value of the nested config `data` written as a ramp, by dotted key, each replaced in `data` by its
    start value (what the schema then checks). `rampable(key)` says why a key cannot ramp (None: it can;
    `HOLDS_COLLECTIONS`: its lists and mappings are its own values); it is asked only of list and mapping values."""
    found: dict[str, Ramp] = {}
    for name, value in list(data.items()):
        key = f"{prefix}{name}"
        if isinstance(value, dict) and "ramp" not in value:
            found |= take(value, rampable, f"{key}.")
            continue
        if not isinstance(value, list | tuple | dict) or (refusal := rampable(key)) == HOLDS_COLLECTIONS:
            continue  # a scalar, or a list of a key that holds lists (plugins, camera.elevation)
        try:
            ramp = parse(value)
        except ValueError as err:
            if refusal:  # not meant as a ramp: the schema says what the key holds
                continue
            raise ValueError(f"{key}: {err}") from None
        if ramp is None:
            continue
        if refusal:
            raise ValueError(f"{key}: cannot ramp ({refusal})")
        data[name] = ramp.start
        found[key] = ramp
    return found


def apply(config: BaseModel, ramps: Mapping[str, Ramp], step: int) -> dict[str, float]:
    """Set every ramped key of `config` to its value at `step`, in place; returns those values by key."""
    values = {}
    for key, ramp in ramps.items():
        block, name = _parent(config, key)
        values[key] = ramp.at(step)
        setattr(block, name, values[key])
    return values


def inline(dumped: dict[str, Any], ramps: Mapping[str, Ramp]) -> dict[str, Any]:
    """A dumped config with each ramped key holding its ramp as written, not the value of the step it is at."""
    for key, ramp in ramps.items():
        block, name = _parent(dumped, key)
        block[name] = ramp.written()
    return dumped


def _parent(root: Any, key: str) -> tuple[Any, str]:
    """The block holding the last part of the dotted `key`, and that part: attributes of a config, items of a dump."""
    *path, name = key.split(".")
    for part in path:
        root = root[part] if isinstance(root, dict) else getattr(root, part)
    return root, name


def refusal(model: type[BaseModel], key: str) -> str | None:
    """Why the dotted key of the trial config `model` cannot hold a ramp, None where it can (`HOLDS_COLLECTIONS`:
    its lists and mappings are values of its own, or the key is not declared and the schema judges it)."""
    *path, name = key.split(".")
    for part in path:
        inner = model.model_fields.get(part)
        if inner is None or not (isinstance(inner.annotation, type) and issubclass(inner.annotation, BaseModel)):
            return HOLDS_COLLECTIONS
        model = inner.annotation
    info = model.model_fields.get(name)
    if info is None:
        return HOLDS_COLLECTIONS
    union = typing.get_origin(info.annotation) in (typing.Union, types.UnionType)
    members = [a for a in (typing.get_args(info.annotation) if union else (info.annotation,)) if a is not type(None)]
    if members != [float]:
        scalar = all(m in (int, bool, str) or typing.get_origin(m) is Literal for m in members)
        return "a ramp needs a float key" if scalar else HOLDS_COLLECTIONS
    block = ".".join(path)
    if block not in RAMP_BLOCKS:
        return FIXED_BLOCKS.get(block, FIXED_BLOCKS[""])
    return None


def check_end(cfg: BaseModel, key: str, ramp: Ramp) -> None:
    """The end value through the field's own checks, on a copy of its block."""
    block, name = _parent(cfg, key)
    try:
        setattr(block.model_copy(), name, ramp.end)
    except ValidationError as err:
        raise ValueError(f"{key}: the ramp's end {ramp.end}: {err.errors()[0]['msg']}") from None
