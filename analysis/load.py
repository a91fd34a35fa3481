"""Sweeps in MLflow → tidy pandas frames. Reads MLflow only (a SQLite store or a tracking server alike), with
MLflow's own `search_runs` into pandas.

Layout read (written by `dreamfusion/tracking/`, named in its `schema.py`): experiment = sweep name; one parent
run per launch tagged `df.sweep`, the spec as its `spec.yaml`; one child run per trial tagged
`mlflow.parentRunId`, params = the flattened trial config (typed back by the trial schema:
`dreamfusion/tracking/params.py`), metrics = whatever the trial's steps and evaluators
logged, `df.component.<kind>` = `name@version` of each component it ran, `df.direction.<metric>` = which way each
score is better and `df.levels.<metric>` = what an index metric's values name, as the evaluators declared them,
`df.prior.sha256` = the sha256 of the prior's weights as loaded.

Several sweeps, or launches of one (`NAME@LAUNCH`), load into one frame with a `sweep` column naming each.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd
import yaml

from analysis.store import quiet_artifacts, search_runs
from dreamfusion.errors import ConfigError
from dreamfusion.tracking.params import typed
from dreamfusion.tracking.schema import (
    COMPONENT_TAG_PREFIX,
    DIRECTION_TAG_PREFIX,
    EXPECTED_TRIALS,
    FAILURE_TAG,
    LAUNCH_TAG,
    LEVELS_SEPARATOR,
    LEVELS_TAG_PREFIX,
    PARENT_TAG,
    PRIOR_HASH_TAG,
    RUN_NAME_TAG,
    SPEC_ARTIFACT,
    STEP_TIME,
    SWEEP_TAG,
)

DEFAULT_URI = "sqlite:///mlruns.db"  # where `df-sweep launch` writes by default, relative to the cwd
#: Search-space kinds whose values are levels to compare pairwise; the others (uniform, loguniform, quniform)
#: draw a new value per trial, so they are covariates: importance and plots use them, pairing cannot.
DISCRETE_KINDS = ("grid", "choice", "randint")


class SweepNotFound(ConfigError):
    """No experiment (or launch) of that name in the tracking store: a user mistake, reported in one line."""


@dataclass
class Source:
    """One sweep, or one launch of it, as named on the command line."""

    label: str  # the `sweep` column's value: NAME, or NAME@LAUNCH
    experiment_id: str
    parent_run_ids: list[str]
    spec: dict  # the newest selected launch's spec.yaml (empty if none)
    expected_trials: int | None = None  # summed over its launches; None when one did not record it
    launch_ends: list[str] = field(default_factory=list)  # each launch's status, and why it failed: "FAILED (...)"

    @property
    def tune(self) -> dict:
        tune = self.spec.get("tune")
        return tune if isinstance(tune, dict) else {}


@dataclass
class Sweep:
    name: str
    tracking_uri: str
    trials: pd.DataFrame  # one row per trial: run_id, run_name, sweep, status, compute_s, params, metrics, components
    curves: pd.DataFrame  # long: run_id, metric, step, value (+ varied params, sweep)
    varied: list[str]  # dotted config keys a spec searches over (union over sources), in spec order
    sources: list[Source]
    metric: str = "clip_r_precision"
    mode: str = "max"
    continuous: set[str] = field(default_factory=set)  # varied keys drawn per trial rather than taken from levels
    missing: list[str] = field(default_factory=list)  # what a partial sweep lacks, in words
    directions: dict[str, str] = field(default_factory=dict)  # metric → "max"/"min", as its runs record it
    levels: dict[str, list[str]] = field(default_factory=dict)  # index metric → what its values 0, 1, … name
    prior_sha256: dict[str, str] = field(default_factory=dict)  # run id → its prior's sha256, where it recorded one

    @property
    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "FINISHED"]

    @property
    def spec(self) -> dict:
        return self.sources[0].spec if self.sources else {}

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.sources]

    @property
    def expected_trials(self) -> int | None:
        """How many trials the launches recorded they would run; None when one of them did not record it."""
        counts = [s.expected_trials for s in self.sources]
        return sum(c for c in counts if c is not None) if counts and None not in counts else None

    def direction(self, metric: str) -> str | None:
        """Which way `metric` is better, "max" or "min": as its runs record it (the evaluator that logs it declares
        it), else, for a metric a spec ranks by, that spec's `tune.mode`. Otherwise None, and a report states a
        difference without calling either side better: that is all it can honestly say of runs logged before
        directions were recorded, and of step metrics (loss, step time), which no evaluator declares; a guess from
        the metric's name could crown the worse level."""
        ranked_by = {s.tune.get("metric", self.metric): s.tune.get("mode", self.mode) for s in self.sources}
        return self.directions.get(metric) or (ranked_by or {self.metric: self.mode}).get(metric)


def load_sweep(name: str, tracking_uri: str | None = None, with_curves: bool = True) -> Sweep:
    """Every trial of sweep `name` (or `name@launch`) from MLflow: the notebook entry point."""
    return load_sweeps([name], tracking_uri, with_curves)


def load_sweeps(names: list[str], tracking_uri: str | None = None, with_curves: bool = True) -> Sweep:
    """Sweeps, or launches (`NAME@LAUNCH`: a parent run id or its prefix, the launch's name, or its number, 1 the
    first and -1 the newest), in one frame; raises SweepNotFound for a name the store does not hold."""
    from mlflow import MlflowClient

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise SweepNotFound(
            f"no tracking store at {uri} (run from the directory you launched in, or pass --tracking-uri)"
        )
    if len(set(names)) < len(names):
        raise SweepNotFound(f"a sweep is named twice: {' '.join(names)}")
    client = MlflowClient(uri)
    sources, frames = [], []
    for name in names:
        with quiet_artifacts():
            source, children = _source(client, uri, name)
        sources.append(source)
        frames.append(children.assign(sweep=source.label))
    runs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    curves = _histories(client, runs, with_curves)
    trials = _trial_frame(runs, curves)
    varied, continuous = _varied(trials, sources)
    first = sources[0].tune
    sweep = Sweep(
        " vs ".join(names),
        uri,
        trials,
        _curve_frame(curves, trials, varied) if with_curves else pd.DataFrame(),
        varied,
        sources,
        first.get("metric", "clip_r_precision"),
        first.get("mode", "max"),
        continuous,
        directions=_recorded(runs, DIRECTION_TAG_PREFIX),
        levels={m: names.split(LEVELS_SEPARATOR) for m, names in _recorded(runs, LEVELS_TAG_PREFIX).items()},
        prior_sha256=_prior_hashes(runs),
    )
    sweep.missing = [note for s in sources for note in _missing(sweep, s)]
    return sweep


def _tag(runs: pd.DataFrame, tag: str) -> pd.Series:
    column = f"tags.{tag}"
    return runs[column] if column in runs else pd.Series(None, index=runs.index, dtype=object)


def _recorded(runs: pd.DataFrame, prefix: str) -> dict[str, str]:
    """metric → the value the runs' `<prefix><metric>` tags hold, where they agree. Runs that disagree (sweeps
    compared across a change of the declaration) leave the metric out: unknown, rather than either one's."""
    found = {}
    for column in (c for c in runs if c.startswith(f"tags.{prefix}")):
        values = runs[column].dropna().unique()
        if len(values) == 1:
            found[column.removeprefix(f"tags.{prefix}")] = str(values[0])
    return found


def _prior_hashes(runs: pd.DataFrame) -> dict[str, str]:
    """run id → the sha256 of the prior's weights it recorded (`df.prior.sha256`; runs logged before it have none)."""
    if runs.empty:
        return {}
    return {r: h for r, h in zip(runs["run_id"], _tag(runs, PRIOR_HASH_TAG)) if isinstance(h, str) and h}


def _source(client, uri: str, name: str) -> tuple[Source, pd.DataFrame]:
    """The experiment's launches that `name` selects, and their child runs."""
    experiment, _, selector = name.partition("@")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        known = sorted(e.name for e in client.search_experiments())
        raise SweepNotFound(f"no sweep named {experiment!r} in {uri} (known: {', '.join(known) or 'none'})")
    runs = search_runs(uri, exp.experiment_id)
    if runs.empty:
        return Source(name, exp.experiment_id, [], {}), runs
    is_parent = _tag(runs, SWEEP_TAG).notna() & _tag(runs, PARENT_TAG).isna()
    parents = runs[is_parent].sort_values("start_time")
    if selector:
        parents = _select_launch(parents, selector, experiment)
    ids = list(parents["run_id"])
    children = runs[_tag(runs, PARENT_TAG).isin(ids)] if ids else runs[~is_parent]
    source = Source(name, exp.experiment_id, ids, _spec(client, ids), _expected_trials(parents), _ends(parents))
    return source, children


def _expected_trials(parents: pd.DataFrame) -> int | None:
    """How many trials the launches expanded to, as each recorded at launch (`df.expected_trials`): the spec's own
    count, `when:` conditions honoured. None when a launch predates the record: unknown, rather than a guess."""
    param = f"params.{EXPECTED_TRIALS}"
    recorded = parents[param] if param in parents else pd.Series(None, index=parents.index, dtype=object)
    counts = pd.to_numeric(recorded.fillna(_tag(parents, EXPECTED_TRIALS)), errors="coerce")  # a tag before
    return int(counts.sum()) if len(counts) and counts.notna().all() else None


def _ends(parents: pd.DataFrame) -> list[str]:
    """Each launch's run status, a failed one's with its reason: `FAILED (2 errored of 2 trials; …)`."""
    failures = _tag(parents, FAILURE_TAG).fillna("")
    return [f"{s} ({f})" if f else str(s) for s, f in zip(parents["status"], failures)]


PLACE_DIGITS = 4


def _select_launch(parents: pd.DataFrame, selector: str, experiment: str) -> pd.DataFrame:
    """The one launch a selector names (parents sorted oldest first)."""
    # A number of up to PLACE_DIGITS digits is a place (`@7` is the seventh launch, even when a run id starts "7");
    # a longer one is a run id prefix (MLflow's ids are hex, so a prefix may be all digits), as is any other text.
    if selector.lstrip("-").isdigit() and len(selector.lstrip("-")) <= PLACE_DIGITS:
        index = int(selector)
        if 0 < abs(index) <= len(parents):
            return parents.iloc[[index - 1 if index > 0 else index]]
        match = parents.iloc[0:0]
    else:
        match = parents[parents["run_id"].str.startswith(selector) | (_tag(parents, LAUNCH_TAG) == selector)]
    if len(match) != 1:
        names = ", ".join(_tag(parents, LAUNCH_TAG).fillna(parents["run_id"]))
        raise SweepNotFound(
            f"{'no' if match.empty else 'more than one'} launch {selector!r} in sweep {experiment!r} "
            f"(launches, oldest first: {names or 'none'})"
        )
    return match


def _spec(client, parent_ids: list[str]) -> dict:
    """The sweep spec the newest of these launches stored as its artifact `spec.yaml` (empty if none)."""
    for run_id in reversed(parent_ids):
        try:
            local = client.download_artifacts(run_id, SPEC_ARTIFACT)
        except Exception:  # an older or interrupted launch without the artifact
            continue
        return yaml.safe_load(Path(local).read_text()) or {}
    return {}


def _histories(client, runs: pd.DataFrame, every_metric: bool) -> pd.DataFrame:
    """Logged metric points (run_id, metric, step, value): of every metric a run holds, or of its step time only."""
    rows = []
    metrics = [c for c in runs if c.startswith("metrics.")]
    for _, run in runs.iterrows():
        held = [c.removeprefix("metrics.") for c in metrics if pd.notna(run[c])]
        for key in held if every_metric else [k for k in held if k == STEP_TIME]:
            rows += [(run["run_id"], key, m.step, m.value) for m in client.get_metric_history(run["run_id"], key)]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])


def _trial_frame(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per trial. `compute_s` is the trial's summed step time (each step once, as the run holds it), so
    an outage between a failure and its retry costs nothing; `wall_s` is first start to last end, outage and all."""
    columns = ["run_id", "run_name", "sweep", "status", "compute_s", "wall_s", "failure", "artifact_uri"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    step_time = curves[curves["metric"] == STEP_TIME].groupby("run_id")["value"].sum() / 1000.0
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"],
            "run_name": _tag(runs, RUN_NAME_TAG),
            "sweep": runs["sweep"],
            "status": runs["status"],
            "compute_s": runs["run_id"].map(step_time),
            "wall_s": (runs["end_time"].fillna(runs["start_time"]) - runs["start_time"]).dt.total_seconds(),
            "failure": _tag(runs, FAILURE_TAG).fillna(""),
            "artifact_uri": runs["artifact_uri"],
        }
    )
    renamed = {
        **{c: f"param:{c.removeprefix('params.')}" for c in runs if c.startswith("params.")},
        **{c: c.removeprefix("metrics.") for c in runs if c.startswith("metrics.")},
        **{c: f"component:{c.removeprefix('tags.' + COMPONENT_TAG_PREFIX)}" for c in runs if _is_component(c)},
    }
    extra = runs[list(renamed)].rename(columns=renamed)
    params = [c for c in extra if c.startswith("param:")]
    extra = extra.assign(**{c: extra[c].map(partial(typed, c.removeprefix("param:"))) for c in params})
    return pd.concat([frame, extra], axis=1).sort_values(["sweep", "run_name"]).reset_index(drop=True)


def _is_component(column: str) -> bool:
    return column.startswith(f"tags.{COMPONENT_TAG_PREFIX}")


def _varied(trials: pd.DataFrame, sources: list[Source]) -> tuple[list[str], set[str]]:
    """The specs' search-space keys (in spec order, the union over sources) and which of them are continuous;
    without specs, every param that takes more than one value, continuous when most of its values are unique."""
    declared: dict[str, dict] = {}
    for source in sources:
        for key, space in (source.spec.get("space") or {}).items():
            if f"param:{key}" in trials:
                declared.setdefault(key, space if isinstance(space, dict) else {})
    if declared:
        continuous = {k for k, space in declared.items() if not any(kind in space for kind in DISCRETE_KINDS)}
        return list(declared), continuous
    params = [c for c in trials.columns if c.startswith("param:")]
    varied = [c.removeprefix("param:") for c in params if trials[c].astype(str).nunique() > 1]
    continuous = {
        k
        for k in varied
        if pd.api.types.is_float_dtype(trials[f"param:{k}"]) and trials[f"param:{k}"].nunique() > len(trials) / 2
    }
    return varied, continuous


def _curve_frame(curves: pd.DataFrame, trials: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    keep = trials[["run_id", "sweep", *[f"param:{k}" for k in varied]]]
    return curves.merge(keep, on="run_id", how="left").rename(columns=lambda c: c.removeprefix("param:"))


def _missing(sweep: Sweep, source: Source) -> list[str]:
    prefix = f"{source.label}: " if len(sweep.sources) > 1 else ""
    t = sweep.trials[sweep.trials["sweep"] == source.label]
    running = not source.launch_ends or any(end == "RUNNING" for end in source.launch_ends)
    if t.empty:
        ended = f"the launch ended {'; '.join(source.launch_ends)}" if not running else ""
        return [f"{prefix}no trial runs yet" if running else f"{prefix}no trial run was logged: {ended}"]
    if (t["status"] == "FAILED").all():
        notes = [f"{prefix}{_all_failed(t)}"]
    else:
        counts = t["status"].value_counts().items()
        notes = [f"{prefix}{n} trial(s) {status}" for status, n in counts if status != "FINISHED"]
    expected = source.expected_trials
    if expected is not None and len(t) < expected:
        notes.append(f"{prefix}{expected - len(t)} of {expected} trials have no run{' yet' * running}")
    metric = source.tune.get("metric", sweep.metric)
    if metric not in t or t[metric].isna().all():
        notes.append(f"{prefix}no trial has logged the sweep metric {metric!r}")
    return notes


def _all_failed(trials: pd.DataFrame) -> str:
    """All of a source's trial runs failed: how many, and the most common reason they record."""
    reasons = trials["failure"][trials["failure"] != ""].value_counts()
    common = f" (most often: {reasons.index[0]}, {reasons.iloc[0]} of them)" if len(reasons) else ""
    return f"all {len(trials)} trial runs failed{common}"


def varied_frame(sweep: Sweep) -> pd.DataFrame:
    """The trial frame with varied params under their dotted names, for grouping."""
    return sweep.trials.rename(columns={f"param:{k}": k for k in sweep.varied})
