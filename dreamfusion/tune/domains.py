"""A sweep's space as Ray Tune reads it: each dimension as the `ray.tune` function of its kind, and conditions as
nested branches, which Ray's variant generator and HyperOpt both resolve. Apart from the space itself
(`dreamfusion/sweep/space.py`), so that reading and counting a spec never imports Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dreamfusion.sweep.space import BRANCH_PREFIX, Dimension, Space, dependents


def tune_domain(kind: str, argument: Any) -> Any:
    """Values of a kind as the `ray.tune` function of that kind (a grid or choice may list branch mappings)."""
    from ray import tune

    if kind == "grid":
        return tune.grid_search(list(argument))
    if kind == "choice":
        return tune.choice(list(argument))
    return getattr(tune, kind)(*argument)


def nested_space(
    space: Space, leaf: Callable[[str, Dimension], Any], branch: Callable[[str, Dimension, list], Any]
) -> dict[str, Any]:
    """A space in which a key others depend on becomes `when:KEY`: `branch` over one mapping per value,
    `{KEY: value, DEPENDENT: leaf, ...}` with the dependents that value switches on; every other unconditional key
    is its `leaf`. A leaf's label is its key, in a branch `DEPENDENT|KEY=value` (unique, as hyperopt needs)."""
    out: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.when is not None:
            continue
        under = dependents(space, key)
        if not under:
            out[key] = leaf(key, dim)
            continue
        branches = [
            {key: v, **{d: leaf(f"{d}|{key}={v}", space[d]) for d in under if space[d].holds({key: v})}}
            for v in dim.argument
        ]
        out[BRANCH_PREFIX + key] = branch(key, dim, branches)
    return out


def variant_space(space: Space) -> dict[str, Any]:
    """The param_space of Ray's variant generator: a branch is a grid (or choice) over its mappings, which the
    generator resolves in turn (nested grids are crossed, nested domains drawn with the same seed)."""
    return nested_space(
        space,
        lambda _, dim: tune_domain(dim.kind, dim.argument),
        lambda _, dim, branches: tune_domain(dim.kind, branches),
    )
