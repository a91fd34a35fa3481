"""Analysis takes which way a metric is better, and what an index metric's values name, from the runs' record (real
MLflow on SQLite): a metric recorded as lower-is-better is ranked so even where its name, its declaring evaluator
and the spec's default mode all say higher; a metric no run records a direction for gets no winner."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from analysis.compare import config_means
from analysis.load import load_sweeps
from analysis.paired import comparisons, trends
from analysis.report import tables
from analysis.verdicts import headline
from dreamfusion.tracking.runs import start_parent_run
from dreamfusion.tracking.store import open_experiment

PROMPTS = ["a coloured cube", "a coloured cone", "a coloured torus"]
SPACE = {"schedule": ["uniform", "anneal"], "prompt": PROMPTS, "seed": [0, 1, 2]}
#: As a launch stores it: `tune.mode` left out, since `max` is the default.
SPEC = {"name": "dirs", "space": {k: {"grid": v} for k, v in SPACE.items()}, "tune": {"metric": "gt_iou"}}
COLOURS = "red,green,blue,yellow,purple,orange"


def tags(schedule: str) -> dict[str, str]:
    return {
        "df.direction.gt_iou": "min",  # the record says lower is better: analysis must follow it
        "df.direction.clip_score": "max" if schedule == "uniform" else "min",  # runs that disagree
        "df.levels.gt_colour_index": COLOURS,
    }  # gt_colour_error: no direction recorded, as on runs logged before directions were


def values(schedule: str, seed: int) -> dict[str, float]:
    """anneal is 0.1 lower on every metric, whatever the prompt and seed; anneal's colours all red."""
    lower = 0.1 if schedule == "anneal" else 0.0
    colour = 0 if schedule == "anneal" else seed
    return {
        "gt_iou": 0.8 - lower + 0.01 * seed,
        "gt_colour_error": 0.3 - lower + 0.01 * seed,
        "clip_score": 20.0 - lower + 0.1 * seed,
        "gt_colour_index": float(colour),
        "gt_colour_open": 1.0,
    }


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    uri = f"sqlite:///{tmp_path_factory.mktemp('directions') / 'mlruns.db'}"
    experiment = open_experiment(uri, "dirs")
    parent = start_parent_run(uri, experiment, "dirs", "2026-01-01_00-00-00", "", yaml.safe_dump(SPEC))
    client = MlflowClient(uri)
    for schedule, prompt, seed in itertools.product(*SPACE.values()):
        name = f"schedule={schedule},prompt={prompt},seed={seed}"
        run = client.create_run(experiment, run_name=name, tags={"mlflow.parentRunId": parent})
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, 0, 10) for k, v in values(schedule, seed).items()],
            params=[Param("schedule", schedule), Param("prompt", prompt), Param("seed", str(seed))],
            tags=[RunTag(k, v) for k, v in tags(schedule).items()],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
    return uri


@pytest.fixture(scope="module")
def sweep(uri):
    return load_sweeps(["dirs"], uri, with_curves=False)


def test_directions_are_the_runs_record(sweep):
    assert sweep.directions == {"gt_iou": "min"}  # clip_score's runs disagree: unknown, not either one's
    assert sweep.direction("gt_iou") == "min"  # the record, over the spec's default mode
    assert sweep.direction("gt_colour_error") is None and sweep.direction("clip_score") is None
    assert sweep.levels == {"gt_colour_index": COLOURS.split(",")}


def test_a_metric_recorded_lower_is_better_is_ranked_so(sweep):
    table = comparisons(sweep).query("axis == 'schedule'").set_index("metric")
    assert table.loc["gt_iou", "direction"] == "min"
    assert table.loc["gt_iou", "verdict"] == "a>b"  # uniform's value is the higher one, and so the worse
    lines = headline(sweep, comparisons(sweep), trends(sweep))
    assert lines[0].startswith("**anneal** is the best schedule on gt_iou")
    assert config_means(sweep)["schedule"].tolist() == ["anneal", "uniform"]  # best first: the lower mean


def test_without_a_recorded_direction_a_difference_names_no_winner(sweep):
    row = comparisons(sweep).query("axis == 'schedule' and metric == 'gt_colour_error'").iloc[0]
    assert row["verdict"] == "a>b" and pd.isna(row["direction"])
    line = next(line for line in headline(sweep, comparisons(sweep), trends(sweep)) if "gt_colour_error" in line)
    assert "**uniform** has higher gt_colour_error than anneal" in line and "No level beats all others" in line


def test_colour_diversity_counts_the_recorded_colours(sweep):
    found = tables(sweep)
    title = "Colour diversity across seeds (colour-unspecified prompts; log2 6 = 2.585 bits is uniform)"
    assert found[title].to_dict("records") == [
        {"schedule": "anneal", "trials": 9, "colour_entropy_bits": 0.0, "counts": "9 0 0 0 0 0"},
        {
            "schedule": "uniform",
            "trials": 9,
            "colour_entropy_bits": pytest.approx(1.584962500721156),
            "counts": "3 3 3 0 0 0",
        },
    ]
