"""Population Based Training on Ray Tune: the scheduler built from `tune.pbt` (`pbt_scheduler`), and the record
of each perturbation in the trial's MLflow run (`record_perturbation`), since a run's params, written once, keep
the values the trial started with. What PBT may perturb is checked before anything starts
(`dreamfusion/sweep/search.py`).

An exploiting trial continues from the checkpoint of the trial it copies (weights, optimiser, step and RNG, the
same checkpoint a retry resumes from) with that trial's config perturbed; the trial state then takes the
config's optimiser hyperparameters over the checkpoint's, so a mutated learning rate applies.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dreamfusion.sweep.space import Dimension, fmt_value
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.schema import PBT_COUNT_TAG, PBT_DIR, PBT_LAST_TAG, PBT_METRIC_PREFIX, PBT_VALUES_TAG
from dreamfusion.tune.domains import tune_domain

if TYPE_CHECKING:
    from dreamfusion.tracking.callback import TrackingCallback


def pbt_scheduler(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import PopulationBasedTraining

    p = spec.tune.pbt
    mutated = {k: spec.space[k] for k in p.mutate}
    return PopulationBasedTraining(
        time_attr="step",
        perturbation_interval=p.perturbation_interval,
        hyperparam_mutations={k: _mutation(d) for k, d in mutated.items()},
        quantile_fraction=p.quantile_fraction,
        resample_probability=p.resample_probability,
        custom_explore_fn=KeepInRange(mutated),
        synch=p.synch,
    )


def _mutation(dim: Dimension) -> Any:
    """A list PBT shifts along, or the domain it resamples and scales."""
    return list(dim.argument) if dim.kind in ("grid", "choice") else tune_domain(dim.kind, dim.argument)


class KeepInRange:
    """After PBT scales a value by 0.8 or 1.2: back inside its dimension's range, an integer or a multiple of q
    where the dimension says so (Tune's PBT scales without bounds, and a trial config would refuse t_max > 1)."""

    def __init__(self, dims: dict[str, Dimension]) -> None:
        self.dims = dims

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, dim in self.dims.items():
            if dim.kind in ("grid", "choice") or key not in config:
                continue
            low, high = dim.argument[:2]
            value = min(max(float(config[key]), low), high)
            if dim.kind == "randint":
                value = min(round(value), high - 1)
            elif dim.kind == "quniform":
                q = dim.argument[2]
                value = min(max(round(value / q) * q, low), high)
            config[key] = value
        return config


def record_perturbation(
    callback: TrackingCallback, values: dict[str, Any], trial_id: str, source: str | None, step: int
) -> None:
    """At every (re)start of a PBT trial: if its mutated values differ from those its run last recorded, or it
    continues another trial's checkpoint, log the event as `pbt/perturbation_NNN.json` and the `df.pbt.*` tags;
    and log each numeric mutated value as `pbt/<key>` from the step it applies at (a curve of the schedule PBT
    found). A retry or a resume of the trial itself records nothing new."""
    now = json.dumps(values, sort_keys=True)
    previous = callback.previous_tags.get(PBT_VALUES_TAG)
    copied = source is not None and source != trial_id
    perturbed = False
    if previous is not None and (previous != now or copied):
        perturbed = True
        count = int(callback.previous_tags.get(PBT_COUNT_TAG, "0")) + 1
        before = json.loads(previous)
        event = {"step": step, "copied_trial": source if copied else None, "before": before, "after": values}
        callback.log_text(json.dumps(event, indent=2), f"{PBT_DIR}/perturbation_{count:03d}.json")
        callback.set_tag(PBT_COUNT_TAG, str(count))
        callback.set_tag(PBT_LAST_TAG, describe(event))
    if previous != now:
        callback.set_tag(PBT_VALUES_TAG, now)
    if previous is None or perturbed:
        numeric = {f"{PBT_METRIC_PREFIX}{k}": v for k, v in values.items() if isinstance(v, (int, float))}
        callback.log_values(numeric, step)


def describe(event: dict[str, Any]) -> str:
    """`step 200: copied trial 3f2a_00001; sds.guidance_scale 20 -> 24`."""
    changes = "; ".join(
        f"{k} {fmt_value(event['before'].get(k))} -> {fmt_value(v)}"
        for k, v in event["after"].items()
        if event["before"].get(k) != v
    )
    copied = f"copied trial {event['copied_trial']}" if event["copied_trial"] else "perturbed"
    return f"step {event['step']}: {copied}" + (f"; {changes}" if changes else "")
