"""Run lifecycle: the parent run of a launch, reopening and ending runs, and making the child runs of a launch
agree with what Tune saw once it is over (no run left RUNNING, whatever stopped the launch)."""

from __future__ import annotations

import math
import statistics
import time
from typing import TYPE_CHECKING

from dreamfusion.errors import first_line
from dreamfusion.tracking.schema import (
    CONFIG_FAILURE_TAG,
    EXPECTED_TRIALS,
    FAILED_TRIALS,
    FAILURE_TAG,
    FINISHED_TRIALS,
    LAUNCH_TAG,
    NOTE_TAG,
    PARENT_TAG,
    SPEC_ARTIFACT,
    STOPPED_TAG,
    SWEEP_TAG,
    TRIAL_KEY_TAG,
    best_metric,
    median_metric,
)
from dreamfusion.tracking.store import client

if TYPE_CHECKING:
    from mlflow.entities import Run

MAX_TAG_VALUE = 6000  # MLflow's limit on a param or tag value, in characters
#: What a trial that failed on its config is told, and the launch says of it: no retry or resume runs another config.
CONFIG_FAILURE = "failed on its config, not retried: df-sweep resume would not help; fix the spec and launch again"


def start_parent_run(
    uri: str,
    experiment_id: str,
    sweep: str,
    launch: str,
    description: str,
    spec_yaml: str,
    expected_trials: int | None = None,
    params: dict[str, str] | None = None,
) -> str:
    """The launch's run: its sweep, name, description and spec; as params the sweep's `params` (spec name, search,
    scheduler, metric and mode) and, where known, `expected_trials`. Params are logged here only: MLflow refuses a
    param's change, and a resume reopens this run as it is."""
    from mlflow.entities import Param

    mlflow = client(uri)
    params = {**(params or {}), **({EXPECTED_TRIALS: str(expected_trials)} if expected_trials is not None else {})}
    run = mlflow.create_run(
        experiment_id, run_name=f"{sweep} {launch}", tags={SWEEP_TAG: sweep, LAUNCH_TAG: launch, NOTE_TAG: description}
    )
    try:
        mlflow.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
        mlflow.log_text(run.info.run_id, spec_yaml, SPEC_ARTIFACT)
    except BaseException as exc:  # a Ctrl-C here too: no parent run is left RUNNING without its launch
        end_run(uri, run.info.run_id, f"{failure_reason(exc)} before the launch started; launch it again")
        raise
    return str(run.info.run_id)


def record_outcome(uri: str, experiment_id: str, parent_run_id: str, metric: str, mode: str) -> None:
    """The parent run's summary metrics, from its child runs as they ended: how many FINISHED and FAILED, and the
    best (by `mode`) and median of `metric` over the finished ones that logged it (finite values only). Logged at
    step 0 each time the launch or a resume of it ends: MLflow shows the latest."""
    from mlflow.entities import Metric

    runs = child_runs(uri, experiment_id, parent_run_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    values = [v for r in finished if math.isfinite(v := r.data.metrics.get(metric, math.nan))]
    summary = {
        FINISHED_TRIALS: float(len(finished)),
        FAILED_TRIALS: float(sum(r.info.status == "FAILED" for r in runs)),
    }
    if values:
        summary[best_metric(metric)] = max(values) if mode == "max" else min(values)
        summary[median_metric(metric)] = statistics.median(values)
    now = int(time.time() * 1000)
    client(uri).log_batch(parent_run_id, metrics=[Metric(k, v, now, 0) for k, v in summary.items()])


def reopen_run(uri: str, run_id: str) -> None:
    """A resumed run is RUNNING again and no longer carries the reason it stopped."""
    mlflow = client(uri)
    mlflow.update_run(run_id, status="RUNNING")
    tags = mlflow.get_run(run_id).data.tags
    for tag in (FAILURE_TAG, STOPPED_TAG):
        if tag in tags:
            mlflow.delete_tag(run_id, tag)


def end_run(uri: str, run_id: str, failure: str | None = None) -> None:
    """FINISHED, or FAILED with the reason as the `df.failure` tag."""
    mlflow = client(uri)
    if failure is not None:
        mlflow.set_tag(run_id, FAILURE_TAG, failure[:MAX_TAG_VALUE])
    mlflow.set_terminated(run_id, "FAILED" if failure is not None else "FINISHED")


def child_runs(uri: str, experiment_id: str, parent_run_id: str) -> list[Run]:
    mlflow = client(uri)
    runs: list[Run] = []
    token = None
    while True:
        page = mlflow.search_runs([experiment_id], f"tags.{PARENT_TAG} = '{parent_run_id}'", page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def close_runs(uri: str, experiment_id: str, parent_run_id: str, finished: dict[str, int] | None, reason: str) -> None:
    """Make the child runs agree with Tune once a launch is over; `finished` maps each finished trial's id to
    its last step (None: unknown). A finished trial's run still RUNNING (its worker was stopped, by a scheduler
    or at the end, while closing it) ends FINISHED, tagged with the step it stopped at if it stopped early; any
    other run that is RUNNING, or FINISHED though its trial is not, ends FAILED with `reason`."""
    for run in child_runs(uri, experiment_id, parent_run_id):
        key, status = run.data.tags.get(TRIAL_KEY_TAG, ""), run.info.status
        if finished is not None and key in finished:
            if status == "RUNNING":
                if finished[key] < int(run.data.params.get("steps", 0)):
                    client(uri).set_tag(run.info.run_id, STOPPED_TAG, str(finished[key]))
                end_run(uri, run.info.run_id)
        elif status == "RUNNING" or (finished is not None and status == "FINISHED"):
            end_run(uri, run.info.run_id, reason)


def config_failures(uri: str, experiment_id: str, parent_run_id: str) -> dict[str, str]:
    """The trials of a launch that failed on their config: trial id → why (their `df.config_failure` tag)."""
    return {
        run.data.tags.get(TRIAL_KEY_TAG, ""): run.data.tags[CONFIG_FAILURE_TAG]
        for run in child_runs(uri, experiment_id, parent_run_id)
        if CONFIG_FAILURE_TAG in run.data.tags
    }


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return f"{type(exc).__name__}: {first_line(exc)}" if str(exc).strip() else type(exc).__name__
