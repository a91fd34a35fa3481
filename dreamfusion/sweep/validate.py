"""Reading a sweep spec and validating it whole, before a single trial, worker or MLflow run starts.

Validation is eager: every grid value is applied to the base and validated as a trial config, and so is every
combination of the values the space can take at its extremes, so that `t_min ≥ t_max` in trial 37 fails now, not
an hour in. What a config alone cannot say is asked of the registered components: is the prior installed, does it
know the prompt, does the sweep's metric exist in every trial, does a varied option belong to a component that
some trial selects.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dreamfusion import registry
from dreamfusion.config.files import (
    apply_overrides,
    build_trial_config,
    describe_error,
    flatten,
    parse_override,
    read_yaml,
)
from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError
from dreamfusion.evaluators.base import make_evaluator_classes, metric_owner
from dreamfusion.scoring.none import NO_SCORER
from dreamfusion.sweep.spec import KINDS, SweepSpec
from dreamfusion.trial.preflight import check_trial

#: Above this many combinations the cross product is not validated; each value still is, one at a time.
MAX_VALIDATED_COMBINATIONS = 4096


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read, override (`--set`), validate the schema, then validate every trial the space can produce."""
    source = str(path)
    data = apply_spec_overrides(read_yaml(path), list(overrides))
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_error(err, source)) from None
    check_space(spec, source)
    return spec


def apply_spec_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set tune.num_samples=4`, `--set base.steps=100`, `--set space.seed.grid=[0,1,2]`.

    The keys inside `space` contain dots themselves, so `space.` overrides are split by hand: the last part is
    the kind when it names one (`space.sds.guidance_scale.grid=[10, 50]`), else the value is a whole dimension.
    """
    out = apply_overrides(data, [o for o in overrides if not o.startswith("space.")])
    for text in (o for o in overrides if o.startswith("space.")):
        key, value = parse_override(text)
        dotted, _, last = key.removeprefix("space.").rpartition(".")
        space = out.setdefault("space", {})
        if not isinstance(space, dict):
            raise ConfigError(f"--set {text}: space is not a mapping in the spec")
        if last in KINDS and dotted:
            space[dotted] = {last: value}
        else:
            space[key.removeprefix("space.")] = value
    return out


def check_space(spec: SweepSpec, source: str) -> None:
    """Every key is a trial-config key; the base is valid; every value and every combination of extremes is."""
    base = build_trial_config(spec.base, source, prefix="base")
    check_trial(base, f"{source}: base")
    if not spec.space:
        raise ConfigError(
            f"{source}: space: expected at least one dotted key to vary, e.g. "
            f"{{seed: {{grid: [0, 1]}}}} (for a single trial use df-sweep run)"
        )
    known = set(flatten(base))
    for key in spec.space:
        if key not in known:
            raise ConfigError(f"{source}: space.{key}: unknown trial config key; expected {_suggest(key, known)}")
    for key, dim in spec.space.items():
        for value in dim.extremes():
            label = f"{source}: space.{key}={value!r}"
            check_trial(spec.trial_config({key: value}, label), label)
    for values in _combinations(spec):
        label = f"{source}: space combination " + ", ".join(f"{k}={v!r}" for k, v in values.items())
        check_trial(spec.trial_config(values, label), label)
    check_metric(spec, base, source)
    check_options(spec, base, source)


def check_metric(spec: SweepSpec, base: TrialConfig, source: str) -> None:
    """The sweep's metric must exist in every trial, or Tune cannot rank (nor ASHA stop) the trials: the evaluator
    that logs it must run for every prompt the space can take, and a metric the scorer computes needs a scorer."""
    owner = metric_owner(spec.tune.metric)
    assert owner is not None  # TuneBlock accepts only metrics some evaluator logs
    prompts = spec.space["prompt"].extremes() if "prompt" in spec.space else [base.prompt]
    scorings = spec.space["scoring.model"].extremes() if "scoring.model" in spec.space else [base.scoring.model]
    for prompt, scoring in itertools.product(prompts, scorings):
        cfg = spec.trial_config({"prompt": prompt, "scoring.model": scoring}, source)
        chosen = cfg.eval.evaluators
        if owner.metrics[spec.tune.metric].scored and scoring == NO_SCORER:
            raise ConfigError(
                f"{source}: tune.metric: {spec.tune.metric} is computed by the scorer, and scoring.model is "
                f"{NO_SCORER}; expected a metric that needs no scorer{_available(cfg)}"
            )
        if (chosen is not None and owner.name not in chosen) or (chosen is None and not owner.applies(cfg)):
            raise ConfigError(
                f"{source}: tune.metric: {spec.tune.metric} is logged by the {owner.name} evaluator, "
                f"which does not run for prompt {prompt!r}; expected a metric every trial logs{_available(cfg)}"
            )


def _available(cfg: TrialConfig) -> str:
    """ ", such as a, b": the metrics this trial does log, to suggest instead."""
    found = [
        name
        for evaluator in make_evaluator_classes(cfg)
        for name, metric in evaluator.metrics.items()
        if not metric.final_only and not (metric.scored and cfg.scoring.model == NO_SCORER)
    ]
    return f", such as {', '.join(found)}" if found else " (this trial logs none: name a scorer, or a toy-world prompt)"


def check_options(spec: SweepSpec, base: TrialConfig, source: str) -> None:
    """A varied key that only some components read must be read by a component that some trial selects:
    sweeping `dreamtime_m1` while no trial uses the dreamtime schedule changes nothing."""
    base_flat = flatten(base)
    for key in spec.space:
        owners = registry.owners(key)
        if owners and not any(_selected(spec, base_flat, c) for c in owners):
            names = ", ".join(f"the {c.name} {c.kind}" for c in owners)
            raise ConfigError(f"{source}: space.{key}: only {names} reads it, and no trial of the sweep selects it")


def _selected(spec: SweepSpec, base_flat: dict[str, Any], component: type[registry.Component]) -> bool:
    """Whether some trial selects `component`: the key that picks its kind takes its name somewhere (a list
    value, like `eval.evaluators`, selects every name in it; null selects every component of the kind)."""
    key = registry.KINDS[component.kind]
    values = spec.space[key].extremes() if key in spec.space else [base_flat.get(key)]
    for value in values:
        if value is None or value == component.name or (isinstance(value, list) and component.name in value):
            return True
    return False


def _combinations(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """Every combination of the dimensions' extremes, unless there are too many to check in a blink."""
    keys = list(spec.space)
    lists = [spec.space[k].extremes() for k in keys]
    if len(keys) < 2 or math.prod(len(v) for v in lists) > MAX_VALIDATED_COMBINATIONS:
        return
    for values in itertools.product(*lists):
        yield dict(zip(keys, values))


def _suggest(key: str, known: set[str]) -> str:
    """`guidance_scale` → "sds.guidance_scale": the known key with the same last part, if there is one."""
    tail = key.rpartition(".")[2]
    matches = sorted(k for k in known if k.rpartition(".")[2] == tail)
    return f"{matches[0]!r}" if matches else "a dotted key of the trial config, such as 'sds.guidance_scale'"
