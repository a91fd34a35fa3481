"""A validated sweep spec → a Ray Tune run of `run_trial`, tracked in MLflow; and its resume.

Driver side: check the environment (resources against the cluster, the tracking store), connect to Ray or start
an embedded one (`session.py`), create the experiment and the parent run, run the `Tuner` (`tuner.py`), then close
what a killed worker left open and return the outcome (`results.py`). The worker side is `worker.py`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dreamfusion.sweep.results import Outcome, TrialRow, live_rows, trial_rows
from dreamfusion.sweep.session import preflight, ray_session
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.sweep.storage import Launch, exists, find_launch, join, storage_root
from dreamfusion.sweep.tuner import build_tuner, trainable
from dreamfusion.sweep.worker import TrialContext
from dreamfusion.tracking import provenance
from dreamfusion.tracking.artifacts import check_source
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.runs import close_runs, end_run, reopen_run, start_parent_run
from dreamfusion.tracking.store import client, open_experiment, open_store, resolve_uri

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
    origin = provenance.collect()  # here, on the driver: workers run a copy of the code without its .git
    root = storage_root(storage)
    # Opening the store (creating a fresh SQLite file's schema takes seconds) needs no Ray: it runs while an embedded
    # Ray starts, whose every check `preflight` has made. A cluster is checked once connected: the store waits.
    with ThreadPoolExecutor(max_workers=1) as pool:
        store_ready = pool.submit(open_store, uri) if address is None else None
        with ray_session(address, root, spec.resources, runtime_env):
            if store_ready is not None:
                store_ready.result()
            experiment_id = open_experiment(uri, spec.tracking.experiment or spec.name)
            sweep_dir = join(root, spec.name)
            name = _new_launch_name(sweep_dir)
            parent = start_parent_run(uri, experiment_id, spec.name, name, spec.description, _spec_yaml(spec))
            origin.record(client(uri), parent)
            tracker = TrialTracker(
                uri,
                experiment_id,
                parent,
                spec.tracking.flush_every,
                provenance=origin,
                system_every_s=spec.tracking.system_every_s,
            )
            launch = Launch(spec.model_dump(mode="json"), join(sweep_dir, name), tracker)
            launch.save()
            return _run(launch, lambda ctx: build_tuner(ctx, sweep_dir, name), echo)


def resume_sweep(
    name: str,
    *,
    address: str | None = None,
    storage: str | Path | None = None,
    echo: Echo = print,
    runtime_env: dict[str, Any] | None = None,
) -> Outcome:
    """Continue the newest launch of `name`: finished trials stay finished, errored and unfinished ones go on
    from their last checkpoint, each in its own MLflow run."""
    from ray import tune

    experiment_dir = find_launch(name, storage)
    launch = Launch.load(experiment_dir)
    spec = launch.sweep
    preflight(spec, launch.tracker.uri, address)
    now = provenance.collect()
    with ray_session(address, storage_root(storage), spec.resources, runtime_env):
        reopen_run(launch.tracker.uri, launch.parent_run_id)
        mlflow = client(launch.tracker.uri)
        recorded = mlflow.get_run(launch.parent_run_id).data.tags
        for change in now.record_change(mlflow, launch.parent_run_id, recorded, "resumed"):
            echo(f"code changed since the launch: {change} (recorded on its runs as df.code_changed)")
        # the trials go on under today's code, and each run records the change when it reopens
        launch = dataclasses.replace(launch, tracker=dataclasses.replace(launch.tracker, provenance=now))
        return _run(
            launch,
            lambda ctx: tune.Tuner.restore(experiment_dir, trainable(ctx), resume_unfinished=True, resume_errored=True),
            echo,
        )


def _run(launch: Launch, make_tuner: Callable[[TrialContext], Any], echo: Echo) -> Outcome:
    """Fit, then make MLflow agree with Tune whatever happened: no run RUNNING, the parent's outcome recorded."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter: one table, not a box per event
    spec, tracker = launch.sweep, launch.tracker
    echo(
        f"sweep {spec.name}: {spec.num_trials()} trials; tune results in {launch.experiment_dir}; "
        f"mlflow {tracker.uri} (experiment id {tracker.experiment_id})"
    )
    rows: list[TrialRow] | None = None
    try:
        grid = make_tuner(TrialContext(spec, tracker)).fit()
        rows = live_rows(grid, spec) or trial_rows(launch.experiment_dir, spec)
        return Outcome(launch, rows)
    finally:
        rows = rows if rows is not None else _stored_rows(launch)
        finished = None if rows is None else {r.trial_id: r.step or 0 for r in rows if r.state == "TERMINATED"}
        close_runs(
            tracker.uri,
            tracker.experiment_id,
            launch.parent_run_id,
            finished,
            f"interrupted before the trial finished; df-sweep resume {spec.name} continues it",
        )
        end_run(tracker.uri, launch.parent_run_id, _failure(rows, spec.name))


def init_sources(spec: SweepSpec) -> list[str]:
    """Every `init_from` a trial of the spec can have: the base's and the listed values of a varied one."""
    values = [spec.base.get("init_from")]
    if "init_from" in spec.space and spec.space["init_from"].kind in ("grid", "choice"):
        values += list(spec.space["init_from"].argument)
    return [v for v in values if isinstance(v, str)]


def _stored_rows(launch: Launch) -> list[TrialRow] | None:
    """The trials as Tune last saved them, when `fit` itself was interrupted (a second Ctrl-C) or failed."""
    try:
        return trial_rows(launch.experiment_dir, launch.sweep)
    except Exception:  # nothing saved yet, or a half-written state: the caller then knows nothing of the trials
        return None


def _failure(rows: list[TrialRow] | None, name: str) -> str | None:
    """Why a launch did not complete, in words that say how to go on; None when every trial finished."""
    resume = f"df-sweep resume {name} continues it"
    if rows is None:
        return f"interrupted; {resume}"
    counts = Counter("errored" if r.state == "ERROR" else "unfinished" for r in rows if r.state != "TERMINATED")
    if not counts:
        return None
    return f"{' and '.join(f'{n} {what}' for what, n in counts.items())} of {len(rows)} trials; {resume}"


def _new_launch_name(sweep_dir: str) -> str:
    """A fresh directory name per launch, its start time: every launch is a parent run of its own."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    candidate, n = stamp, 1
    while exists(join(sweep_dir, candidate)):
        n += 1
        candidate = f"{stamp}_{n}"
    return candidate


def _spec_yaml(spec: SweepSpec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)
