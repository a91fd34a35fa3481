"""Reading a sweep spec and validating it whole, before a single trial, worker or MLflow run starts.

Validation is eager: every grid value, every distribution's bounds and a few seeded draws from it are applied to
the base and validated as a trial config, and so is every combination of the values the space can take at its
extremes, so that `t_min ≥ t_max` in trial 37 fails now, not an hour in. What a config alone cannot say is asked
of the registered components: is the prior installed, does it know the prompt, does the sweep's metric exist in
every trial, does a varied option belong to a component that some trial selects. Every mistake found is reported,
one line each.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dreamfusion import registry
from dreamfusion.config.files import (
    apply_overrides,
    describe_errors,
    flatten,
    key_annotation,
    parse_override,
    read_yaml,
    takes_integers,
)
from dreamfusion.config.schema import TrialConfig
from dreamfusion.console.table import count_text
from dreamfusion.errors import ConfigError, shorten
from dreamfusion.evaluators.base import make_evaluator_classes, metric_owner
from dreamfusion.scoring.none import NO_SCORER
from dreamfusion.sweep.search import search_problem
from dreamfusion.sweep.space import FLOAT_KINDS, KINDS, Dimension, combinations, condition_problem, count
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.schema import looks_like_run_id
from dreamfusion.trial.preflight import check_trial

#: The most trials a spec may expand to unless `--max-trials` says more.
DEFAULT_MAX_TRIALS = 10_000
#: Above this many combinations the cross product is not validated; each value still is, one at a time.
MAX_VALIDATED_COMBINATIONS = 4096


def load_spec(path: str | Path, overrides: Sequence[str] = (), max_trials: int = DEFAULT_MAX_TRIALS) -> SweepSpec:
    """Read, override (`--set`), validate the schema, count the trials (at most `max_trials`), then validate every
    trial the space can produce; every mistake found is reported, one line each, in one ConfigError."""
    source = str(path)
    data = apply_spec_overrides(read_yaml(path), list(overrides))
    problems = Problems()
    spec, whole = parse_spec(data, source, problems)
    if spec is not None:
        if whole:
            with problems.collect():
                check_size(spec, source, max_trials)
        check_space(spec, source, problems, whole)
    problems.raise_any()
    assert spec is not None  # a spec that did not parse left a problem
    return spec


class Problems:
    """Every mistake found in a spec, one line each, raised together: a wrong `mode` must not hide a typo in a key,
    nor the first of ten bad values the other nine."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Note the ConfigError raised inside and go on to the next check."""
        try:
            yield
        except ConfigError as exc:
            self.lines += str(exc).splitlines()

    def raise_any(self) -> None:
        if self.lines:
            raise ConfigError("\n".join(dict.fromkeys(self.lines)))  # each line once, in the order found


def parse_spec(data: dict[str, Any], source: str, problems: Problems) -> tuple[SweepSpec | None, bool]:
    """(the spec, True); or, when its schema has mistakes (each noted), (its base and the dimensions that are
    well-formed, as a spec with default blocks elsewhere, False), so that the space is still checked; None when even
    those do not form one."""
    try:
        return SweepSpec.model_validate(data), True
    except ValidationError as err:
        problems.lines += describe_errors(err, source)
        bad_dims = {e["loc"][1] for e in err.errors() if len(e["loc"]) > 1 and e["loc"][0] == "space"}
    space = data.get("space")
    partial = {
        "name": "partial",
        "base": data.get("base", {}),
        "space": {k: v for k, v in space.items() if k not in bad_dims} if isinstance(space, dict) else {},
    }
    try:
        return SweepSpec.model_validate(partial), False
    except ValidationError:
        return None, False


def check_size(spec: SweepSpec, source: str, max_trials: int) -> None:
    """Refuse a sweep larger than `max_trials`, counted from the dimensions' sizes before anything is enumerated:
    a grid of a million points would otherwise fill the driver's memory before the first trial starts."""
    if spec.num_trials() > max_trials:
        raise ConfigError(
            f"{source}: space: {count_text(spec)} is over the limit of {max_trials:,}; "
            f"pass --max-trials {spec.num_trials()} to run them all"
        )


def apply_spec_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`--set tune.num_samples=4`, `--set base.steps=100`, `--set space.seed.grid=[0,1,2]`.

    The keys inside `space` contain dots themselves, so `space.` overrides are split by hand: the last part is
    the kind when it names one (`space.sds.guidance_scale.grid=[10, 50]`, keeping the dimension's condition) or
    the condition (`space.KEY.when={sds.timesteps.schedule: dreamtime}`), else the value is a whole dimension.
    """
    for text in (o for o in overrides if not o.startswith("space.")):
        _check_spec_key(text)
    out = apply_overrides(data, [o for o in overrides if not o.startswith("space.")])
    for text in (o for o in overrides if o.startswith("space.")):
        key, value = parse_override(text)
        dotted, _, last = key.removeprefix("space.").rpartition(".")
        space = out.setdefault("space", {})
        if not isinstance(space, dict):
            raise ConfigError(f"--set {text}: space is not a mapping in the spec")
        if last in KINDS and dotted:
            old = space.get(dotted)
            when = old.get("when") if isinstance(old, dict) else None  # a new kind keeps the dimension's condition
            space[dotted] = {last: value, **({"when": when} if when is not None else {})}
        elif last == "when" and dotted and isinstance(space.get(dotted), dict):
            space[dotted] = {**space[dotted], "when": value}
        else:
            space[key.removeprefix("space.")] = value
    return out


def _check_spec_key(text: str) -> None:
    """`--set steps=5` on a spec means the trials' steps: name the override (not the file) and suggest `base.`."""
    key, _ = parse_override(text)
    top = key.partition(".")[0]
    if top in SweepSpec.model_fields:
        return
    if top in TrialConfig.model_fields:
        raise ConfigError(f"--set {key}: not a spec key; the trial config is under base: expected --set base.{key}=...")
    raise ConfigError(f"--set {key}: unknown spec key; expected one of {', '.join(SweepSpec.model_fields)}")


def check_space(spec: SweepSpec, source: str, problems: Problems, whole: bool = True) -> None:
    """Every key is a trial-config key; the base is valid; every value a dimension can give a trial is, and every
    combination of extremes. Where the spec's other blocks were at fault (`whole` False), what reads them (the
    metric, the searcher) is not checked."""
    base = None
    with problems.collect():
        base = check_base(spec, source)
    if not spec.space:
        if whole:
            problems.lines.append(
                f"{source}: space: expected at least one dotted key to vary, e.g. "
                f"{{seed: {{grid: [0, 1]}}}} (for a single trial use df-sweep run)"
            )
        return
    before = len(problems.lines)
    misplaced = check_keys(spec, base, source, problems)
    if base is None:
        return
    for key, dim in spec.space.items():
        if key not in misplaced:
            with problems.collect():
                check_dimension(spec, key, dim, source)
    if len(problems.lines) == before:  # a combination or a metric's trial would repeat a mistake found above
        with problems.collect():
            check_combinations(spec, source)
        if whole:
            with problems.collect():
                check_metric(spec, base, source)
    if not misplaced:  # whether some trial selects an option's component depends on the conditions
        with problems.collect():
            check_options(spec, base, source)
    with problems.collect():
        check_init_from(spec, source)
    problem = search_problem(spec) if whole else None
    if problem:
        problems.lines.append(f"{source}: {problem[0]}: {problem[1]}")


def check_keys(spec: SweepSpec, base: TrialConfig | None, source: str, problems: Problems) -> set[str]:
    """Each varied key names a trial-config key, and a condition one that can hold; the keys that do not (their
    values cannot be put in a trial)."""
    known = set(flatten(base or TrialConfig())) | {
        k for kind in registry.KINDS for c in registry.components(kind) for k in registry.option_keys(c)
    }
    misplaced = {key for key in spec.space if key not in known}
    for key in sorted(misplaced, key=list(spec.space).index):
        problems.lines.append(f"{source}: space.{key}: unknown trial config key; expected {_suggest(key, known)}")
    problem = condition_problem(spec.space)
    if problem:
        problems.lines.append(f"{source}: space.{problem[0]}.when: {problem[1]}")
        misplaced.add(problem[0])
    return misplaced


def check_base(spec: SweepSpec, source: str) -> TrialConfig:
    """The base as a trial config, its every schema mistake a line; then what the schema cannot see."""
    try:
        base = TrialConfig.model_validate(spec.base)
    except ValidationError as err:
        raise ConfigError("\n".join(describe_errors(err, source, "base"))) from None
    check_trial(base, f"{source}: base")
    return base


def check_dimension(spec: SweepSpec, key: str, dim: Dimension, source: str) -> None:
    """The values a trial can receive from one dimension (its listed values, its bounds, a few seeded draws), each
    through the trial schema."""
    if takes_integers(key_annotation(key)):
        check_integer_dimension(key, dim, source)
    # a conditional value is checked in a trial its condition holds in
    condition = {dim.condition[0]: dim.condition[1][0]} if dim.condition else {}
    for value in dim.checked_values():
        label = f"{source}: space.{key}={shorten(value)}"
        check_trial(spec.trial_config({**condition, key: value}, label), label)


def check_integer_dimension(key: str, dim: Dimension, source: str) -> None:
    """An integer key takes randint or a grid or choice of integers. Tune draws floats from a float distribution,
    and an integer field refuses them in every trial, so that is said of the dimension, not of a value that happens
    to be whole. A listed whole float (YAML's `32.0`) or bool the trial schema would take as 32 or 1, while Tune's
    config and the trial table kept 32.0 or True: refused as well, so each value is recorded as the trial ran it."""
    expected = "expected {randint: [low, high]} or a grid of integers"
    if dim.kind in FLOAT_KINDS:
        raise ConfigError(f"{source}: space.{key}: {key} is an integer, and {dim.kind} draws floats; {expected}")
    listed = dim.argument if dim.kind in ("grid", "choice") else []
    odd = [v for v in listed if v is not None and (isinstance(v, bool) or not isinstance(v, int))]
    if odd:
        listing = f"the {dim.kind} lists {shorten(odd[0])}"
        raise ConfigError(f"{source}: space.{key}: {key} is an integer, and {listing}; {expected}")


def check_combinations(spec: SweepSpec, source: str) -> None:
    """Every combination of the dimensions' extremes, as one trial config each: `t_min ≥ t_max` in trial 37."""
    for values in _combinations(spec):
        label = f"{source}: space combination " + ", ".join(f"{k}={shorten(v)}" for k, v in values.items())
        check_trial(spec.trial_config(values, label), label)


def check_init_from(spec: SweepSpec, source: str) -> None:
    """A trial that starts from another's field names it by a run id or a path; anything else (the placeholder a
    two-stage spec ships with) would fail every trial. Whether the run exists is asked of the store at launch."""
    listed = spec.space["init_from"].argument if "init_from" in spec.space else []
    keyed = [("base.init_from", spec.base.get("init_from"))] + [("space.init_from", v) for v in listed]
    for key, value in keyed:
        if isinstance(value, str) and not looks_like_run_id(value) and not Path(value).expanduser().exists():
            raise ConfigError(
                f"{source}: {key}: {shorten(value)} is neither an MLflow run id (32 hex digits) nor an existing "
                f"path; expected the run id of the trial to start from (your coarse sweep's best, from df-sweep "
                f"report or the MLflow UI) there, or passed as --set base.init_from=RUN_ID"
            )


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
                f"which does not run for prompt {shorten(prompt)}; expected a metric every trial logs{_available(cfg)}"
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
    for key, dim in spec.space.items():
        owners = registry.owners(key)
        if owners and not any(_selected(spec, base_flat, c, key) for c in owners):
            kinds = {c.kind for c in owners}
            names = " or ".join(c.name if len(kinds) == 1 else f"{c.name} {c.kind}" for c in owners)
            which = f"the {names} {kinds.pop()}" if len(kinds) == 1 else f"the {names}"
            where = "no trial it varies in" if dim.condition else "no trial of the sweep"
            raise ConfigError(f"{source}: space.{key}: only {which} reads it, and {where} selects it")


def _selected(spec: SweepSpec, base_flat: dict[str, Any], component: type[registry.Component], option: str) -> bool:
    """Whether some trial that varies `option` selects `component`: the key that picks its kind takes its name
    there (a list value, like `eval.evaluators`, selects every name in it; null selects every component of the
    kind). Where `option` varies under a condition on that key, only the condition's values count."""
    key = registry.KINDS[component.kind]
    condition = spec.space[option].condition
    if condition is not None and condition[0] == key:
        values = condition[1]
    else:
        values = spec.space[key].extremes() if key in spec.space else [base_flat.get(key)]
    for value in values:
        if value is None or value == component.name or (isinstance(value, list) and component.name in value):
            return True
    return False


def _combinations(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """Every combination of the dimensions' extremes (a conditional one where its condition holds), unless there
    are too many to check in a blink."""
    extremes = {k: d.extremes() for k, d in spec.space.items()}
    if len(extremes) < 2 or count(spec.space, extremes) > MAX_VALIDATED_COMBINATIONS:
        return
    yield from combinations(spec.space, extremes)


def _suggest(key: str, known: set[str]) -> str:
    """`guidance_scale` → "sds.guidance_scale": the known key with the same last part, if there is one."""
    tail = key.rpartition(".")[2]
    matches = sorted(k for k in known if k.rpartition(".")[2] == tail)
    return f"{matches[0]!r}" if matches else "a dotted key of the trial config, such as 'sds.guidance_scale'"
