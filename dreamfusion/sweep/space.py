"""The search space: its dimensions, the conditions that switch a dimension on for some trials only, and the
expansion and exact count of the trials it makes.

A conditional dimension (`when: {sds.timesteps.schedule: dreamtime}`) varies only in the trials whose condition
key takes one of the listed values; elsewhere its key keeps the base value, and it adds no trials. Conditions are
one level deep (the key a dimension depends on is itself unconditional, and a grid or a choice), which every
searcher that supports conditions can express. Nothing here imports Ray, so `validate` and `--dry-run` stay
fast: the dimensions as Tune's domains are `dreamfusion/tune/domains.py`.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from typing import Any

from pydantic import Field, field_validator, model_validator

from dreamfusion.config.schema import Schema

KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")
#: The kinds that draw floats: none fits a key the trial schema types as an integer.
FLOAT_KINDS = ("uniform", "loguniform", "quniform")
#: Values drawn from each distribution when a spec is validated, from a fixed seed: the same check every time.
CHECKED_DRAWS = 3
#: How a Tune config nests a condition key and the dimensions that depend on it: `{"when:K": {K: v, D: ...}}`.
BRANCH_PREFIX = "when:"


class Dimension(Schema):
    """One axis of the search space: exactly one kind, mapped one-to-one onto the `ray.tune` function."""

    grid: list[Any] | None = Field(None, min_length=1)
    """Every value, each in its own trial (`tune.grid_search`); grids multiply."""
    choice: list[Any] | None = Field(None, min_length=1)
    """One value drawn per sample (`tune.choice`)."""
    uniform: tuple[float, float] | None = None
    """[low, high): a float drawn uniformly (`tune.uniform`)."""
    loguniform: tuple[float, float] | None = None
    """[low, high): a float drawn uniformly in log space, low > 0 (`tune.loguniform`)."""
    randint: tuple[int, int] | None = None
    """[low, high): an integer, high excluded as in `tune.randint`."""
    quniform: tuple[float, float, float] | None = None
    """[low, high, q]: a float drawn uniformly and rounded to a multiple of q (`tune.quniform`)."""
    when: dict[str, Any] | None = None
    """Vary this key only in the trials where another dimension takes one of the given values, e.g.
    `{sds.timesteps.schedule: dreamtime}` or `{sds.timesteps.schedule: [anneal, dreamtime]}`; in the other trials
    the key keeps its base value and adds no trials. That dimension must be an unconditional grid or choice."""

    @model_validator(mode="before")
    @classmethod
    def _mapping_expected(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping with one of {', '.join(KINDS)}, e.g. {{grid: [1, 2]}}")
        return data

    @field_validator("when")
    @classmethod
    def _one_condition(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and len(v) != 1:
            raise ValueError("expected one condition, a dimension's key and its value(s): {KEY: VALUE}")
        return v

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> Dimension:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"expected exactly one of {', '.join(KINDS)}, got {len(given)}")
        bounds = self.uniform or self.loguniform or self.randint or self.quniform
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"{self.kind}: expected [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: expected low > 0")
        if self.quniform is not None and self.quniform[2] <= 0:
            raise ValueError("quniform: expected q > 0")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in KINDS if getattr(self, k) is not None)

    @property
    def argument(self) -> Any:
        """The kind's value: the list of a grid or choice, the bounds of a range."""
        return getattr(self, self.kind)

    @property
    def condition(self) -> tuple[str, list[Any]] | None:
        """(the key this dimension depends on, the values that switch it on), or None."""
        if self.when is None:
            return None
        key, values = next(iter(self.when.items()))
        return key, values if isinstance(values, list) else [values]

    def holds(self, values: dict[str, Any]) -> bool:
        """Whether this dimension varies in a trial whose other values are `values`."""
        if self.condition is None:
            return True
        key, allowed = self.condition
        return key in values and values[key] in allowed

    def extremes(self) -> list[Any]:
        """The values a trial can take that are most likely to break validation: all listed ones, or the bounds."""
        if self.kind in ("grid", "choice"):
            return list(self.argument)
        if self.kind == "randint":
            low, high = self.argument
            return [low, high - 1]
        if self.kind == "quniform":
            low, high, q = self.argument
            return [round(low / q) * q, round(high / q) * q]
        return list(self.argument)

    def draws(self, n: int = CHECKED_DRAWS, seed: int = 0) -> list[Any]:
        """`n` values drawn from the distribution as its `ray.tune` function draws them (the same kind of number, from
        a seeded generator of ours): what a trial receives besides the bounds. A grid or choice draws nothing."""
        rng = random.Random(seed)
        if self.kind in ("grid", "choice"):
            return []
        low, high = self.argument[:2]
        if self.kind == "randint":
            return [rng.randrange(low, high) for _ in range(n)]
        if self.kind == "loguniform":
            return [math.exp(rng.uniform(math.log(low), math.log(high))) for _ in range(n)]
        if self.kind == "quniform":
            q = self.argument[2]
            return [round(rng.uniform(low, high) / q) * q for _ in range(n)]
        return [rng.uniform(low, high) for _ in range(n)]

    def checked_values(self) -> list[Any]:
        """What validation puts through the trial schema: the extremes, then a few seeded draws."""
        return self.extremes() + self.draws()

    def middle(self) -> list[Any]:
        """Values standing for the dimension in a cost estimate: each listed one (equally likely), or the
        distribution's middle (the geometric one for loguniform)."""
        if self.kind in ("grid", "choice"):
            return list(self.argument)
        low, high = self.argument[:2]
        if self.kind == "loguniform":
            return [math.sqrt(low * high)]
        return [(low + high - 1) // 2 if self.kind == "randint" else (low + high) / 2]

    def describe(self) -> str:
        """`~uniform(0.1, 1)`: how the dry-run table shows a dimension that is sampled rather than enumerated."""
        return f"~{self.kind}({', '.join(fmt_value(v) for v in self.argument)})"


Space = dict[str, Dimension]


def condition_problem(space: Space) -> tuple[str, str] | None:
    """(key, what is wrong) for the first condition that cannot hold as written, or None."""
    for key, dim in space.items():
        if dim.condition is None:
            continue
        on, allowed = dim.condition
        parent = space.get(on)
        if parent is None or on == key:
            return key, f"{on} is not another dimension of the space; expected the key of a grid or choice dimension"
        if parent.when is not None:
            return key, f"{on} is itself conditional; expected an unconditional grid or choice dimension"
        if parent.kind not in ("grid", "choice"):
            return key, f"{on} is {parent.kind}; expected a grid or choice dimension to depend on"
        missing = [v for v in allowed if v not in parent.argument]
        if missing:
            values = ", ".join(fmt_value(v) for v in parent.argument)
            return key, f"{fmt_value(missing[0])} is not one of the values of {on} ({values})"
        if dim.kind == "grid" and parent.kind != "grid":
            return key, (
                f"a grid can depend only on a grid ({on} is a choice, so the number of trials would depend on what "
                f"is drawn); expected {{choice: [...]}} here, or a grid for {on}"
            )
    return None


def dependents(space: Space, key: str) -> list[str]:
    """The dimensions that vary only under a condition on `key`."""
    return [k for k, d in space.items() if d.condition is not None and d.condition[0] == key]


def combinations(space: Space, options: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of `options` (values per key), where a conditional key takes its values only in the
    combinations its condition holds in (elsewhere it is absent): the cross product, made conditional."""
    free = [k for k in options if space[k].when is None]
    for values in itertools.product(*(options[k] for k in free)):
        point = dict(zip(free, values))
        active = [k for k in options if space[k].when is not None and space[k].holds(point)]
        for more in itertools.product(*(options[k] for k in active)):
            merged = {**point, **dict(zip(active, more))}
            yield {k: merged[k] for k in space if k in merged}


def count(space: Space, options: dict[str, list[Any]]) -> int:
    """How many `combinations` there are, from the dimensions alone (without enumerating them): each free key
    multiplies by its number of values, or, when others depend on it, by the sum over its values of the product of
    the sizes of the dependents that value switches on."""
    total = 1
    for key in (k for k in options if space[k].when is None):
        under = [d for d in dependents(space, key) if d in options]
        total *= sum(math.prod(len(options[d]) for d in under if space[d].holds({key: v})) for v in options[key])
    return total


def fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
