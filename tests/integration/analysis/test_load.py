"""Loading from a real MLflow store (SQLite) whose runs are written by the tracking layer's own parent-run code
and MLflow's client, with times and tags a Ray launch cannot be made to produce on demand: a trial whose retry
came an hour after its failure, and two launches of one sweep with another version of a component."""

from __future__ import annotations

import time

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from analysis.differences import differences
from analysis.load import SweepNotFound, load_sweeps
from analysis.report import analyse, report, summary_lines
from dreamfusion.tracking.runs import end_run, start_parent_run
from dreamfusion.tracking.store import open_experiment

SPEC = {"name": "sched", "space": {"schedule": {"grid": ["uniform", "dreamtime"]}}, "tune": {"metric": "gt_iou"}}
HOUR_MS = 3_600_000


def trial(client: MlflowClient, experiment: str, parent: str, schedule: str, version: str, start_ms: int) -> str:
    """A finished child run: 10 steps of 100 ms logged, but an hour between its start and its end."""
    tags = {"mlflow.parentRunId": parent, "df.component.schedule": f"{schedule}@{version}"}
    run = client.create_run(experiment, start_time=start_ms, tags=tags, run_name=f"schedule={schedule}")
    steps = [Metric("step_ms", 100.0, start_ms, step) for step in range(1, 11)]
    client.log_batch(
        run.info.run_id,
        metrics=[*steps, Metric("gt_iou", 0.8, start_ms, 10)],
        params=[Param("schedule", schedule), Param("steps", "10")],
        tags=[RunTag("mlflow.runName", f"schedule={schedule}")],
    )
    client.set_terminated(run.info.run_id, "FINISHED", end_time=start_ms + HOUR_MS)
    return run.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('load') / 'mlruns.db'}"
    experiment = open_experiment(uri, "sched")
    client = MlflowClient(uri)
    start = int(time.time() * 1000) - 3 * HOUR_MS
    parents = []
    for launch, version in (("2026-01-01_00-00-00", "1"), ("2026-01-02_00-00-00", "2")):
        parent = start_parent_run(uri, experiment, "sched", launch, "", yaml.safe_dump(SPEC))
        parents.append(parent)
        for schedule in ("uniform", "dreamtime"):
            trial(client, experiment, parent, schedule, version if schedule == "dreamtime" else "1", start)
        start += HOUR_MS
    return uri, parents


def test_compute_is_the_summed_step_time_not_the_outage(store):
    uri, _ = store
    trials = load_sweeps(["sched"], uri, with_curves=False).trials
    assert trials["compute_s"].tolist() == pytest.approx([1.0] * 4)  # 10 steps of 100 ms
    assert trials["wall_s"].tolist() == pytest.approx([3600.0] * 4)


@pytest.mark.parametrize("selector", ["1", "-2", "2026-01-01_00-00-00", "parent-prefix"])
def test_a_launch_is_selected_by_number_name_or_run_id(store, selector):
    uri, parents = store
    selector = parents[0][:8] if selector == "parent-prefix" else selector
    sweep = load_sweeps([f"sched@{selector}"], uri, with_curves=False)
    assert sweep.sources[0].parent_run_ids == [parents[0]]
    assert len(sweep.trials) == 2 and sweep.spec == SPEC


def test_two_launches_name_the_component_whose_version_changed(store):
    uri, _ = store
    table = differences(load_sweeps(["sched@1", "sched@2"], uri, with_curves=False))
    assert table[["kind", "setting", "sched@1", "sched@2"]].values.tolist() == [
        ["component version", "schedule dreamtime", "dreamtime@1", "dreamtime@2"]
    ]


def test_an_unknown_launch_lists_the_launches(store):
    uri, _ = store
    with pytest.raises(SweepNotFound, match="launches, oldest first: 2026-01-01_00-00-00, 2026-01-02_00-00-00"):
        load_sweeps(["sched@3"], uri)


def test_params_are_typed_by_the_trial_schema(tmp_path):
    """A learning-rate axis is numbers (YAML would keep `5e-05` text and plot it as categories), and a prompt `no`
    or `on` stays a prompt (YAML would make it a boolean)."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    experiment = open_experiment(uri, "lr")
    client = MlflowClient(uri)
    parent = start_parent_run(uri, experiment, "lr", "2026-01-01_00-00-00", "", yaml.safe_dump({"name": "lr"}))
    for prompt, lr in (("no", "5e-05"), ("on", "0.0001")):
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent}, run_name=prompt)
        params = [Param("prompt", prompt), Param("optim.lr_grid", lr), Param("camera.elevation", "[0.0, 30.0]")]
        client.log_batch(run.info.run_id, params=params)
        client.set_terminated(run.info.run_id, "FINISHED")
    trials = load_sweeps(["lr"], uri, with_curves=False).trials.sort_values("param:optim.lr_grid")
    assert pd.api.types.is_float_dtype(trials["param:optim.lr_grid"])
    assert trials["param:optim.lr_grid"].tolist() == [5e-05, 0.0001]
    assert trials["param:prompt"].tolist() == ["no", "on"]
    assert trials["param:camera.elevation"].tolist() == [(0.0, 30.0)] * 2


CONDITIONAL = {
    "name": "cond",
    "space": {
        "sds.timesteps.schedule": {"grid": ["uniform", "dreamtime"]},
        "sds.timesteps.dt_power": {"grid": [1.0, 2.0], "when": {"sds.timesteps.schedule": "dreamtime"}},
    },
}


def launch(uri: str, name: str, spec: dict, expected: int | None, statuses: list[str], failure: str | None = None):
    """A launch's parent run and one child run per status; the parent ended FAILED with `failure` when given."""
    experiment = open_experiment(uri, name)
    client = MlflowClient(uri)
    parent = start_parent_run(uri, experiment, name, "2026-01-01_00-00-00", "", yaml.safe_dump(spec), expected)
    for i, status in enumerate(statuses):
        run = client.create_run(experiment, tags={"mlflow.parentRunId": parent}, run_name=f"trial {i}")
        client.log_batch(run.info.run_id, params=[Param("seed", str(i))], tags=[RunTag("df.failure", "ValueError: x")])
        client.set_terminated(run.info.run_id, status)
    if failure is not None:
        end_run(uri, parent, failure)


def test_a_conditional_sweep_is_complete_at_the_count_its_launch_recorded(tmp_path):
    """uniform, and dreamtime at two powers: 3 trials, not the 4 of the unconditional cross product."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "cond", CONDITIONAL, 3, ["FINISHED"] * 3)
    sweep = load_sweeps(["cond"], uri, with_curves=False)
    assert sweep.expected_trials == 3
    assert not any("no run" in note for note in sweep.missing)
    assert "3 of 3 expected trials (3 finished)" in summary_lines(sweep, analyse(sweep))[0]


def test_a_launch_that_did_not_record_its_count_says_it_is_unknown(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "cond", CONDITIONAL, None, ["FINISHED"] * 2)
    sweep = load_sweeps(["cond"], uri, with_curves=False)
    assert sweep.expected_trials is None and not any("no run" in note for note in sweep.missing)
    assert "how many were expected is unknown" in summary_lines(sweep, analyse(sweep))[0]


def test_a_launch_that_recorded_its_count_as_a_tag_is_still_read(tmp_path):
    """Launches before the parent runs carried params held the count as a `df.expected_trials` tag."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "cond", CONDITIONAL, None, ["FINISHED"] * 3)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("cond").experiment_id])
    client.set_tag(next(r for r in runs if not r.data.params).info.run_id, "df.expected_trials", "3")
    assert load_sweeps(["cond"], uri, with_curves=False).expected_trials == 3


def test_fewer_runs_than_the_launch_expected_are_counted(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "cond", CONDITIONAL, 3, ["FINISHED"] * 2)
    assert "1 of 3 trials have no run yet" in load_sweeps(["cond"], uri, with_curves=False).missing


def test_a_sweep_whose_trials_all_failed_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "failed", CONDITIONAL, 3, ["FAILED"] * 3, "3 errored of 3 trials; see the log")
    lines = report(["failed"], tmp_path / "report", uri, echo=lambda _: None)
    text = "\n".join(lines)
    assert "No finished trial: all 3 trial runs failed (most often: ValueError: x, 3 of them)" in text
    assert "no trial runs yet" not in text and "have no run" not in text
    # the headline says why there is no comparison: none is coming, not "yet"
    assert "Nothing to compare: all 3 trial runs failed." in lines
    assert "No comparison yet" not in text


def test_a_launch_whose_trials_failed_before_logging_a_run_says_how_it_ended(tmp_path):
    """Trials that fail before their run opens (a config a trial rejects, a prior that cannot load) leave none:
    the launch is over, so the report says how it ended instead of "no trial runs yet"."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "failed", CONDITIONAL, 3, [], "3 errored of 3 trials; see the log")
    missing = load_sweeps(["failed"], uri, with_curves=False).missing
    assert missing[0] == "no trial run was logged: the launch ended FAILED (3 errored of 3 trials; see the log)"
    assert not any("yet" in note for note in missing)


def test_a_second_report_leaves_nothing_of_the_first_beside_it(tmp_path):
    """An earlier report of the folder (another sweep's plots and turntables) does not mix into the new one."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    launch(uri, "cond", CONDITIONAL, 3, ["FINISHED"] * 3)
    out = tmp_path / "report"
    report(["cond"], out, uri, echo=lambda _: None)
    (out / "metric_vs_another_axis.png").write_bytes(b"")
    (out / "turntables").mkdir(exist_ok=True)
    (out / "turntables" / "another-run.gif").write_bytes(b"")
    report(["cond"], out, uri, echo=lambda _: None)
    assert not (out / "metric_vs_another_axis.png").exists() and not (out / "turntables").exists()
    assert (out / "report.md").is_file() and (out / "trials.csv").is_file()
