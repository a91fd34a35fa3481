"""A sweep on a real two-node Ray cluster (a head and a second node, each started by `ray start` on this machine)
logging to a real `mlflow server` (on PostgreSQL where it is installed): trials run on both nodes, every trial's
run, metrics and renders are in the server, the workers run the driver's code shipped with the job, and a
node-local --storage is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_helpers import finished, postgres_bin
from mlflow import MlflowClient
from sweep_helpers import TINY_BASE, render_steps, run_artifacts, sweep_runs, write_spec

import dreamfusion
from dreamfusion.tune.session import with_project_code
from dreamfusion.tune.storage import join, storage_root

NAME = "two-nodes"
STEPS = TINY_BASE["steps"]


@pytest.fixture(scope="module")
def launched(shared_stack, tmp_path_factory):
    """Two trials on two one-CPU nodes: one lands on each."""
    work = tmp_path_factory.mktemp("cluster")
    spec = write_spec(work / "two.yaml", NAME, {"seed": {"grid": [0, 1]}})
    code, output = finished(shared_stack.launch(spec, work / "markers"))
    assert code == 0, output
    return work / "markers", output


def test_the_server_keeps_runs_in_postgresql_where_it_is_installed(stack):
    assert stack.backend == ("postgresql" if postgres_bin() else "sqlite")


def test_trials_ran_on_both_nodes(stack, launched):
    children = sweep_runs(stack.tracking_uri, NAME)[1]
    assert {run.data.tags["df.node"] for run in children} == set(stack.ray.nodes())


def test_every_run_metric_and_render_is_in_the_server(stack, launched):
    parents, children = sweep_runs(stack.tracking_uri, NAME)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2 and {run.info.status for run in children} == {"FINISHED"}
    client = MlflowClient(stack.tracking_uri)
    every = TINY_BASE["eval"]["every"]
    for run in children:
        run_id = run.info.run_id
        assert [m.step for m in client.get_metric_history(run_id, "loss")] == list(range(1, STEPS + 1))
        assert [m.step for m in client.get_metric_history(run_id, "clip_score")] == list(range(every, STEPS + 1, every))
        assert render_steps(client, run_id) == list(range(every, STEPS + 1, every))
        assert {"config.yaml", "final/views.png", "final/turntable.gif"} <= run_artifacts(client, run_id)
        # uploaded over HTTP to the server's --artifacts-destination, not written by the workers themselves
        assert list((stack.root / "mlartifacts").rglob(f"{run_id}/artifacts/final/views.png"))


def test_each_trials_eval_lines_and_the_progress_reach_the_drivers_log(stack, launched):
    output = launched[1]
    for run in sweep_runs(stack.tracking_uri, NAME)[1]:
        assert f"[trial {run.data.tags['df.trial_id']} {run.info.run_name}] step {STEPS}/{STEPS}" in output
    assert "trials: 2/2 done, 0 running, 0 pending" in output


def test_workers_run_the_driver_code_shipped_with_the_job(launched):
    imported = {path.read_text() for path in launched[0].glob("code-*")}
    assert imported and all("/runtime_resources/py_modules_files/" in path for path in imported), imported


def test_a_node_local_storage_is_refused_on_a_multi_node_cluster(stack, tmp_path):
    spec = write_spec(tmp_path / "local.yaml", "local-storage", {"seed": {"grid": [0]}})
    local = tmp_path / "results"
    driver = stack.driver(
        [
            "launch",
            str(spec),
            "--address",
            stack.ray.address,
            "--tracking-uri",
            stack.tracking_uri,
            "--storage",
            str(local),
        ],
        tmp_path / "markers",
    )
    code, output = finished(driver, 120)
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, output
    assert f"--storage {local}: a local path on a 2-node Ray cluster" in errors[0]
    assert f"file://{local}" in errors[0]
    assert MlflowClient(stack.tracking_uri).get_experiment_by_name("local-storage") is None
    assert not Path(local).exists()


def test_storage_uris_keep_their_scheme_and_options():
    """`--storage s3://…` must reach Tune as given: a Path would fold `s3://` into `s3:/`."""
    assert storage_root("s3://bucket/df-sweep/") == "s3://bucket/df-sweep"
    assert (
        join("s3://bucket/runs?endpoint_override=minio:9000", "sweep", "launch")
        == "s3://bucket/runs/sweep/launch?endpoint_override=minio:9000"
    )
    assert storage_root("results") == str(Path("results").absolute())


def test_code_ships_with_the_job_unless_the_job_brings_its_own(monkeypatch):
    shipped = with_project_code({"env_vars": {"A": "1"}})
    assert shipped["env_vars"] == {"A": "1"} and shipped["py_modules"] == [str(Path(dreamfusion.__file__).parent)]
    assert with_project_code({"working_dir": "."}) == {"working_dir": "."}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"runtime_env": {"working_dir": "gcs://x.zip"}}))
    assert with_project_code(None) == {}  # `ray job submit --working-dir .`: Ray would refuse a second copy
