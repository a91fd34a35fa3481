"""A sweep in MLflow → tidy pandas frames. Reads MLflow only (a SQLite store or a tracking server alike).

Layout read (written by `dreamfusion/tracking/`, named in its `schema.py`): experiment = sweep name; one parent
run per launch tagged `df.sweep`; one child run per trial tagged `mlflow.parentRunId`, params = the flattened
trial config, metrics = whatever the trial's steps and evaluators logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from dreamfusion.errors import ConfigError
from dreamfusion.tracking.schema import (
    FAILURE_TAG,
    PARENT_TAG,
    SPEC_ARTIFACT,
    SWEEP_TAG,
)

DEFAULT_URI = "sqlite:///mlruns.db"  # where `df-sweep launch` writes by default, relative to the cwd


class SweepNotFound(ConfigError):
    """No experiment (or launch) of that name in the tracking store: a user mistake, reported in one line."""


@dataclass
class Sweep:
    name: str
    experiment_id: str
    tracking_uri: str
    trials: pd.DataFrame  # one row per trial: run_id, run_name, status, duration_s, varied params, final metrics
    curves: pd.DataFrame  # long: run_id, step, metric, value (+ varied params)
    varied: list[str]  # dotted config keys that differ between trials, in spec order where known
    metric: str = "clip_r_precision"
    mode: str = "max"
    spec: dict = field(default_factory=dict)
    parent_run_ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what a partial sweep lacks, in words

    @property
    def finished(self) -> pd.DataFrame:
        return self.trials[self.trials["status"] == "FINISHED"]


def load_sweep(
    name: str, tracking_uri: str | None = None, launch: str | None = None, with_curves: bool = True
) -> Sweep:
    """Load every trial of sweep `name` (or of one launch, by parent run id) from MLflow."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise SweepNotFound(
            f"no tracking store at {uri} (run from the directory you launched in, or pass --tracking-uri)"
        )
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is None:
        known = [e.name for e in client.search_experiments()]
        raise SweepNotFound(f"no sweep named {name!r} in {uri} (known: {', '.join(sorted(known)) or 'none'})")
    runs = _all_runs(client, exp.experiment_id)
    parents = [r for r in runs if SWEEP_TAG in r.data.tags and PARENT_TAG not in r.data.tags]
    if launch is not None:
        parents = [p for p in parents if p.info.run_id == launch]
        if not parents:
            raise SweepNotFound(f"no launch {launch!r} in sweep {name!r}")
    parent_ids = {p.info.run_id for p in parents}
    children = (
        [r for r in runs if r.data.tags.get(PARENT_TAG) in parent_ids]
        if parent_ids
        else [r for r in runs if SWEEP_TAG not in r.data.tags]
    )
    spec = _spec(client, parents)
    tune = spec.get("tune", {}) if isinstance(spec.get("tune"), dict) else {}
    trials = _trial_frame(children)
    varied = _varied(trials, spec)
    curves = _curve_frame(client, children, varied, trials) if with_curves else pd.DataFrame()
    sweep = Sweep(
        name,
        exp.experiment_id,
        uri,
        trials,
        curves,
        varied,
        tune.get("metric", "clip_r_precision"),
        tune.get("mode", "max"),
        spec,
        sorted(parent_ids),
    )
    sweep.missing = _missing(sweep)
    return sweep


def _all_runs(client, experiment_id: str) -> list:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _spec(client, parents: list) -> dict:
    """The sweep spec the newest launch stored as its artifact `spec.yaml` (empty if none)."""
    for parent in sorted(parents, key=lambda r: r.info.start_time or 0, reverse=True):
        try:
            local = client.download_artifacts(parent.info.run_id, SPEC_ARTIFACT)
        except Exception:  # an older or interrupted launch without the artifact
            continue
        return yaml.safe_load(Path(local).read_text()) or {}
    return {}


def _trial_frame(children: list) -> pd.DataFrame:
    rows = []
    for r in children:
        end = r.info.end_time or r.info.start_time
        rows.append(
            {
                "run_id": r.info.run_id,
                "run_name": r.info.run_name,
                "status": r.info.status,
                "duration_s": ((end or 0) - (r.info.start_time or 0)) / 1000.0,
                "failure": r.data.tags.get(FAILURE_TAG, ""),
                "artifact_uri": r.info.artifact_uri,
                **{f"param:{k}": _parse(v) for k, v in r.data.params.items()},
                **dict(r.data.metrics.items()),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=["run_id", "run_name", "status", "duration_s", "failure", "artifact_uri"])
    return frame.sort_values("run_name").reset_index(drop=True)


def _parse(text: str):
    """MLflow stores params as strings; give numbers and booleans back their type for grouping and plotting."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (int, float, bool, str)) and value is not None else text


def _varied(trials: pd.DataFrame, spec: dict) -> list[str]:
    """The spec's search-space keys when known, else every param that takes more than one value."""
    declared = [k for k in (spec.get("space") or {}) if f"param:{k}" in trials]
    if declared:
        return declared
    cols = [c for c in trials.columns if c.startswith("param:")]
    return [c.removeprefix("param:") for c in cols if trials[c].astype(str).nunique() > 1]


def _curve_frame(client, children: list, varied: list[str], trials: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in children:
        for key in r.data.metrics:
            for m in client.get_metric_history(r.info.run_id, key):
                rows.append({"run_id": r.info.run_id, "metric": key, "step": m.step, "value": m.value})
    curves = pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])
    keep = trials[["run_id", *[f"param:{k}" for k in varied]]]
    return curves.merge(keep, on="run_id", how="left").rename(columns=lambda c: c.removeprefix("param:"))


def _missing(sweep: Sweep) -> list[str]:
    notes = []
    t = sweep.trials
    if t.empty:
        notes.append("no trial runs yet")
        return notes
    counts = t["status"].value_counts().to_dict()
    for status, n in counts.items():
        if status != "FINISHED":
            notes.append(f"{n} trial(s) {status}")
    expected = _expected_trials(sweep.spec)
    if expected and len(t) < expected:
        notes.append(f"{expected - len(t)} of {expected} trials have no run yet")
    if sweep.metric not in t or t[sweep.metric].isna().all():
        notes.append(f"no trial has logged the sweep metric {sweep.metric!r}")
    return notes


def _expected_trials(spec: dict) -> int | None:
    """Grid size × num_samples, when the spec's space is all grid."""
    space = spec.get("space") or {}
    if not space or not all(isinstance(v, dict) and "grid" in v for v in space.values()):
        return None
    n = 1
    for v in space.values():
        n *= len(v["grid"])
    return n * int((spec.get("tune") or {}).get("num_samples", 1))


def varied_frame(sweep: Sweep) -> pd.DataFrame:
    """The trial frame with varied params under their dotted names, for grouping."""
    return sweep.trials.rename(columns={f"param:{k}": k for k in sweep.varied})
