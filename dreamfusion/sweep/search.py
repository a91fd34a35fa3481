"""How a spec's trials are chosen and scheduled on Ray Tune: the search algorithm (Ray's variant generator, or
Optuna, HyperOpt and BOHB through Tune's own integrations, conditional dimensions included) and the trial
scheduler (FIFO, ASHA, HyperBand, PBT in `pbt.py`).

`search_problem` says, without importing Ray or a searcher, what the chosen searcher cannot express, so that
`df-sweep validate` refuses it in one line before anything starts.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Any

from dreamfusion.sweep.pbt import pbt_problem, pbt_scheduler
from dreamfusion.sweep.space import BRANCH_PREFIX, Dimension, Space, dependents, tune_domain
from dreamfusion.sweep.spec import MODEL_BASED, SweepSpec

#: What each searcher imports; `hyperopt` and `bohb` come with the optional extra of the same name.
SEARCHER_MODULES = {"optuna": ("optuna",), "hyperopt": ("hyperopt",), "bohb": ("hpbandster", "ConfigSpace")}
SCALARS = (str, int, float, bool)


def search_problem(spec: SweepSpec) -> tuple[str, str] | None:
    """(spec key, why) for the first thing the chosen search algorithm or scheduler cannot do with this space."""
    t = spec.tune
    if t.search == "bohb" and t.scheduler != "hyperband":
        return "tune.scheduler", "search bohb needs its HyperBand scheduler (HyperBandForBOHB); expected hyperband"
    missing = [m for m in SEARCHER_MODULES.get(t.search, ()) if importlib.util.find_spec(m) is None]
    if missing:
        return "tune.search", f"{t.search} needs {', '.join(missing)}: pip install 'df-sweep[{t.search}]'"
    for key, dim in spec.space.items():
        why = _inexpressible(t.search, dim)
        if why:
            return f"space.{key}", why
    if t.scheduler == "pbt":
        return pbt_problem(spec)
    return None


def _inexpressible(search: str, dim: Dimension) -> str | None:
    if search == "grid" and dim.kind != "grid":
        return f"search grid enumerates every dimension, and {dim.kind} draws; expected {{grid: [...]}}, or random"
    if search in MODEL_BASED and dim.kind == "grid":
        return f"{search} draws every value itself and cannot cross a grid; expected {{choice: [...]}}"
    if search in ("optuna", "bohb") and dim.kind == "choice" and not all(isinstance(v, SCALARS) for v in dim.argument):
        return f"{search} chooses among strings, numbers and booleans only; expected such values"
    if search == "bohb" and dim.kind == "quniform":
        return "bohb (ConfigSpace) has no quantized range; expected uniform or randint"
    return None


def build_search(spec: SweepSpec) -> tuple[Any, dict[str, Any]]:
    """(Tune search algorithm, the Tuner's param_space): a model-based searcher holds the space itself."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    t = spec.tune
    if t.search not in MODEL_BASED:
        # The concurrency cap goes to the generator: Tune ignores TuneConfig.max_concurrent_trials once a
        # BasicVariantGenerator is passed in (which the seed needs).
        generator = BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials or 0)
        return generator, variant_space(spec.space)
    searcher = {"optuna": _optuna, "hyperopt": _hyperopt, "bohb": _bohb}[t.search](spec)
    if t.max_concurrent_trials:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=t.max_concurrent_trials)
    return searcher, {}


def build_scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, HyperBandForBOHB, HyperBandScheduler

    t = spec.tune
    max_t = t.max_t or spec.max_steps()
    if t.scheduler == "asha":
        return ASHAScheduler(
            time_attr="step", grace_period=t.grace_period, reduction_factor=t.reduction_factor, max_t=max_t
        )
    if t.scheduler == "hyperband":
        hyperband = HyperBandForBOHB if t.search == "bohb" else HyperBandScheduler
        return hyperband(time_attr="step", max_t=max_t, reduction_factor=t.reduction_factor)
    if t.scheduler == "pbt":
        return pbt_scheduler(spec)
    return FIFOScheduler()


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
        space, lambda _, dim: dim.tune_domain(), lambda _, dim, branches: tune_domain(dim.kind, branches)
    )


def _ordered(space: Space) -> list[str]:
    """Unconditional keys first, so a condition's value is drawn before the dimensions that depend on it."""
    return [k for k, d in space.items() if d.when is None] + [k for k, d in space.items() if d.when is not None]


class OptunaSpace:
    """Optuna's define-by-run space: each dimension suggested in turn, a conditional one only where its condition
    holds, so TPE models it only in the trials it exists in. A class, not a closure: Tune pickles its searcher."""

    def __init__(self, space: Space) -> None:
        self.space = space

    def __call__(self, trial: Any) -> None:
        drawn: dict[str, Any] = {}
        for key in _ordered(self.space):
            dim = self.space[key]
            if not dim.holds(drawn):
                continue
            if dim.kind == "choice":
                drawn[key] = trial.suggest_categorical(key, list(dim.argument))
            elif dim.kind == "randint":
                drawn[key] = trial.suggest_int(key, dim.argument[0], dim.argument[1] - 1)
            else:
                low, high = dim.argument[:2]
                step = dim.argument[2] if dim.kind == "quniform" else None
                drawn[key] = trial.suggest_float(key, low, high, log=dim.kind == "loguniform", step=step)


def _optuna(spec: SweepSpec) -> Any:
    from ray.tune.search.optuna import OptunaSearch

    return OptunaSearch(
        space=OptunaSpace(spec.space), metric=spec.tune.metric, mode=spec.tune.mode, seed=spec.tune.seed
    )


def _hyperopt_expr(label: str, dim: Dimension) -> Any:
    from hyperopt import hp

    if dim.kind == "choice":
        return hp.choice(label, list(dim.argument))
    if dim.kind == "loguniform":
        return hp.loguniform(label, math.log(dim.argument[0]), math.log(dim.argument[1]))
    return getattr(hp, dim.kind)(label, *dim.argument)


def hyperopt_space(space: Space) -> dict[str, Any]:
    """HyperOpt's nested space: a branch is an `hp.choice` over its mappings."""
    from hyperopt import hp

    return nested_space(space, _hyperopt_expr, lambda key, _, branches: hp.choice(key, branches))


def _hyperopt(spec: SweepSpec) -> Any:
    from ray.tune.search.hyperopt import HyperOptSearch

    t = spec.tune
    return HyperOptSearch(space=hyperopt_space(spec.space), metric=t.metric, mode=t.mode, random_state_seed=t.seed)


def bohb_space(space: Space, seed: int | None) -> Any:
    """A ConfigSpace with a condition (`InCondition`) for every conditional dimension."""
    import ConfigSpace as CS

    config_space = CS.ConfigurationSpace(seed=seed)
    params: dict[str, Any] = {}
    for key, dim in space.items():
        if dim.kind == "choice":
            params[key] = CS.CategoricalHyperparameter(key, list(dim.argument))
        elif dim.kind == "randint":
            params[key] = CS.UniformIntegerHyperparameter(key, dim.argument[0], dim.argument[1] - 1)
        else:
            low, high = dim.argument
            params[key] = CS.UniformFloatHyperparameter(key, low, high, log=dim.kind == "loguniform")
    config_space.add(list(params.values()))
    for key, dim in space.items():
        if dim.condition is not None:
            on, allowed = dim.condition
            config_space.add(CS.InCondition(params[key], params[on], allowed))
    return config_space


def _bohb(spec: SweepSpec) -> Any:
    from ray.tune.search.bohb import TuneBOHB

    t = spec.tune
    return TuneBOHB(space=bohb_space(spec.space, t.seed), metric=t.metric, mode=t.mode, seed=t.seed)
