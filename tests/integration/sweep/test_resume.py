"""Interrupted sweeps go on where they stopped: a trial retried by Ray and a sweep resumed with `df-sweep resume`
each continue the same MLflow run, finished trials are not rerun, and no step is logged twice."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from sweep_helpers import FAIL_AT_STEP, TINY_BASE, sweep_runs, sweep_workdir, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app

STEPS = TINY_BASE["steps"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The module's working directory and its one local Ray, whose workers fail a seed-1 trial once."""
    path = tmp_path_factory.mktemp("resume")
    markers = path / "markers"
    markers.mkdir()
    with sweep_workdir(path, "sweep_helpers.small_world_failing_once", {"DF_TEST_MARKERS": str(markers)}):
        yield path


def _uri(workdir) -> str:
    return f"sqlite:///{workdir / 'mlruns.db'}"


def _by_seed(uri: str, name: str) -> dict[str, object]:
    return {run.data.params["seed"]: run for run in sweep_runs(uri, name)[1]}


def _steps(uri: str, run, key: str = "loss") -> list[int]:
    return [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, key)]


def test_a_trial_retried_by_ray_continues_its_run(workdir):
    spec = write_spec(workdir / "retry.yaml", "retry", {"seed": {"grid": [1]}}, max_failures=1)
    result = CliRunner().invoke(app, ["launch", str(spec)])
    assert result.exit_code == 0, result.output
    runs = _by_seed(_uri(workdir), "retry")
    assert list(runs) == ["1"] and runs["1"].info.status == "FINISHED"
    assert "df.failure" not in runs["1"].data.tags
    assert _steps(_uri(workdir), runs["1"]) == list(range(1, STEPS + 1))
    assert _steps(_uri(workdir), runs["1"], "clip_score") == [4, 8, 12]


def test_resume_finishes_an_errored_sweep_without_rerunning_or_duplicating(workdir):
    uri = _uri(workdir)
    spec = write_spec(workdir / "resumable.yaml", "resumable", {"seed": {"grid": [0, 1]}}, max_failures=0)
    first = CliRunner().invoke(app, ["launch", str(spec)])
    assert first.exit_code == 1, first.output
    assert "resume: df-sweep resume resumable" in first.output
    before = _by_seed(uri, "resumable")
    assert before["1"].info.status == "FAILED"
    assert "RuntimeError: injected failure" in before["1"].data.tags["df.failure"]
    assert _steps(uri, before["1"]) == list(range(1, FAIL_AT_STEP + 1))
    parent = sweep_runs(uri, "resumable")[0]
    assert (
        len(parent) == 1
        and parent[0].info.status == "FAILED"
        and "1 errored of 2 trials" in parent[0].data.tags["df.failure"]
    )
    assert parent[0].data.metrics["df.trials_finished"] == 1 and parent[0].data.metrics["df.trials_failed"] == 1
    assert parent[0].data.metrics["df.best.clip_r_precision"] == before["0"].data.metrics["clip_r_precision"]
    status = CliRunner().invoke(app, ["status", "resumable"])
    states = [line.split()[1] for line in status.output.splitlines()[2:]]
    assert sorted(states) == ["ERROR", "TERMINATED"]

    second = CliRunner().invoke(app, ["resume", "resumable"])
    assert second.exit_code == 0, second.output
    assert "trials: 2 TERMINATED" in second.output
    parents, children = sweep_runs(uri, "resumable")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and "df.failure" not in parents[0].data.tags
    # the params the launch logged stay as they were; the outcome is the resume's
    assert parents[0].data.params == parent[0].data.params and parents[0].data.params["df.expected_trials"] == "2"
    assert parents[0].data.metrics["df.trials_finished"] == 2 and parents[0].data.metrics["df.trials_failed"] == 0
    after = _by_seed(uri, "resumable")
    assert len(children) == 2 and {r.info.status for r in children} == {"FINISHED"}
    assert after["1"].info.run_id == before["1"].info.run_id and "df.failure" not in after["1"].data.tags
    assert _steps(uri, after["1"]) == list(range(1, STEPS + 1))
    assert _steps(uri, after["1"], "clip_score") == [4, 8, 12]
    # finished before the resume: not run again
    assert after["0"].info.end_time == before["0"].info.end_time
    assert _steps(uri, after["0"]) == list(range(1, STEPS + 1))


def test_runs_are_closed_as_tune_saw_their_trials(tmp_path):
    """Tune stops a trial (for its scheduler, or for Ctrl-C) by a clean SystemExit in the trial, which leaves the
    run RUNNING; after `fit` the driver closes it as Tune saw the trial: finished (early or not) or not."""
    from dreamfusion.tracking.callback import TrialTracker
    from dreamfusion.tracking.runs import close_runs, start_parent_run
    from dreamfusion.tracking.store import open_experiment

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    experiment = open_experiment(uri, "closing")
    parent = start_parent_run(uri, experiment, "closing", "launch", "", "name: closing\n")
    tracker = TrialTracker(uri, experiment, parent)
    for key in ("stopped", "interrupted"):
        with pytest.raises(SystemExit), tracker.run(key, key, continue_existing=True):
            raise SystemExit(0)
    with tracker.run("done", "done", continue_existing=True):
        pass
    with pytest.raises(RuntimeError), tracker.run("crashed", "crashed", continue_existing=True):
        raise RuntimeError("boom\nmore")
    client = MlflowClient(uri)
    client.create_run(experiment, tags={"mlflow.parentRunId": parent, "df.trial_id": "killed"})
    for run in sweep_runs(uri, "closing")[1]:
        client.log_param(run.info.run_id, "steps", "12")
    runs = {r.data.tags["df.trial_id"]: r for r in sweep_runs(uri, "closing")[1]}
    assert runs["stopped"].info.status == runs["interrupted"].info.status == "RUNNING"
    assert runs["crashed"].data.tags["df.failure"] == "RuntimeError: boom"

    close_runs(uri, experiment, parent, finished={"done": 12, "stopped": 4}, reason="interrupted")
    runs = {r.data.tags["df.trial_id"]: r for r in sweep_runs(uri, "closing")[1]}
    assert runs["done"].info.status == runs["stopped"].info.status == "FINISHED"
    assert runs["stopped"].data.tags["df.stopped_early_at_step"] == "4"
    assert "df.stopped_early_at_step" not in runs["done"].data.tags
    for key in ("interrupted", "killed"):
        assert runs[key].info.status == "FAILED" and runs[key].data.tags["df.failure"] == "interrupted"
    assert runs["crashed"].data.tags["df.failure"] == "RuntimeError: boom"
