"""What a trial's run records of its metrics: each score's direction and each index metric's level names, as the
evaluator classes that log them declare them (one real trial on a small analytic prior, real MLflow on SQLite)."""

from __future__ import annotations

import pytest
from mlflow import MlflowClient
from sweep_helpers import TINY_BASE, small_analytic_prior

from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import make_evaluator_classes
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.schema import STEP_METRICS
from dreamfusion.tracking.store import open_experiment
from dreamfusion.trial.loop import run_trial

CONFIG = {
    **TINY_BASE,
    "prompt": "a coloured cube",  # the colour choice's index metric applies, beside CLIP, ground truth and mesh scores
    "steps": 1,
    "device": "cpu",
    "eval": {**TINY_BASE["eval"], "every": 1},
    "export": {"video": False},
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The trial's cfg and its finished run, on the small analytic prior (what is recorded does not depend on it)."""
    tmp = tmp_path_factory.mktemp("record")
    prior = small_analytic_prior()
    uri = f"sqlite:///{tmp / 'mlruns.db'}"
    cfg = TrialConfig.model_validate(CONFIG)
    with TrialTracker(uri, open_experiment(uri, "record")).run("trial", "a coloured cube", False) as callback:
        run_trial(cfg, tmp / "out", callback, prior=prior)
    (found,) = MlflowClient(uri).search_runs([open_experiment(uri, "record")])
    return cfg, found


def _tagged(tags: dict[str, str], prefix: str) -> dict[str, str]:
    return {k.removeprefix(prefix): v for k, v in tags.items() if k.startswith(prefix)}


def test_each_score_the_trial_logs_has_its_declared_direction(run):
    cfg, found = run
    declared = {name: m for cls in make_evaluator_classes(cfg) for name, m in cls.metrics.items()}
    recorded = _tagged(found.data.tags, "df.direction.")
    assert recorded == {name: m.mode for name, m in declared.items() if m.ranked}
    assert recorded["gt_colour_error"] == "min" and recorded["gt_chamfer"] == "min"
    assert recorded["clip_r_precision"] == "max" and recorded["gt_iou"] == "max"
    assert {"gt_colour_error", "gt_iou", "gt_chamfer", "gt_colour_index"} <= set(found.data.metrics)
    # readings (no better side) and step metrics (no evaluator declares them) have none
    assert "gt_colour_index" not in recorded and "gt_colour_open" not in recorded
    assert not set(STEP_METRICS) & set(recorded)


def test_an_index_metric_records_what_its_values_name(run):
    cfg, found = run
    (choice,) = [cls for cls in make_evaluator_classes(cfg) if "gt_colour_index" in cls.metrics]
    levels = choice.metrics["gt_colour_index"].levels
    assert _tagged(found.data.tags, "df.levels.") == {"gt_colour_index": ",".join(levels)}
    assert found.data.metrics["gt_colour_open"] == 1.0
    assert 0 <= found.data.metrics["gt_colour_index"] < len(levels)
