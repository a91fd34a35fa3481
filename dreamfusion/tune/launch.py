"""A validated sweep spec → a Ray Tune run of `run_trial`, tracked in MLflow; and its resume.

Driver side: check the environment (resources against the cluster, the tracking store), connect to Ray or start
an embedded one (`session.py`), create the experiment and the parent run, run the `Tuner` (`tuner.py`), then close
what a killed worker left open and return the outcome (`results.py`). The worker side is `worker.py`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dreamfusion.errors import ConfigError, RunError, first_line
from dreamfusion.evaluators.base import metric_owner
from dreamfusion.interrupts import held_interrupt
from dreamfusion.serving.service import prior_services
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking import provenance
from dreamfusion.tracking.artifacts import check_source
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.runs import (
    close_runs,
    end_run,
    failure_reason,
    record_outcome,
    reopen_run,
    start_parent_run,
)
from dreamfusion.tracking.schema import METRIC_PARAM, MODE_PARAM, SCHEDULER_PARAM, SEARCH_PARAM, SPEC_PARAM
from dreamfusion.tracking.store import (
    MLFLOW_DB_LOGGER,
    check_store,
    client,
    open_experiment,
    open_store,
    resolve_uri,
)
from dreamfusion.tune.results import (
    CONFIG_ERROR,
    NOTHING_TO_RESUME,
    Outcome,
    TrialRow,
    config_failures_of,
    final_rows,
    mark_config_errors,
    stored_rows,
)
from dreamfusion.tune.session import preflight, ray_session
from dreamfusion.tune.storage import Launch, check_storage, join, load_launch, new_launch, storage_root
from dreamfusion.tune.tuner import build_tuner, trainable
from dreamfusion.tune.worker import TrialContext

Echo = Callable[[str], None]


def launch_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | Path | None = None,
    echo: Echo = print,
    runtime_env: dict[str, Any] | None = None,
) -> Outcome:
    """Run a whole sweep; user mistakes raise ConfigError before any worker starts or any run is created."""
    uri = resolve_uri(tracking_uri or spec.tracking.uri)
    preflight(spec, uri, address)
    for source in init_sources(spec):
        check_source(source, uri, "init_from")
    root = storage_root(storage)
    check_storage(root)
    # Opening the store (creating a fresh SQLite file's schema takes seconds) and reading the code's provenance (git,
    # MLflow's context) need no Ray: they run while an embedded Ray starts, whose every check `preflight` has made.
    # A cluster is checked once connected: the store waits.
    with ThreadPoolExecutor(max_workers=1) as pool:
        store_ready = pool.submit(open_store, uri) if address is None else None
        collected = pool.submit(provenance.collect)  # here, on the driver: workers run a copy without its .git
        with ray_session(address, root, spec.resources, runtime_env):
            if store_ready is not None:
                store_ready.result()
            origin = collected.result()
            experiment_id = open_experiment(uri, spec.tracking.experiment or spec.name)
            sweep_dir = join(root, spec.name)
            name = new_launch(sweep_dir)
            parent = start_parent_run(
                uri,
                experiment_id,
                spec.name,
                name,
                spec.description,
                _spec_yaml(spec),
                spec.num_trials(),
                _params(spec),
            )
            tracker = trial_tracker(spec, uri, experiment_id, parent, origin)
            launch = Launch(spec.model_dump(mode="json"), join(sweep_dir, name), tracker)
            return _run(launch, lambda ctx: build_tuner(ctx, sweep_dir, name), echo, new=True)


def trial_tracker(
    spec: SweepSpec, uri: str, experiment_id: str, parent_run_id: str, origin: provenance.Provenance
) -> TrialTracker:
    """Where and how the sweep's trials log, as its tracking block says; saved with the launch, so that a resume
    logs the same way."""
    tracking = spec.tracking
    return TrialTracker(
        uri,
        experiment_id,
        parent_run_id,
        tracking.flush_every,
        provenance=origin,
        system_every_s=tracking.system_every_s,
        asynchronous=tracking.async_logging,
    )


def resume_sweep(
    name: str,
    *,
    address: str | None = None,
    storage: str | Path | None = None,
    tracking_uri: str | None = None,
    echo: Echo = print,
    runtime_env: dict[str, Any] | None = None,
) -> Outcome:
    """Continue the newest launch of `name`: finished trials stay finished, errored and unfinished ones go on
    from their last checkpoint, each in its own MLflow run. `tracking_uri` replaces the store the launch recorded
    (one that moved since); it must hold the launch's parent run."""
    check_storage(storage_root(storage), write=False)
    launch = load_launch(name, storage)
    if not launch.resumable():
        raise ConfigError(f"{name}: {NOTHING_TO_RESUME} ({launch.experiment_dir} stopped before Tune saved its state)")
    spec = launch.sweep
    if tracking_uri is not None:
        launch = dataclasses.replace(launch, tracker=dataclasses.replace(launch.tracker, uri=resolve_uri(tracking_uri)))
    preflight(spec, launch.tracker.uri, address)
    if tracking_uri is not None:
        check_store(launch.tracker.uri)  # one that exists: a new, empty SQLite file would hold no parent run
        _check_parent(launch)
    now = provenance.collect()
    with ray_session(address, storage_root(storage), spec.resources, runtime_env):
        reopen_run(launch.tracker.uri, launch.parent_run_id)
        mlflow = client(launch.tracker.uri)
        recorded = mlflow.get_run(launch.parent_run_id).data.tags
        for change in now.record_change(mlflow, launch.parent_run_id, recorded, "resumed"):
            echo(f"code changed since the launch: {change} (recorded on its runs as df.code_changed)")
        # the trials go on under today's code, and each run records the change when it reopens
        launch = dataclasses.replace(launch, tracker=dataclasses.replace(launch.tracker, provenance=now))
        return _run(launch, lambda ctx: _restore(launch, ctx), echo)


def _check_parent(launch: Launch) -> None:
    """A store given to `resume` must hold the launch's parent run: else its trials would log into no sweep."""
    from mlflow.exceptions import MlflowException

    try:
        client(launch.tracker.uri).get_run(launch.parent_run_id)
    except MlflowException:
        raise ConfigError(
            f"--tracking-uri {launch.tracker.uri}: holds no run {launch.parent_run_id}, the parent run of "
            f"{launch.experiment_dir}; pass the store the sweep was launched with"
        ) from None


def _restore(launch: Launch, ctx: TrialContext) -> Any:
    """Tune's `Tuner.restore` of the launch; a Tuner it cannot read back is one line, not Tune's traceback."""
    from ray import tune

    try:
        return tune.Tuner.restore(launch.experiment_dir, trainable(ctx), resume_unfinished=True, resume_errored=True)
    except Exception as exc:  # unpickling and storage errors alike
        where = f"{launch.sweep.name}: Tune cannot restore {launch.experiment_dir}"
        raise RunError(f"{where} ({first_line(exc)})") from None


def _run(launch: Launch, make_tuner: Callable[[TrialContext], Any], echo: Echo, new: bool = False) -> Outcome:
    """Fit, then make MLflow agree with Tune whatever happened: no run RUNNING, the parent's outcome recorded. A
    new launch is recorded inside, so that an interrupt at any point after its parent run exists still closes it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter: one table, not a box per event
    spec, tracker = launch.sweep, launch.tracker
    rows: list[TrialRow] | None = None
    try:
        if new:
            with held_interrupt():  # a Ctrl-C inside these writes would leave SQLite locked for the close below
                launch.save()
                tracker.provenance.record(client(tracker.uri), launch.parent_run_id)  # the code it runs
        echo(
            f"sweep {spec.name}: {spec.num_trials()} trials; tune results in {launch.experiment_dir}; "
            f"mlflow {tracker.uri} (experiment id {tracker.experiment_id})"
        )
        with errors_in_one_line(), prior_services(spec):
            grid = fit_tuner(launch, make_tuner(TrialContext(spec, tracker)))
        rows = final_rows(launch.experiment_dir, grid, spec)
    finally:
        rows = rows if rows is not None else stored_rows(launch)[0]
        with errors_in_one_line():  # a store that refuses reads too (SQLite's disk I/O error) logs no traceback
            if rows is not None:
                rows = _config_failed(launch, rows, echo)
            _close(launch, rows)
    return Outcome(launch, rows)


def fit_tuner(launch: Launch, tuner: Any) -> Any:
    """`Tuner.fit`, its own failures in one line: Tune's loop raises what it did not expect (Ray's memory monitor
    killing a trial's worker while it starts, on a node others fill) as a bare RuntimeError."""
    try:
        with _final_metric_allowed(launch.sweep.tune.metric):
            return tuner.fit()
    except (ConfigError, RunError):
        raise
    except Exception as exc:  # Tune's and Ray's errors alike; a Ctrl-C (not an Exception) goes on as it is
        how = f"df-sweep resume {launch.sweep.name} continues it" if launch.resumable() else NOTHING_TO_RESUME
        raise RunError(f"{launch.sweep.name}: Ray Tune stopped ({first_line(exc)}); {how}") from None


#: Ray Tune's switch for its check that every result holds the tune metric.
STRICT_METRIC_ENV = "TUNE_DISABLE_STRICT_METRIC_CHECKING"


@contextmanager
def _final_metric_allowed(metric: str) -> Iterator[None]:
    """Tune refuses every result without its metric, and a metric computed once at a trial's end (`gt_janus`,
    `gt_chamfer`) is absent from the evaluations before it: Tune's check is off while such a sweep runs (the spec's
    validation has already made sure that every trial logs the metric at its end)."""
    owner = metric_owner(metric)
    if owner is None or not owner.metrics[metric].final_only:
        yield
        return
    saved = os.environ.get(STRICT_METRIC_ENV)
    os.environ[STRICT_METRIC_ENV] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(STRICT_METRIC_ENV, None)
        else:
            os.environ[STRICT_METRIC_ENV] = saved


#: Where Tune logs with a traceback: each failed trial attempt, a checkpoint or state it could not save or delete.
TUNE_LOGGERS = (
    "ray.tune.execution.tune_controller",
    "ray.tune.execution.experiment_state",
    "ray.train._internal.storage",
)


@contextmanager
def errors_in_one_line() -> Iterator[None]:
    """The driver's console without tracebacks: Tune's trial failures in one line each, MLflow's logging of a
    database error it then raises left out."""
    tune_logs, store_log = [logging.getLogger(name) for name in TUNE_LOGGERS], logging.getLogger(MLFLOW_DB_LOGGER)
    one_line, raised_anyway = OneLineErrors(), lambda record: False
    for log in tune_logs:
        log.addFilter(one_line)
    store_log.addFilter(raised_anyway)
    try:
        yield
    finally:
        for log in tune_logs:
            log.removeFilter(one_line)
        store_log.removeFilter(raised_anyway)


class OneLineErrors(logging.Filter):
    """A trial's failure on the console in one line, not Tune's traceback per attempt: the traceback stays in the
    trial's `error.txt` (Tune writes it) and the reason in its run's `df.failure` tag."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            cause = getattr(error, "cause", None)  # a RayTaskError carries the trial's own exception
            reason = failure_reason(cause if isinstance(cause, BaseException) else error)
            record.msg, record.args = f"{record.getMessage()}: {reason}", None
            record.exc_info, record.exc_text = None, None
        return True


def _config_failed(launch: Launch, rows: list[TrialRow], echo: Echo) -> list[TrialRow]:
    """The rows with the trials that failed on their config (which Tune saw end without a result) as CONFIG_ERROR,
    each said once with why. A store that cannot be read leaves the rows as they are: the closing writes that come
    next say in one line that it refuses them."""
    failed = config_failures_of(launch)
    for reason in failed.values():
        echo(reason)  # "trial ID: key: what was expected; failed on its config, ..."
    return mark_config_errors(rows, failed)


def _close(launch: Launch, rows: list[TrialRow] | None) -> None:
    """End the launch's runs as Tune left its trials. A store that refuses the writes (gone read-only, full) is
    said in one line: the runs it leaves RUNNING are closed by the resume once it accepts writes again."""
    spec, tracker = launch.sweep, launch.tracker
    resumable = launch.resumable()
    finished = None if rows is None else {r.trial_id: r.step or 0 for r in rows if r.state == "TERMINATED"}
    how = f"df-sweep resume {spec.name} continues it" if resumable else NOTHING_TO_RESUME
    try:
        close_runs(
            tracker.uri,
            tracker.experiment_id,
            launch.parent_run_id,
            finished,
            f"interrupted before the trial finished; {how}",
        )
        record_outcome(tracker.uri, tracker.experiment_id, launch.parent_run_id, spec.tune.metric, spec.tune.mode)
        end_run(tracker.uri, launch.parent_run_id, _failure(rows, how))
    except Exception as exc:  # MLflow's and its database driver's errors alike: the store said no
        raise RunError(
            f"tracking: {tracker.uri} refused to record how the sweep ended ({first_line(exc)}); "
            f"runs may be left RUNNING until df-sweep resume {spec.name} runs with the store writable"
        ) from None


def init_sources(spec: SweepSpec) -> list[str]:
    """Every `init_from` a trial of the spec can have: the base's and the listed values of a varied one."""
    values = [spec.base.get("init_from")]
    if "init_from" in spec.space and spec.space["init_from"].kind in ("grid", "choice"):
        values += list(spec.space["init_from"].argument)
    return [v for v in values if isinstance(v, str)]


def _failure(rows: list[TrialRow] | None, how: str) -> str | None:
    """Why a launch did not complete, in words that say how to go on; None when every trial finished."""
    if rows is None:
        return f"interrupted; {how}"
    words = {"ERROR": "errored", CONFIG_ERROR: "failed on their config"}
    counts = Counter(words.get(r.state, "unfinished") for r in rows if r.state != "TERMINATED")
    if not counts:
        return None
    if set(counts) == {words[CONFIG_ERROR]}:
        how = "fix the spec and launch again (df-sweep resume would not help)"
    return f"{' and '.join(f'{n} {what}' for what, n in counts.items())} of {len(rows)} trials; {how}"


def _params(spec: SweepSpec) -> dict[str, str]:
    """The sweep's params on its parent run, beside its trial count: what the MLflow UI compares launches by."""
    tune = spec.tune
    return {
        SPEC_PARAM: spec.name,
        SEARCH_PARAM: tune.search,
        SCHEDULER_PARAM: tune.scheduler,
        METRIC_PARAM: tune.metric,
        MODE_PARAM: tune.mode,
    }


def _spec_yaml(spec: SweepSpec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
