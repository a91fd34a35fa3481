"""The sweep spec: a typed YAML schema of a base trial config plus a search space over its dotted keys.

Reading and validating a spec whole is `validate.py`; the mapping onto `ray.tune` is `dreamfusion/tune/tuner.py`.
Nothing here imports Ray, so `df-sweep validate` and `--dry-run` stay fast.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from dreamfusion.config.files import build_trial_config, set_dotted
from dreamfusion.config.schema import Schema, TrialConfig
from dreamfusion.evaluators.base import all_metrics
from dreamfusion.sweep.space import BRANCH_PREFIX, Dimension, combinations, count

#: Searchers that draw each trial from the results so far, rather than expanding the space up front.
MODEL_BASED = ("optuna", "hyperopt", "bohb")


class PBTBlock(Schema):
    """Population Based Training (Jaderberg et al. 2017) through Ray Tune's `PopulationBasedTraining`: at every
    perturbation, a trial in the bottom quantile continues from the checkpoint of one in the top quantile with
    that trial's config, perturbed. Each perturbation is recorded in the trial's MLflow run (`df.pbt.*` tags, the
    `pbt/perturbations.json` artifact, and a `pbt/<key>` metric of each numeric mutated value)."""

    perturbation_interval: int = Field(100, ge=1)
    """Steps between perturbations of a trial: a multiple of `checkpoint_every` (itself a multiple of
    `eval.every`), so that the checkpoint a trial exploits is the one saved at the evaluation PBT ranked."""
    mutate: list[str] = Field(default_factory=list)
    """The space keys PBT perturbs, each drawn from its own dimension on a resample: a range is multiplied by 0.8
    or 1.2 (kept inside the range), a list moves to a neighbouring value. Every other dimension must be `seed`:
    an exploiting trial takes on the whole config of the trial it copies."""
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    """The fraction of trials in the top (copied) and the bottom (copying) quantile."""
    resample_probability: float = Field(0.25, ge=0, le=1)
    """The probability that a perturbed value is drawn afresh from its dimension instead of moved."""
    synch: bool = False
    """Wait at every perturbation until all trials have reached it, then perturb: the same decisions every time
    (metrics are deterministic), at the cost of slots idling while the slowest trial catches up. Asynchronous
    (false) decides as each trial reports, against whatever the others last reported."""


class TuneBlock(Schema):
    metric: str = "clip_r_precision"
    """The metric the best trial is picked by (and ASHA stops on): any metric a registered evaluator logs, e.g.
    the CLIP metrics, or for toy-world prompts `gt_iou` / `gt_colour_error` (exact scores against its ground truth)."""
    mode: Literal["max", "min"] = "max"
    """Whether a larger or a smaller metric is better; when left out, the metric's own direction."""
    search: Literal["random", "grid", "optuna", "hyperopt", "bohb"] = "random"
    """How trials are chosen. `random`: Ray's variant generator, grid dimensions crossed and the others drawn at
    random, `num_samples` times over. `grid`: the same, with every dimension a grid. `optuna` (TPE), `hyperopt`
    (TPE) and `bohb` (with `scheduler: hyperband`; `pip install 'df-sweep[bohb]'`): Ray Tune's integrations of
    model-based searchers, which draw `num_samples` trials in all, each from the results so far (no grids)."""
    num_samples: int = Field(1, ge=1)
    """`random`/`grid`: repeats of the whole grid, each drawing fresh values for the sampled dimensions (under
    `pbt`, the population of each grid point). `optuna`/`hyperopt`/`bohb`: the number of trials."""
    scheduler: Literal["fifo", "asha", "hyperband", "pbt"] = "fifo"
    """`fifo` runs every trial to the end; `asha` stops the worse trials early at its rungs; `hyperband` runs
    HyperBand's brackets (pausing and resuming trials from their checkpoints; BOHB's own with `search: bohb`);
    `pbt` is Population Based Training (`tune.pbt`)."""
    grace_period: int = Field(100, ge=1)
    """`asha`: steps a trial runs before it can be stopped."""
    reduction_factor: float = Field(2.0, gt=1)
    """`asha`, `hyperband`: 1/reduction_factor of the trials go on at each rung."""
    max_t: int | None = Field(None, ge=1)
    """`asha`, `hyperband`: the step budget of a trial; null uses the largest `steps` a trial of the sweep can
    have."""
    pbt: PBTBlock = PBTBlock()
    """`pbt`: what Population Based Training perturbs, and how often."""
    max_concurrent_trials: int | None = Field(None, ge=1)
    """Cap on trials running at once; null lets the resources decide."""
    seed: int | None = None
    """Seeds the sampling of the non-grid dimensions, so a spec expands to the same trials every time."""

    @model_validator(mode="before")
    @classmethod
    def _metric_direction(cls, data: Any) -> Any:
        """A known metric decides the direction unless the spec says it (saying the opposite is `_same_direction`)."""
        if not isinstance(data, dict) or data.get("mode") is not None:
            return data
        metric = all_metrics().get(data.get("metric", "clip_r_precision"))
        return data if metric is None else {**data, "mode": metric.mode}

    @field_validator("mode")
    @classmethod
    def _same_direction(cls, v: str, info: ValidationInfo) -> str:
        """A field's check, not the block's: a wrong mode is reported beside the block's other mistakes."""
        metric = all_metrics().get(info.data.get("metric", ""))
        if metric is not None and v != metric.mode:
            raise ValueError(
                f"{info.data['metric']} is better when {'larger' if metric.mode == 'max' else 'smaller'};"
                f" expected mode: {metric.mode}"
            )
        return v

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        logged = all_metrics()
        known = sorted(name for name, metric in logged.items() if metric.ranked)
        if v in logged and not logged[v].ranked:
            raise ValueError(f"{v} is a reading, not a score ({logged[v].doc}); expected one of {', '.join(known)}")
        if v not in logged:
            raise ValueError(f"expected a metric an evaluator logs ({', '.join(known)}), got {v!r}")
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
    system_every_s: float = Field(2.0, ge=0.1)
    """Seconds between samples of a trial process's CPU, memory and GPU (`system/` metrics)."""
    async_logging: bool = True
    """Write step metrics in the background (MLflow's asynchronous logging) while the trial goes on; each eval and
    the trial's end wait for them. false writes each batch before the trial goes on: slower, for debugging a store
    or reading its writes in their exact order as they happen. The metrics logged are the same either way."""


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
    """Retries of a failed trial from its last checkpoint (-1: forever); a trial that fails on its config is never
    retried (it would fail the same way)."""
    tracking: Tracking = Tracking()
    """Where trials are logged."""

    @property
    def varied(self) -> list[str]:
        return list(self.space)

    def grid_options(self) -> dict[str, list[Any]]:
        return {k: list(d.argument) for k, d in self.space.items() if d.kind == "grid"}

    def grid_points(self) -> Iterator[dict[str, Any]]:
        """The grid's combinations, lazily (a grid may be huge), a conditional grid crossed only where its
        condition holds."""
        return combinations(self.space, self.grid_options())

    def grid_size(self) -> int:
        """How many grid points, from the dimensions alone (nothing is enumerated)."""
        return count(self.space, self.grid_options())

    def num_trials(self) -> int:
        """The exact number of trials, computed from the dimensions without enumerating them: what the trial-count
        limit and the dry run read."""
        if self.tune.search in MODEL_BASED:
            return self.tune.num_samples
        return self.grid_size() * self.tune.num_samples

    def trial_values(self, config: dict[str, Any]) -> dict[str, Any]:
        """The varied values of a trial from its Tune config, whatever the searcher's layout: flat keys, or a
        condition key and its dependents nested under `when:KEY`. Dimensions whose condition fails are absent."""
        flat: dict[str, Any] = {}
        for key, value in config.items():
            if key.startswith(BRANCH_PREFIX) and isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        # searchers may hand back numpy scalars (BOHB's np.str_): plain values for configs, names and JSON
        return {k: flat[k].item() if hasattr(flat[k], "item") else flat[k] for k in self.space if k in flat}

    def trial_config(self, values: dict[str, Any], source: str = "sweep") -> TrialConfig:
        """The base with the varied dotted keys set to `values`, as one validated trial config."""
        data = copy.deepcopy(self.base)
        for key, value in values.items():
            set_dotted(data, key, value)
        return build_trial_config(data, source)

    def max_steps(self) -> int:
        """The longest trial the sweep can run: the default step budget of ASHA and HyperBand."""
        steps = [build_trial_config(self.base, "base").steps]
        if "steps" in self.space:
            steps += [int(v) for v in self.space["steps"].extremes()]
        return max(steps)
