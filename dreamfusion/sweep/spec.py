"""The sweep spec: a typed YAML schema of a base trial config plus a search space over its dotted keys.

Reading and validating a spec whole is `validate.py`; the mapping onto `ray.tune` is `tuner.py`. Nothing here
imports Ray, so `df-sweep validate` and `--dry-run` stay fast.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dreamfusion.config.files import build_trial_config, set_dotted
from dreamfusion.config.schema import Schema, TrialConfig
from dreamfusion.evaluators.base import all_metrics

KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")


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
    def argument(self) -> Any:
        """The kind's value: the list of a grid or choice, the bounds of a range."""
        return getattr(self, self.kind)

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

    def describe(self) -> str:
        """`uniform(0.1, 1.0)`: how the dry-run table shows a dimension that is sampled rather than enumerated."""
        return f"~{self.kind}({', '.join(fmt_value(v) for v in self.argument)})"


class TuneBlock(Schema):
    metric: str = "clip_r_precision"
    """The metric the best trial is picked by (and ASHA stops on): any metric a registered evaluator logs, e.g.
    the CLIP metrics, or for toy-world prompts `gt_iou` / `gt_colour_error` (exact scores against its ground truth)."""
    mode: Literal["max", "min"] = "max"
    """Whether a larger or a smaller metric is better; when left out, the metric's own direction."""
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

    @model_validator(mode="before")
    @classmethod
    def _metric_direction(cls, data: Any) -> Any:
        """A known metric decides the direction unless the spec says it; saying the opposite is a mistake."""
        if not isinstance(data, dict):
            return data
        metric = all_metrics().get(data.get("metric", "clip_r_precision"))
        if metric is None:
            return data
        if data.get("mode") is None:
            return {**data, "mode": metric.mode}
        if data["mode"] != metric.mode:
            raise ValueError(
                f"mode: {data['metric']} is better when {'larger' if metric.mode == 'max' else 'smaller'};"
                f" expected mode: {metric.mode}"
            )
        return data

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
        return [dict(zip(keys, values)) for values in itertools.product(*(self.space[k].argument for k in keys))]

    def num_trials(self) -> int:
        return math.prod(len(self.space[k].argument) for k in self.grid_keys()) * self.tune.num_samples

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


def fmt_value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
