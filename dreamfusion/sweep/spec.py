"""The sweep spec: a typed YAML schema, validated whole before a single trial, worker or MLflow run starts.

A spec is a base trial config (the `df-sweep run` schema) plus a search space over its dotted keys. Validation is
eager: every grid value is applied to the base and validated as a trial config, and so is every combination of
the values the space can take at its extremes, so that `t_min ≥ t_max` in trial 37 fails now, not an hour in.
Nothing here imports Ray: the mapping onto `ray.tune` lives in `launch.py`.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from dreamfusion.config import (
    ConfigError,
    Schema,
    TrialConfig,
    apply_overrides,
    build_trial_config,
    describe_error,
    flatten,
    parse_override,
    read_yaml,
    set_dotted,
)
from dreamfusion.toyworld import world

KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")

#: Metrics every trial reports at each eval.
CLIP_METRICS = ("clip_r_precision", "clip_r_precision_geometry", "clip_score")
#: Exact scores against the toy world's 3D ground truth: reported only for toy-world prompts.
GROUND_TRUTH_METRICS = ("gt_iou", "gt_colour_error")

#: Above this many combinations the cross product is not validated; each value still is, one at a time.
MAX_VALIDATED_COMBINATIONS = 4096

#: Priors with a closed vocabulary: a prompt outside the toy world can never condition them.
CLOSED_VOCABULARY_PRIORS = ("analytic", "toyworld")


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

    @model_validator(mode="before")
    @classmethod
    def _mapping_expected(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping with one of {', '.join(KINDS)}, e.g. {{grid: [1, 2]}}")
        return data

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
    def argument(self) -> list[Any] | tuple[Any, ...]:
        return getattr(self, self.kind)

    def extremes(self) -> list[Any]:
        """The values a trial can take that are most likely to break validation: all listed ones, or the bounds."""
        if self.kind in ("grid", "choice"):
            return list(self.argument)
        if self.kind == "randint":
            return [self.randint[0], self.randint[1] - 1]
        if self.kind == "quniform":
            low, high, q = self.quniform
            return [round(low / q) * q, round(high / q) * q]
        return list(self.argument)

    def describe(self) -> str:
        """`uniform(0.1, 1.0)`: how the dry-run table shows a dimension that is sampled rather than enumerated."""
        return f"~{self.kind}({', '.join(_fmt(v) for v in self.argument)})"


class TuneBlock(Schema):
    metric: str = "clip_r_precision"
    """The metric the best trial is picked by (and ASHA stops on): a CLIP metric, or for toy-world prompts
    `gt_iou` / `gt_colour_error` (exact scores against the world's 3D ground truth)."""
    mode: Literal["max", "min"] = "max"
    """Whether a larger or a smaller metric is better."""
    num_samples: int = Field(1, ge=1)
    """Repeats of the whole grid; each repeat draws fresh values for the sampled (non-grid) dimensions."""
    scheduler: Literal["fifo", "asha"] = "fifo"
    """`fifo` runs every trial to the end; `asha` stops the worse trials early at its rungs."""
    grace_period: int = Field(100, ge=1)
    """`asha`: steps a trial runs before it can be stopped."""
    reduction_factor: float = Field(2.0, gt=1)
    """`asha`: 1/reduction_factor of the trials go on at each rung."""
    max_t: int | None = Field(None, ge=1)
    """`asha`: the step budget of a trial; null uses the largest `steps` a trial of the sweep can have."""
    max_concurrent_trials: int | None = Field(None, ge=1)
    """Cap on trials running at once; null lets the resources decide."""
    seed: int | None = None
    """Seeds the sampling of the non-grid dimensions, so a spec expands to the same trials every time."""

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in CLIP_METRICS + GROUND_TRUTH_METRICS:
            raise ValueError(f"expected one of {', '.join(CLIP_METRICS + GROUND_TRUTH_METRICS)}, got {v!r}")
        return v


class Resources(Schema):
    cpu: float = Field(1.0, gt=0)
    """CPUs per trial; also the trial's torch threads."""
    gpu: float = Field(0.0, ge=0)
    """GPUs per trial; a fraction (0.5) packs trials onto one GPU."""
    custom: dict[str, float] = {}
    """Custom Ray resources per trial, e.g. {node2: 1} to pin trials to the nodes that advertise it."""

    @field_validator("gpu")
    @classmethod
    def _whole_above_one(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"a fraction of a GPU must be <= 1; above 1 a whole number is expected, got {v}")
        return v

    def ray_resources(self) -> dict[str, float]:
        """The request as Ray names it, zero entries dropped."""
        wanted = {"CPU": self.cpu, "GPU": self.gpu, **self.custom}
        return {k: v for k, v in wanted.items() if v > 0}


class Tracking(Schema):
    uri: str | None = None
    """MLflow tracking URI; null uses $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db in the working directory."""
    experiment: str | None = None
    """MLflow experiment; null uses the sweep name."""
    flush_every: int = Field(25, ge=1)
    """Steps of step metrics batched into one MLflow write: fewer, larger writes keep the trial fast."""


class SweepSpec(Schema):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Names the sweep's result directory and its MLflow experiment: letters, digits, `_`, `.`, `-`."""
    description: str = ""
    """The question the sweep asks; shown on the MLflow parent run."""
    base: dict[str, Any] = {}
    """The trial config every trial starts from: the schema of `df-sweep run --config`."""
    space: dict[str, Dimension] = {}
    """Dotted trial-config keys → the values they take."""
    tune: TuneBlock = TuneBlock()
    """Search and scheduling."""
    resources: Resources = Resources()
    """What one trial needs."""
    max_failures: int = Field(1, ge=-1)
    """Retries of a failed trial from its last checkpoint (-1: forever)."""
    tracking: Tracking = Tracking()
    """Where trials are logged."""

    @property
    def varied(self) -> list[str]:
        return list(self.space)

    def grid_keys(self) -> list[str]:
        return [k for k, d in self.space.items() if d.kind == "grid"]

    def grid_points(self) -> list[dict[str, Any]]:
        """The grid's combinations, as `itertools.product` orders them."""
        keys = self.grid_keys()
        return [dict(zip(keys, values)) for values in itertools.product(*(self.space[k].grid for k in keys))]

    def num_trials(self) -> int:
        return math.prod(len(self.space[k].grid) for k in self.grid_keys()) * self.tune.num_samples

    def trial_config(self, values: dict[str, Any], source: str = "sweep") -> TrialConfig:
        """The base with the varied dotted keys set to `values`, as one validated trial config."""
        data = copy.deepcopy(self.base)
        for key, value in values.items():
            set_dotted(data, key, value)
        return build_trial_config(data, source)

    def max_steps(self) -> int:
        """The longest trial the sweep can run: ASHA's default step budget."""
        steps = [build_trial_config(self.base, "base").steps]
        if "steps" in self.space:
            steps += [int(v) for v in self.space["steps"].extremes()]
        return max(steps)


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_spec(path: str | Path, overrides: list[str] = ()) -> SweepSpec:
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
        raise ConfigError(f"{source}: space: expected at least one dotted key to vary, e.g. "
                          f"{{seed: {{grid: [0, 1]}}}} (for a single trial use df-sweep run)")
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


def check_metric(spec: SweepSpec, base: TrialConfig, source: str) -> None:
    """A ground-truth metric must exist in every trial, or Tune cannot rank (nor ASHA stop) the trials."""
    if spec.tune.metric not in GROUND_TRUTH_METRICS:
        return
    prompts = spec.space["prompt"].extremes() if "prompt" in spec.space else [base.prompt]
    outside = [p for p in prompts if world.parse_prompt(str(p)) is None]
    if outside:
        raise ConfigError(f"{source}: tune.metric: {spec.tune.metric} exists only for toy-world prompts, not "
                          f"{outside[0]!r}; expected one of {', '.join(CLIP_METRICS)}")


def _combinations(spec: SweepSpec) -> Iterator[dict[str, Any]]:
    """Every combination of the dimensions' extremes, unless there are too many to check in a blink."""
    keys = list(spec.space)
    lists = [spec.space[k].extremes() for k in keys]
    if len(keys) < 2 or math.prod(len(v) for v in lists) > MAX_VALIDATED_COMBINATIONS:
        return
    for values in itertools.product(*lists):
        yield dict(zip(keys, values))


def check_trial(cfg: TrialConfig, label: str) -> None:
    """What the schema alone cannot see, checked without loading any model: is the prior there, and can it
    condition on the prompt? `label` says which file and which trial of the space the config came from."""
    kind = cfg.prior.kind
    if kind == "toyworld":
        from dreamfusion.priors.toyworld import WEIGHTS

        if not (WEIGHTS / "unet").is_dir():
            raise ConfigError(f"{label}: prior: the toyworld weights are not installed ({WEIGHTS}); expected "
                              f"prior: analytic, or retrain them with df-sweep toyworld train --install")
    if kind in CLOSED_VOCABULARY_PRIORS and world.parse_prompt(cfg.prompt) is None:
        raise ConfigError(f"{label}: prompt: {cfg.prompt!r} is not known to the {kind} prior; expected a toy-world "
                          f"prompt 'a <colour> <shape>' such as 'a red cube' (see df-sweep priors)")
    if kind not in CLOSED_VOCABULARY_PRIORS and not _model_reference(cfg.prior.model):
        raise ConfigError(f"{label}: prior: {cfg.prior.model!r} is not a prior; expected analytic, toyworld, "
                          f"stable-diffusion, deepfloyd-if, a local model directory or a hub id 'org/name'")
    if cfg.scoring.model == "analytic" and kind != "analytic":
        raise ConfigError(f"{label}: scoring.model: analytic scores with the analytic prior's images; expected "
                          f"auto or a CLIP model with prior {kind}")


def _model_reference(model: str | None) -> bool:
    """A diffusers prior names its weights by the kind's default, a local directory, or a hub id `org/name`."""
    return model is None or Path(model).expanduser().is_dir() or re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None


def _suggest(key: str, known: set[str]) -> str:
    """`guidance_scale` → "sds.guidance_scale": the known key with the same last part, if there is one."""
    tail = key.rpartition(".")[2]
    matches = sorted(k for k in known if k.rpartition(".")[2] == tail)
    return f"{matches[0]!r}" if matches else "a dotted key of the trial config, such as 'sds.guidance_scale'"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------------------------------
# Display


def trial_table(spec: SweepSpec) -> list[dict[str, str]]:
    """The expanded trials as rows: grid points enumerated, sampled dimensions shown as their distribution."""
    sampled = {k: d.describe() for k, d in spec.space.items() if d.kind != "grid"}
    return [{"#": str(i), **{k: _fmt(point[k]) if k in point else sampled[k] for k in spec.space}}
            for i, point in enumerate(spec.grid_points())]


def short_names(keys: list[str]) -> dict[str, str]:
    """Dotted keys → their last part (`sds.timesteps.schedule` → `schedule`), unless two would then read the same."""
    tails = [k.rpartition(".")[2] for k in keys]
    return {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails)}


def run_name(values: dict[str, Any]) -> str:
    """`prompt=a red cube,schedule=anneal,seed=0`: a trial named by the values it varies."""
    names = short_names(list(values))
    return ",".join(f"{n}={_fmt(v)}" for n, v in sorted((names[k], v) for k, v in values.items()))


def format_table(rows: list[dict[str, str]]) -> str:
    """Left-aligned columns under a header: the dry-run, validate and status tables."""
    if not rows:
        return "(no trials)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
