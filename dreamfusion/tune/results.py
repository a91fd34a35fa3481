"""What a launch produced, as Tune stored it: one row per trial (readable without a running Ray), the outcome of
a launch, and the closing lines that say where the results are and what to do next."""

from __future__ import annotations

import json
import posixpath
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from dreamfusion.console.table import OFF, format_table
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.runs import config_failures
from dreamfusion.tracking.store import runs_link, sqlite_path
from dreamfusion.tune.storage import Launch, check_storage, load_launch, saved_trials, storage_root, sweep_names

DEFAULT_UI = "http://127.0.0.1:5000"
#: The state of a trial that failed on its config: Tune saw it end without a result, its run says why it failed.
CONFIG_ERROR = "CONFIG_ERROR"
#: What `status` and `resume` say of a launch stopped before Tune saved anything it could restore.
NOTHING_TO_RESUME = "nothing to resume: launch it again"


@dataclass
class TrialRow:
    trial_id: str
    state: str
    values: dict[str, Any]
    metric: float | None
    step: int | None


@dataclass
class Outcome:
    launch: Launch
    rows: list[TrialRow]

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.state == "TERMINATED" for r in self.rows)


def trial_rows(experiment_dir: str, spec: SweepSpec) -> list[TrialRow]:
    """The trials of a launch as Tune stored them (readable without a running Ray)."""
    return rows_of(saved_trials(experiment_dir), spec)


def final_rows(experiment_dir: str, result_grid: Any, spec: SweepSpec) -> list[TrialRow]:
    """The trials of a fit that returned: as Tune stored them, each in the state Tune's loop left it where the
    grid `Tuner.fit` returned says so. The stored state can lag behind: a trial HyperBand stops while it is paused
    stays PAUSED there (Ray 2.60 saves a stopped trial again only if it had a live actor)."""
    rows = trial_rows(experiment_dir, spec)
    states = ended_states(result_grid)
    if states is None or set(states) != {r.trial_id for r in rows}:
        return rows
    return [replace(r, state=states[r.trial_id]) for r in rows]


def ended_states(result_grid: Any) -> dict[str, str] | None:
    """Each trial's state by its id, where every trial of the fit ended: ERROR with an error, else TERMINATED. Tune's
    ResultGrid publishes each trial's error and how many trials ended each way, not each trial's state. None where
    some trial did not end (an interrupted fit), or where the errors found are not the errored trials Tune counted
    (an error file it could not read back). A trial's directory is named by its id (`tuner._trial_id`)."""
    errored = {posixpath.basename(result.path): result.error is not None for result in result_grid}
    ended = result_grid.num_terminated + result_grid.num_errors == len(errored)
    if not ended or sum(errored.values()) != result_grid.num_errors:
        return None
    return {trial_id: "ERROR" if error else "TERMINATED" for trial_id, error in errored.items()}


def rows_of(trials: list[Any], spec: SweepSpec) -> list[TrialRow]:
    rows = []
    for trial in sorted(trials, key=lambda t: t.trial_id):
        result = trial.last_result or {}
        values = spec.trial_values(trial.config)
        rows.append(
            TrialRow(
                trial.trial_id,
                trial.status,
                {k: values.get(k) for k in spec.varied},  # None: a condition left the key at its base value
                result.get(spec.tune.metric),
                result.get("step"),
            )
        )
    return rows


def summary(outcome: Outcome, ui: str = DEFAULT_UI) -> list[str]:
    """The closing lines of a launch: where results are and how to look at them. No "best trial": one trial's
    score says nothing of seed noise; `df-sweep report` says which configs differ, with paired tests."""
    launch, spec = outcome.launch, outcome.launch.sweep
    tracker = launch.tracker
    lines = []
    states = ", ".join(f"{n} {s}" for s, n in Counter(r.state for r in outcome.rows).items())
    lines.append(f"trials: {states}")
    lines.append(f"tune results: {launch.experiment_dir}")
    lines.append(
        f"mlflow: {tracker.uri}  experiment {spec.tracking.experiment or spec.name!r} "
        f"(id {tracker.experiment_id}), parent run {tracker.parent_run_id}"
    )
    link_base = ui if sqlite_path(tracker.uri) is not None else tracker.uri
    open_ui = "df-sweep ui, then open " if sqlite_path(tracker.uri) is not None else "open "
    lines.append(f"compare runs: {open_ui}{runs_link(link_base, tracker.experiment_id)}")
    lines.append(
        f"which configs differ (paired tests over seeds and prompts): df-sweep report {spec.name} --out report"
    )
    if any(r.state not in ("TERMINATED", CONFIG_ERROR) for r in outcome.rows):
        lines.append(f"resume: df-sweep resume {spec.name}")
    if any(r.state == CONFIG_ERROR for r in outcome.rows):
        lines.append("failed on their config: fix the spec and launch again (df-sweep resume would not help)")
    return lines


@dataclass
class SweepStatus:
    """One sweep's newest launch as `status` shows it: its trials, or None and why they cannot be read."""

    name: str
    experiment_dir: str | None
    rows: list[TrialRow] | None
    problem: str
    metric: str | None = None

    def as_dict(self) -> dict[str, Any]:
        rows = self.rows or []
        return {
            "name": self.name,
            "experiment_dir": self.experiment_dir,
            "metric": self.metric,
            "states": dict(Counter(r.state for r in rows)),
            "trials": [asdict(r) for r in rows],
            "problem": self.problem or None,
        }


def sweep_statuses(name: str | None, storage: str | None) -> list[SweepStatus]:
    """`df-sweep status`: every sweep under the storage root, or one. A sweep whose state cannot be read says
    why, and the others are listed all the same."""
    root = storage_root(storage)
    check_storage(root, write=False)
    names = [name] if name else sweep_names(root)
    if not names:
        raise ConfigError(f"no sweeps under {root}; df-sweep launch SPEC starts one")
    found = []
    for sweep_name in names:
        try:
            launch = load_launch(sweep_name, storage)
        except ConfigError as exc:
            if name:
                raise
            found.append(SweepStatus(sweep_name, None, None, str(exc)))
            continue
        rows, problem = stored_rows(launch)
        rows = rows if rows is None else with_config_errors(launch, rows)
        found.append(SweepStatus(sweep_name, launch.experiment_dir, rows, problem, launch.sweep.tune.metric))
    return found


def status_json(name: str | None, storage: str | None) -> str:
    """`df-sweep status --json`: one JSON object, the storage root and each sweep's launch with its trials."""
    sweeps = [s.as_dict() for s in sweep_statuses(name, storage)]
    return json.dumps({"storage": storage_root(storage), "sweeps": sweeps}, indent=2, default=str)


def status_lines(name: str | None, storage: str | None) -> list[str]:
    """`df-sweep status`: one line per sweep under the storage root, or one sweep's trial table."""
    lines = []
    for found in sweep_statuses(name, storage):
        if found.experiment_dir is None:
            lines.append(found.problem)
        elif found.rows is None:
            lines.append(f"{found.name}  ({found.experiment_dir}): {found.problem}")
        else:
            states = ", ".join(f"{n} {s}" for s, n in Counter(r.state for r in found.rows).items()) or "no trials yet"
            lines.append(f"{found.name}  ({found.experiment_dir}): {states}")
            if name and found.metric is not None:
                lines.append(_trial_table(found.rows, found.metric))
    return lines


def stored_rows(launch: Launch) -> tuple[list[TrialRow] | None, str]:
    """The launch's trials as Tune last saved them, or None and why not (nothing saved yet, or a state cut
    short or from another version)."""
    if not launch.resumable():
        return None, NOTHING_TO_RESUME
    try:
        return trial_rows(launch.experiment_dir, launch.sweep), ""
    except Exception as exc:  # Tune's and pydantic's errors alike: a state this version cannot read
        return None, f"cannot read its Tune state ({first_line(exc)})"


def config_failures_of(launch: Launch) -> dict[str, str]:
    """The launch's trials that failed on their config, trial id → why, as their runs' tags say; none where the
    store cannot be read, so that what Tune saved is still shown."""
    tracker = launch.tracker
    try:
        return config_failures(tracker.uri, tracker.experiment_id, launch.parent_run_id)
    except Exception:  # MLflow's and its database driver's errors alike
        return {}


def with_config_errors(launch: Launch, rows: list[TrialRow]) -> list[TrialRow]:
    """The rows with the trials that failed on their config as CONFIG_ERROR. Such a trial reports nothing, and Tune
    saves it TERMINATED with no result: only then is the store asked (status need not wait on one that is down)."""
    if not any(r.state == "TERMINATED" and r.step is None for r in rows):
        return rows
    return mark_config_errors(rows, config_failures_of(launch))


def mark_config_errors(rows: list[TrialRow], failed: dict[str, str]) -> list[TrialRow]:
    """The rows with those of `failed` (trial id → why) as CONFIG_ERROR: the one state launch and status show."""
    return [replace(r, state=CONFIG_ERROR) if r.trial_id in failed else r for r in rows]


def _trial_table(rows: list[TrialRow], metric: str) -> str:
    return format_table(
        [
            {
                "trial": r.trial_id,
                "state": r.state,
                **{k: OFF if v is None else str(v) for k, v in r.values.items()},
                metric: "" if r.metric is None else f"{r.metric:.4f}",
                "step": str(r.step or ""),
            }
            for r in rows
        ]
    )
