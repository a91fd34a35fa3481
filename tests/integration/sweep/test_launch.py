"""A 4-trial sweep on a real local Ray, tracked in a real MLflow SQLite store: the parent/child layout, params,
step and final metrics, artifacts, one prior load per worker, and the status table."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sweep_helpers import (
    TINY_BASE,
    TINY_RUN,
    render_steps,
    run_artifacts,
    set_args,
    sweep_runs,
    sweep_workdir,
    write_spec,
)
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.config.files import flatten
from dreamfusion.sweep.validate import load_spec

NAME = "four"
SPACE = {"prompt": {"grid": ["a red cube", "a blue sphere"]}, "sds.timesteps.schedule": {"grid": ["uniform", "anneal"]}}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """The module's working directory (where mlruns.db and ray_results go) and its one local Ray."""
    path = tmp_path_factory.mktemp("launch")
    with sweep_workdir(path):
        yield path


@pytest.fixture(scope="module")
def launched(workdir):
    spec = write_spec(workdir / "four.yaml", NAME, SPACE, tracking={"system_every_s": 0.2})
    result = CliRunner().invoke(app, ["launch", str(spec)])
    assert result.exit_code == 0, result.output
    return result, f"sqlite:///{workdir / 'mlruns.db'}", spec


def test_summary_names_no_best_trial_and_gives_the_next_steps(launched):
    """A launch cannot tell noise from a difference: it points to the report's paired tests instead."""
    output = launched[0].output
    assert "best" not in output.split("trials: 4 TERMINATED")[-1].lower()
    assert "trials: 4 TERMINATED" in output
    assert "#/experiments/" in output and "runs?workflowType=machine_learning" in output
    assert f"df-sweep report {NAME} --out report" in output


def test_the_output_counts_the_trials_and_carries_each_trials_eval_lines(launched):
    output = launched[0].output
    assert "trials: 4/4 done, 0 running, 0 pending; elapsed" in output
    every, steps = TINY_BASE["eval"]["every"], TINY_BASE["steps"]
    for run in sweep_runs(launched[1], NAME)[1]:
        prefix = f"[trial {run.data.tags['df.trial_id']} {run.info.run_name}] step"
        assert [f"{s}/{steps}" for s in range(every, steps + 1, every)] == [
            line.split(prefix, 1)[1].split()[0] for line in output.splitlines() if prefix in line
        ]
    assert "Checkpoint successfully created" not in output


def test_every_run_has_the_system_metrics_of_its_trial_process(launched):
    _, uri, _ = launched
    client = MlflowClient(uri)
    for run in sweep_runs(uri, NAME)[1]:
        rss = client.get_metric_history(run.info.run_id, "system/rss_mb")
        peak = client.get_metric_history(run.info.run_id, "system/peak_rss_mb")
        cpu = client.get_metric_history(run.info.run_id, "system/cpu_percent")
        assert len(rss) >= 2 and len(peak) == len(rss) == len(cpu)  # sampled during the trial, and at its end
        assert all(100 < m.value < 8000 for m in rss)  # a worker with torch and a prior loaded: MiB, not bytes
        assert peak[-1].value >= max(m.value for m in rss)
        assert all(0 <= m.step <= TINY_BASE["steps"] for m in rss)


def test_one_parent_and_one_finished_child_per_trial(launched):
    _, uri, _ = launched
    parents, children = sweep_runs(uri, NAME)
    assert len(parents) == 1 and parents[0].data.tags["df.sweep"] == NAME
    assert parents[0].info.status == "FINISHED"
    assert len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert {c.info.status for c in children} == {"FINISHED"}
    assert {c.info.run_name for c in children} == {
        f"prompt={p},schedule={s}" for p in ("a red cube", "a blue sphere") for s in ("uniform", "anneal")
    }
    # the comparison view's row for the launch: the sweep's params, and its outcome over the trials' runs
    assert parents[0].data.params == {
        "df.spec": NAME,
        "df.search": "random",
        "df.scheduler": "fifo",
        "df.metric": "clip_r_precision",
        "df.mode": "max",
        "df.expected_trials": "4",
    }
    scores = sorted(c.data.metrics["clip_r_precision"] for c in children)
    assert parents[0].data.metrics == {
        "df.trials_finished": 4,
        "df.trials_failed": 0,
        "df.best.clip_r_precision": scores[-1],
        "df.median.clip_r_precision": (scores[1] + scores[2]) / 2,
    }
    client = MlflowClient(uri)
    # and the source's diff under provenance/, when the checkout has uncommitted changes
    assert {a.path for a in client.list_artifacts(parents[0].info.run_id)} - {"provenance"} == {"spec.yaml"}
    experiment = client.get_experiment(parents[0].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert Path(experiment.artifact_location) == Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / NAME


def test_children_hold_params_metrics_and_artifacts(launched):
    _, uri, spec_path = launched
    spec = load_spec(spec_path)
    client = MlflowClient(uri)
    for run in sweep_runs(uri, NAME)[1]:
        cfg = spec.trial_config(
            {"prompt": run.data.params["prompt"], "sds.timesteps.schedule": run.data.params["sds.timesteps.schedule"]}
        )
        assert run.data.params == {k: str(v) for k, v in flatten(cfg).items()}
        steps = TINY_BASE["steps"]
        for key in ("loss", "grad_norm", "t", "step_ms"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, steps + 1))
        every = TINY_BASE["eval"]["every"]
        evals = [m.step for m in client.get_metric_history(run.info.run_id, "clip_score")]
        assert evals == list(range(every, steps + 1, every))
        for key in ("clip_score", "clip_r_precision", "clip_r_precision_geometry"):
            assert key in run.data.metrics
        files = run_artifacts(client, run.info.run_id)
        assert {"config.yaml", "final/views.png", "final/turntable.gif"} <= files
        # each eval's render once, through the image viewer: none as a plain artifact besides
        assert render_steps(client, run.info.run_id) == evals and not any(f.startswith("renders/") for f in files)


def test_prior_loaded_once_per_worker(launched, workdir):
    reports = [
        json.loads(line)
        for f in (workdir / "ray_results" / NAME).glob("*/*/result.json")
        for line in f.read_text().splitlines()
    ]
    assert len({r["trial_id"] for r in reports}) == 4
    loads = {}
    for r in reports:
        loads[r["worker_pid"]] = max(loads.get(r["worker_pid"], 0), r["prior_loads"])
    assert set(loads.values()) == {1}
    assert len(loads) <= 2  # two CPU slots: workers are reused across the four trials


def test_status_prints_the_trial_table(launched):
    result = CliRunner().invoke(app, ["status", NAME])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "TERMINATED" in line and "a " in line]
    assert len(rows) == 4
    assert "clip_r_precision" in result.output
    overview = CliRunner().invoke(app, ["status"])
    assert overview.exit_code == 0 and f"{NAME}  (" in overview.output and "4 TERMINATED" in overview.output


def test_status_json_reads_the_real_launch(launched):
    """The machine-readable status of a real Tune launch: the same trials and states the table shows."""
    result = CliRunner().invoke(app, ["status", NAME, "--json"])
    assert result.exit_code == 0, result.output
    (sweep,) = json.loads(result.output)["sweeps"]
    assert sweep["name"] == NAME and sweep["states"] == {"TERMINATED": 4} and sweep["problem"] is None
    assert len({t["trial_id"] for t in sweep["trials"]}) == 4
    assert all(isinstance(t["metric"], float) for t in sweep["trials"])


def test_dry_run_creates_nothing(launched, tmp_path):
    os.chdir(tmp_path)
    try:
        spec = write_spec(tmp_path / "dry.yaml", "dry", SPACE)
        result = CliRunner().invoke(app, ["launch", str(spec), "--dry-run"])
    finally:
        os.chdir(launched[2].parent)
    assert result.exit_code == 0, result.output
    assert "4 trials" in result.output
    assert sum("uniform" in line or "anneal" in line for line in result.output.splitlines()) == 4
    assert list(tmp_path.iterdir()) == [spec]
    assert sweep_runs(launched[1], NAME)[0][0].info.status == "FINISHED"  # the store is untouched too


def test_ui_serves_the_store_and_stops_on_ctrl_c(launched, workdir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ui = subprocess.Popen(
        [sys.executable, "-m", "dreamfusion.cli", "ui", "--port", str(port)],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = ui.stdout.readline()
        assert f"at http://127.0.0.1:{port}" in first
        assert "runs?workflowType=machine_learning" in ui.stdout.readline()
        assert _wait_for(f"http://127.0.0.1:{port}/health") == b"OK"
    finally:
        ui.send_signal(signal.SIGINT)
        assert ui.wait(timeout=30) == 0
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the server went with it


def _wait_for(url: str, timeout_s: float = 60) -> bytes:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_asha_stops_trials_early_and_their_runs_still_end_finished(workdir):
    """Made deterministic: one trial at a time, in grid order. The initial blob's silhouette lies inside the true
    cube's, so gt_iou at ASHA's first rung (step 4) grows with its radius: the second trial (0.5) beats the first
    (0.4) and runs on; the last two start near-empty (0.06, 0.05) and fall far below the recorded median."""
    spec = write_spec(
        workdir / "asha.yaml",
        "asha",
        {"nerf.blob_radius": {"grid": [0.4, 0.5, 0.06, 0.05]}},
        tune={
            "metric": "gt_iou",
            "scheduler": "asha",
            "grace_period": 4,
            "reduction_factor": 2,
            "max_concurrent_trials": 1,
        },
    )
    result = CliRunner().invoke(app, ["launch", str(spec)])
    assert result.exit_code == 0, result.output
    uri = f"sqlite:///{workdir / 'mlruns.db'}"
    client = MlflowClient(uri)
    stopped = 0
    for run in sweep_runs(uri, "asha")[1]:
        assert run.info.status == "FINISHED"
        last = max(m.step for m in client.get_metric_history(run.info.run_id, "loss"))
        if last < TINY_BASE["steps"]:
            stopped += 1
            assert float(run.data.params["nerf.blob_radius"]) < 0.1
            assert run.data.tags["df.stopped_early_at_step"] == str(last)
        else:
            assert "final/turntable.gif" in run_artifacts(client, run.info.run_id)
    assert stopped == 2


def test_run_logs_one_run_the_same_way(tmp_path):
    uri = f"sqlite:///{tmp_path / 'single.db'}"
    tiny = [*TINY_RUN, *set_args(eval__every=4)]
    args = ["run", "--prompt", "a red cube", "--steps", "4", *tiny, "--tracking-uri", uri]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "tracked")])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "untracked"), "--no-tracking"])
    assert result.exit_code == 0, result.output
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("df-sweep-run").experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "prompt=a red cube,seed=0"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4]
    assert {"config.yaml", "final/views.png"} <= run_artifacts(client, run.info.run_id)
    assert render_steps(client, run.info.run_id) == [4]
