"""PBT's record in a trial's real MLflow run (SQLite): the starting values, one event per perturbation with the
trial it copied, nothing for a retry of the trial itself; and perturbed values kept inside their dimension."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow import MlflowClient

from dreamfusion.sweep.space import Dimension
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.store import open_experiment
from dreamfusion.tune.pbt import KeepInRange, record_perturbation

KEY = "sds.guidance_scale"


def test_a_perturbed_value_stays_in_its_dimension():
    keep = KeepInRange(
        {
            "a": Dimension(uniform=(0.1, 0.9)),
            "b": Dimension(randint=(1, 5)),
            "c": Dimension(quniform=(0.0, 1.0, 0.25)),
            "d": Dimension(choice=[1, 2]),
        }
    )
    assert keep({"a": 1.08, "b": 5.9, "c": 0.61, "d": 2}) == {"a": 0.9, "b": 4, "c": 0.5, "d": 2}
    assert keep({"a": 0.05, "b": 0.2, "c": -0.3, "d": 1}) == {"a": 0.1, "b": 1, "c": 0.0, "d": 1}


def test_each_perturbation_is_recorded_once_in_the_trials_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    tracker = TrialTracker(uri, open_experiment(uri, "pbt"))
    attempts = [  # (values, the trial whose checkpoint it starts from, step)
        ({KEY: 20.0}, None, 0),  # fresh start
        ({KEY: 20.0}, "t1", 4),  # a retry from its own checkpoint: nothing new
        ({KEY: 24.0}, "t2", 8),  # exploits t2 with a perturbed value
        ({KEY: 24.0}, "t3", 8),  # exploits t3, the value shifted back onto the same one: still an event
    ]
    for values, source, step in attempts:
        with tracker.run("t1", "trial one", continue_existing=True) as callback:
            record_perturbation(callback, values, "t1", source, step)
    client = MlflowClient(uri)
    [run] = client.search_runs([tracker.experiment_id])
    tags = run.data.tags
    assert tags["df.pbt.perturbations"] == "2" and json.loads(tags["df.pbt.values"]) == {KEY: 24.0}
    assert tags["df.pbt.last"] == "step 8: copied trial t3"
    first = json.loads(
        Path(client.download_artifacts(run.info.run_id, "pbt/perturbation_001.json", str(tmp_path))).read_text()
    )
    assert first == {"step": 8, "copied_trial": "t2", "before": {KEY: 20.0}, "after": {KEY: 24.0}}
    history = client.get_metric_history(run.info.run_id, f"pbt/{KEY}")
    assert [(m.step, m.value) for m in history] == [(0, 20.0), (8, 24.0), (8, 24.0)]
