"""MLflow tracking: one experiment per sweep, a parent run per launch, a child run per trial.

The trial side is a `TrialCallback`, opened inside the trial (on a Ray worker for sweeps) so that renders go in
from where they are written. Everything goes through an explicit `MlflowClient(uri)`, never MLflow's global
active run: a worker runs many trials one after another, and a global run would leak from one into the next.

A trial that Ray retries or that `df-sweep resume` restores finds its run again by its `df.trial_id` tag and
continues it, skipping the steps the run already holds, so no run and no metric point is ever logged twice.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import urlparse

from dreamfusion.config import ConfigError, TrialConfig, flatten
from dreamfusion.trial import TrialCallback, TrialResult

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

DEFAULT_URI = "sqlite:///mlruns.db"
#: Artifacts of a SQLite store go beside the database file, in this folder, one subfolder per experiment.
ARTIFACTS_DIR = "mlartifacts"
#: The experiment `df-sweep run` logs its single runs to.
RUN_EXPERIMENT = "df-sweep-run"

TRIAL_KEY_TAG = "df.trial_id"
FAILURE_TAG = "df.failure"
#: Where a trial went non-finite from: "<Ray job id>/<checkpoint it started from>" (see sweep.launch).
DIVERGED_TAG = "df.diverged_from"
#: The Ray node a sweep trial ran on (last, if it was retried).
NODE_TAG = "df.node"
#: Set on a run whose trial a scheduler stopped before its last step (ASHA), at that step.
STOPPED_TAG = "df.stopped_early_at_step"
SWEEP_TAG = "df.sweep"
PARENT_TAG = "mlflow.parentRunId"
#: MLflow 3's UI opens an experiment on its GenAI pages unless the experiment says it is model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"

MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value, in characters
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
REACH_TIMEOUT_S = 3.0


# ---------------------------------------------------------------------------------------------------------------
# The store


def resolve_uri(uri: str | None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else `sqlite:///mlruns.db`; a relative SQLite path is made
    absolute here, because Ray workers run in other directories."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_reachable(uri: str) -> None:
    """Fail before anything starts: a SQLite directory must be writable, a server must answer."""
    db = sqlite_path(uri)
    scheme = urlparse(uri).scheme
    if db is not None:
        _check_writable(db.parent, uri)
        if db.exists() and not os.access(db, os.W_OK):
            raise ConfigError(f"tracking.uri: {db} is not writable ({uri})")
    elif scheme == "sqlite":
        raise ConfigError(f"tracking.uri: expected sqlite:///PATH to a database file, got {uri}")
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme in ("", "file"):
        _check_writable(Path(uri.removeprefix("file://")).absolute().parent, uri)


def _check_writable(folder: Path, uri: str) -> None:
    if not folder.is_dir():
        raise ConfigError(f"tracking.uri: directory {folder} does not exist ({uri})")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"tracking.uri: directory {folder} is not writable ({uri})")


def _check_server(uri: str) -> None:
    base = uri.rstrip("/")
    reason = ""
    for probe in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        try:
            with urllib.request.urlopen(base + probe, timeout=REACH_TIMEOUT_S) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
            break  # nothing listens: a second probe would only wait again
    raise ConfigError(f"tracking.uri: cannot reach an MLflow server at {uri} ({reason}); start one "
                      f"(df-sweep ui) or pass another --tracking-uri")


@functools.lru_cache(maxsize=4)
def client(uri: str) -> MlflowClient:
    """One client per store and process: opening a SQLite store checks its schema, which takes a second."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_experiment(uri: str, name: str) -> str:
    """The experiment's id, creating it (model-training kind, artifacts beside a SQLite store) if needed."""
    mlflow = client(uri)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise ConfigError(f"tracking: experiment {name!r} is deleted in {uri}; restore it in the MLflow UI "
                              f"or set tracking.experiment")
        return found.experiment_id
    db = sqlite_path(uri)
    location = str(db.parent / ARTIFACTS_DIR / name) if db is not None else None
    return mlflow.create_experiment(name, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: "custom_model_development"})


def runs_link(ui: str, experiment_id: str) -> str:
    """The runs table with params and metrics columns (not the GenAI overview MLflow 3 opens by default)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiment_links(uri: str, ui: str) -> list[tuple[str, str]]:
    """(name, runs-table link) of every experiment in the store but MLflow's empty Default."""
    experiments = client(uri).search_experiments()
    return [(e.name, runs_link(ui, e.experiment_id)) for e in experiments if e.name != "Default"]


def server_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow server` for a local SQLite store, lean (one worker) and serving the artifacts beside it."""
    db = sqlite_path(uri)
    if db is None:
        raise ConfigError(f"--tracking-uri: df-sweep ui serves a local SQLite store; {uri} is a server already, "
                          f"open it in a browser")
    if not db.is_file():
        raise ConfigError(f"{db}: no MLflow store here yet; df-sweep launch or df-sweep run creates it")
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise ConfigError(f"--port: {host}:{port} is in use; pass another --port")
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--default-artifact-root",
            str(db.parent / ARTIFACTS_DIR), "--host", host, "--port", str(port), "--workers", "1"]


def start_parent_run(uri: str, experiment_id: str, sweep: str, launch: str, description: str,
                     spec_yaml: str) -> str:
    mlflow = client(uri)
    tags = {SWEEP_TAG: sweep, "df.launch": launch, "mlflow.note.content": description}
    run = mlflow.create_run(experiment_id, run_name=f"{sweep} {launch}", tags=tags)
    mlflow.log_text(run.info.run_id, spec_yaml, "spec.yaml")
    return run.info.run_id


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
        mlflow.set_tag(run_id, FAILURE_TAG, failure[:MAX_PARAM_VALUE])
    mlflow.set_terminated(run_id, "FAILED" if failure is not None else "FINISHED")


def child_runs(uri: str, experiment_id: str, parent_run_id: str) -> list[Run]:
    mlflow = client(uri)
    runs, token = [], None
    while True:
        page = mlflow.search_runs([experiment_id], f"tags.{PARENT_TAG} = '{parent_run_id}'", page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def close_runs(uri: str, experiment_id: str, parent_run_id: str, finished: dict[str, int] | None,
               reason: str) -> None:
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


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------------
# The trial side


@dataclass(frozen=True)
class TrialTracker:
    """Where a trial logs: small and picklable, so the sweep driver can ship it to its Ray workers."""

    uri: str
    experiment_id: str
    parent_run_id: str | None = None
    flush_every: int = 25

    @contextmanager
    def run(self, key: str, name: str, continue_existing: bool, then: TrialCallback | None = None,
            tags: dict[str, str] | None = None) -> Iterator[TrackingCallback]:
        """The trial's run, ended FINISHED or FAILED by whatever ends the trial, except a clean `SystemExit`: that
        is how Ray Tune stops a trial, for its scheduler or for an interrupted launch alike, and only the driver
        can tell which, so it leaves the run RUNNING for the driver's `close_runs`. `tags` are set each time the
        run opens: a retried trial's `df.node` names the node it ran on last."""
        mlflow = client(self.uri)
        existing = self._find(key) if continue_existing else None
        if existing is None:
            identity = {TRIAL_KEY_TAG: key, **({PARENT_TAG: self.parent_run_id} if self.parent_run_id else {})}
            run_id = mlflow.create_run(self.experiment_id, run_name=name, tags=identity).info.run_id
        else:
            run_id = existing.info.run_id
            reopen_run(self.uri, run_id)
        for tag, value in (tags or {}).items():
            mlflow.set_tag(run_id, tag, value)
        callback = TrackingCallback(mlflow, run_id, self.flush_every, then, existing)
        try:
            yield callback
        except SystemExit as exc:
            callback.flush()
            if exc.code not in (0, None):
                end_run(self.uri, run_id, failure_reason(exc))
            raise
        except BaseException as exc:
            callback.flush()
            end_run(self.uri, run_id, failure_reason(exc))
            raise
        callback.flush()
        end_run(self.uri, run_id)

    def _find(self, key: str) -> Run | None:
        query = f"tags.`{TRIAL_KEY_TAG}` = '{key}'"
        if self.parent_run_id:
            query += f" and tags.{PARENT_TAG} = '{self.parent_run_id}'"
        found = client(self.uri).search_runs([self.experiment_id], query, max_results=1)
        return found[0] if found else None


def _last_step(mlflow: MlflowClient, run_id: str, key: str) -> int:
    return max((m.step for m in mlflow.get_metric_history(run_id, key)), default=0)


class TrackingCallback(TrialCallback):
    """Logs a trial into its run, then hands every hook on to `then` (the console, or Ray Tune's reporter):
    the run holds an eval before Tune may stop the trial at that eval's report."""

    def __init__(self, mlflow: MlflowClient, run_id: str, flush_every: int, then: TrialCallback | None = None,
                 existing: Run | None = None) -> None:
        self.mlflow, self.run_id, self.flush_every = mlflow, run_id, flush_every
        self.then = then or TrialCallback()
        self.fresh = existing is None or not existing.data.params
        self.previous_tags: dict[str, str] = dict(existing.data.tags) if existing else {}
        # What a continued run already holds: its steps are skipped, so no metric point is ever logged twice.
        self.logged_step = _last_step(mlflow, run_id, "loss") if existing else 0
        self.logged_eval_step = _last_step(mlflow, run_id, "clip_score") if existing else 0
        self.logged_eval_keys: set[str] = set(existing.data.metrics) if existing else set()
        self.pending: list = []  # mlflow.entities.Metric of steps not yet written

    def set_tag(self, key: str, value: str) -> None:
        self.mlflow.set_tag(self.run_id, key, value[:MAX_PARAM_VALUE])

    def on_start(self, cfg: TrialConfig, start_step: int, info: dict[str, str]) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in flatten(cfg).items()]
        tags = [RunTag("df.prior", info["prior"][:MAX_PARAM_VALUE]), RunTag("df.scorer", info["scorer"])]
        for i in range(0, len(params) if self.fresh else 0, MAX_PARAMS_PER_BATCH):
            self.mlflow.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
        self.mlflow.log_batch(self.run_id, tags=tags)
        self.then.on_start(cfg, start_step, info)

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step > self.logged_step:
            self.pending += _metrics(metrics, step)
            if step % self.flush_every == 0:
                self.flush()
        self.then.on_step(step, metrics)

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        self._log_eval(step, metrics)
        self.mlflow.log_artifact(self.run_id, str(render_path), "renders")
        self.then.on_eval(step, metrics, render_path, checkpoint)

    def on_end(self, result: TrialResult) -> None:
        self._log_eval(result.steps, result.metrics)  # the last eval's metrics, and any final-only ones
        self.mlflow.log_artifact(self.run_id, str(result.artifacts["config"]))
        for name in ("views", "turntable", "metrics"):
            self.mlflow.log_artifact(self.run_id, str(result.artifacts[name]), "final")
        self.then.on_end(result)

    def _log_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Each metric once per step: a resumed trial repeats evals its run already holds, and the final
        metrics repeat the last eval's and add their own (the ground truth's R-precision, say)."""
        self.flush()
        if step > self.logged_eval_step:
            self.logged_eval_step, self.logged_eval_keys = step, set()
        if step == self.logged_eval_step:
            new = {k: v for k, v in metrics.items() if k not in self.logged_eval_keys}
            self._write(_metrics(new, step))
            self.logged_eval_keys |= set(new)

    def flush(self) -> None:
        """Write the batched step metrics (one `log_batch` per flush_every steps, not one call per value)."""
        pending, self.pending = self.pending, []
        self._write(pending)
        if pending:
            self.logged_step = max(m.step for m in pending)

    def _write(self, metrics: list) -> None:
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.mlflow.log_batch(self.run_id, metrics=metrics[i : i + MAX_METRICS_PER_BATCH])


def _metrics(values: dict[str, float], step: int) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]
