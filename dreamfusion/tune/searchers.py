"""How a spec's trials are chosen and scheduled on Ray Tune: the search algorithm (Ray's variant generator, or
Optuna, HyperOpt and BOHB through Tune's own integrations, conditional dimensions included) and the trial
scheduler (FIFO, ASHA, HyperBand, PBT in `pbt.py`). What a searcher cannot express was refused before Ray started
(`dreamfusion/sweep/search.py`).
"""

from __future__ import annotations

import math
from typing import Any

from dreamfusion.sweep.space import Dimension, Space
from dreamfusion.sweep.spec import MODEL_BASED, SweepSpec
from dreamfusion.tune.domains import nested_space, variant_space
from dreamfusion.tune.pbt import pbt_scheduler


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
