"""Model-based search, conditional dimensions and Population Based Training on a real local Ray, tracked in a
real MLflow SQLite store: Optuna draws the same configs for the same seed, a conditional key varies only where its
condition holds (HyperOpt's nested space, BOHB's ConfigSpace under its HyperBand), and a PBT trial that exploits
another continues from its checkpoint with the perturbation recorded in its own run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sweep_helpers import TINY_BASE, run_artifacts, sweep_runs, sweep_workdir, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app

SCHEDULE, M1, GUIDANCE = "sds.timesteps.schedule", "sds.timesteps.dreamtime_m1", "sds.guidance_scale"
CONDITIONAL = {
    SCHEDULE: {"choice": ["anneal", "dreamtime"]},
    M1: {"uniform": [700, 900], "when": {SCHEDULE: "dreamtime"}},
    GUIDANCE: {"loguniform": [5, 50]},
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("search")
    with sweep_workdir(path):
        yield path


def _launch(workdir, name: str, space: dict, **tune) -> tuple[str, list]:
    """Launch, and return the output and the child runs in the order they started."""
    spec = write_spec(workdir / f"{name}.yaml", name, space, tune={"metric": "gt_iou", **tune})
    result = CliRunner().invoke(app, ["launch", str(spec)])
    assert result.exit_code == 0, result.output
    children = sweep_runs(f"sqlite:///{workdir / 'mlruns.db'}", name)[1]
    assert children and {run.info.status for run in children} == {"FINISHED"}
    return result.output, sorted(children, key=lambda run: run.info.start_time)


def _event(client: MlflowClient, run_id: str, path: str, workdir: Path) -> dict:
    return json.loads(Path(client.download_artifacts(run_id, path, str(workdir / run_id))).read_text())


def _check_conditional(children: list) -> None:
    for run in children:
        dreamtime = run.data.params[SCHEDULE] == "dreamtime"
        if dreamtime:
            assert 700 <= float(run.data.params[M1]) < 900
        else:  # an option of a schedule the trial did not choose is not among its params
            assert M1 not in run.data.params
        assert ("dreamtime_m1=" in run.info.run_name) == dreamtime


def test_optuna_draws_the_same_configs_for_the_same_seed(workdir):
    tune = {"search": "optuna", "num_samples": 3, "max_concurrent_trials": 1, "seed": 7}
    drawn = []
    for name in ("optuna-a", "optuna-b"):
        output, children = _launch(workdir, name, CONDITIONAL, **tune)
        assert len(children) == 3 and "trials: 3/3 done" in output
        _check_conditional(children)
        drawn.append([{k: run.data.params.get(k) for k in CONDITIONAL} for run in children])
    assert drawn[0] == drawn[1]
    assert len({row[GUIDANCE] for row in drawn[0]}) == 3  # drawn, not one value repeated


def test_hyperopt_nests_a_conditional_key_under_its_condition(workdir):
    _, children = _launch(workdir, "hyperopt", CONDITIONAL, search="hyperopt", num_samples=4, seed=1)
    assert len(children) == 4
    _check_conditional(children)


def test_bohb_runs_under_its_hyperband_with_a_conditional_key(workdir):
    tune = {"search": "bohb", "scheduler": "hyperband", "num_samples": 4, "seed": 2, "reduction_factor": 2}
    _, children = _launch(workdir, "bohb", CONDITIONAL, **tune)
    assert len(children) == 4
    _check_conditional(children)


def test_pbt_exploits_the_better_trial_and_records_it_in_the_run(workdir):
    """Made deterministic by synchronous PBT: both trials stop at step 8 until the other is there. A grid learning
    rate of 1e-6 leaves the second trial's field where it started, below the first trial's gt_iou at step 8, so the
    second continues from the first's step-8 checkpoint, its learning rate moved along the list."""
    lr, at = "optim.lr_grid", 8
    space = {lr: {"grid": [0.03, 1e-6]}, "seed": {"grid": [1]}}
    pbt = {"perturbation_interval": at, "mutate": [lr], "quantile_fraction": 0.5, "resample_probability": 0}
    _, children = _launch(workdir, "pbt", space, scheduler="pbt", pbt={**pbt, "synch": True}, seed=0)
    first, second = sorted(children, key=lambda run: -float(run.data.params[lr]))
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns.db'}")
    assert "df.pbt.perturbations" not in first.data.tags  # the better trial copies no one
    assert second.data.tags["df.pbt.perturbations"] == "1"
    files = sorted(f for f in run_artifacts(client, second.info.run_id) if f.startswith("pbt/"))
    assert files == ["pbt/perturbation_001.json"]
    event = _event(client, second.info.run_id, files[0], workdir)
    assert event["copied_trial"] == first.data.tags["df.trial_id"] and event["step"] == at
    assert event["before"] == {lr: 1e-6} and event["after"][lr] in (0.03, 1e-6)
    assert second.data.tags["df.pbt.last"].startswith(f"step {at}: copied trial {event['copied_trial']}")
    history = client.get_metric_history(second.info.run_id, f"pbt/{lr}")
    assert [(m.step, m.value) for m in history] == [(0, 1e-6), (at, event["after"][lr])]
    steps = TINY_BASE["steps"]
    for run in children:  # both ran to the last step, the second from the first's checkpoint on
        assert max(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == steps
