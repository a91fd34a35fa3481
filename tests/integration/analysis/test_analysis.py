"""The report of a real small sweep (real Ray, real MLflow on SQLite): its numbers are checked against the runs
in MLflow and against independently computed statistics, not just for the files' existence."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from mlflow import MlflowClient
from sweep_helpers import sweep_runs, sweep_workdir, write_spec
from typer.testing import CliRunner

from analysis.compare import dreamfusion_table, group_summary, mean_ci, ranking
from analysis.load import SweepNotFound, load_sweep
from dreamfusion.cli import app

NAME = "analysed"
SPACE = {
    "prompt": {"grid": ["a red cube", "a blue cone"]},
    "sds.guidance_scale": {"grid": [5.0, 30.0]},
    "seed": {"grid": [0, 1]},
}


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A finished 8-trial sweep and its tracking URI; the module's one local Ray is stopped when it is done."""
    path = tmp_path_factory.mktemp("analysis")
    with sweep_workdir(path):
        spec = write_spec(path / "analysed.yaml", NAME, SPACE)
        result = CliRunner().invoke(app, ["launch", str(spec)])
        assert result.exit_code == 0, result.output
        yield path, f"sqlite:///{path / 'mlruns.db'}"


@pytest.fixture(scope="module")
def report(sweep_store):
    path, uri = sweep_store
    out = path / "report"
    result = CliRunner().invoke(app, ["report", NAME, "--out", str(out), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_trials_csv_has_one_row_per_run_with_the_runs_numbers(sweep_store, report):
    _, uri = sweep_store
    out, _ = report
    trials = pd.read_csv(out / "trials.csv")
    _, children = sweep_runs(uri, NAME)
    assert len(trials) == len(children) == 8
    by_id = trials.set_index("run_id")
    for run in children:
        row = by_id.loc[run.info.run_id]
        for metric in ("clip_score", "clip_r_precision", "clip_r_precision_geometry", "gt_iou"):
            assert row[metric] == pytest.approx(run.data.metrics[metric], rel=1e-12, abs=1e-12)
        assert row["sds.guidance_scale"] == float(run.data.params["sds.guidance_scale"])
        assert row["status"] == "FINISHED"


def test_group_means_and_confidence_intervals_match_an_independent_computation(sweep_store):
    _, uri = sweep_store
    sweep = load_sweep(NAME, uri)
    _, children = sweep_runs(uri, NAME)
    for scale in (5.0, 30.0):
        values = [
            r.data.metrics["clip_r_precision"] for r in children if float(r.data.params["sds.guidance_scale"]) == scale
        ]
        s = pd.Series(values)
        expected_half = 3.182446305284263 * s.std(ddof=1) / math.sqrt(4)  # t_{0.975, df=3}
        row = group_summary(sweep, ["sds.guidance_scale"]).set_index("sds.guidance_scale").loc[scale]
        assert row["n"] == 4
        assert row["mean"] == pytest.approx(s.mean())
        assert row["ci95"] == pytest.approx(expected_half, nan_ok=True)


def test_mean_ci_exact_on_known_values():
    ci = mean_ci(pd.Series([1.0, 2.0, 3.0]))  # sd 1, n 3, t_{0.975, 2} = 4.302652729911275
    assert ci["mean"] == 2.0 and ci["n"] == 3
    assert ci["ci95"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    assert math.isnan(mean_ci(pd.Series([5.0]))["ci95"])


def test_ranking_orders_configs_and_excludes_replicates(sweep_store):
    sweep = load_sweep(NAME, sweep_store[1])
    assert sweep.varied == ["prompt", "sds.guidance_scale", "seed"]
    table = ranking(sweep)
    assert list(table.columns[:1]) == ["sds.guidance_scale"]  # prompt and seed are replicates of a config
    assert list(table["mean"]) == sorted(table["mean"], reverse=True)
    assert set(table["n"]) == {4}


def test_dreamfusion_table_has_the_ground_truth_row(sweep_store):
    sweep = load_sweep(NAME, sweep_store[1])
    gt = {
        "colour": float(sweep.trials["gt_clip_r_precision"].mean()),
        "geometry": float(sweep.trials["gt_clip_r_precision_geometry"].mean()),
    }
    table = dreamfusion_table(sweep, gt)
    assert table.iloc[0]["sds.guidance_scale"] == "ground truth"
    assert table.iloc[0]["colour"] == pytest.approx(gt["colour"])
    assert len(table) == 3
    assert list(table.columns) == ["sds.guidance_scale", "colour", "colour ±", "geometry", "geometry ±", "n"]
    assert pd.isna(table.iloc[0]["n"]) and list(table["n"][1:]) == [4, 4]  # integers, not 4.000


def test_curves_csv_holds_every_logged_step(sweep_store, report):
    _, uri = sweep_store
    curves = pd.read_csv(report[0] / "curves.csv")
    client = MlflowClient(uri)
    run = sweep_runs(uri, NAME)[1][0]
    history = client.get_metric_history(run.info.run_id, "loss")
    mine = curves[(curves["run_id"] == run.info.run_id) & (curves["metric"] == "loss")].sort_values("step")
    assert list(mine["step"]) == [m.step for m in sorted(history, key=lambda m: m.step)]
    assert list(mine["value"]) == pytest.approx([m.value for m in sorted(history, key=lambda m: m.step)])


def test_html_and_markdown_reference_images_that_exist(report):
    out, output = report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4  # self-contained: plots embedded
    for name in re.findall(r'<a href="([^"]+\.png)">', html):
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"render_grid.png", "metric_vs_sds_guidance_scale.png", "curves_loss.png"} <= set(linked)
    assert all((out / name).is_file() for name in linked)
    assert "Best by max clip_r_precision" in md


def test_render_grid_has_a_cell_per_config_and_prompt(report):
    from PIL import Image

    with Image.open(report[0] / "render_grid.png") as grid:
        width, height = grid.size
        # 2 prompts (columns) × 2 guidance scales (rows) of 128 px cells, plus the label margins
        assert (width, height) == (220 + 2 * 128, 18 + 2 * 128)
        cell = grid.crop((220 + 40, 18 + 40, 220 + 88, 18 + 88)).convert("RGB")
        assert cell.getextrema() != ((255, 255), (255, 255), (255, 255))  # a render, not an empty cell


def test_unknown_sweep_is_a_one_line_error(sweep_store):
    result = CliRunner().invoke(app, ["report", "no-such-sweep", "--out", "x", "--tracking-uri", sweep_store[1]])
    assert result.exit_code != 0
    assert "no sweep named 'no-such-sweep'" in result.output and "Traceback" not in result.output
    with pytest.raises(SweepNotFound):
        load_sweep("no-such-sweep", sweep_store[1])


def test_a_partial_sweep_reports_what_is_missing(sweep_store, tmp_path):
    """Mark one trial's run as failed in the store, as an interrupted sweep leaves it: the report still renders
    and says what is missing."""
    _, uri = sweep_store
    client = MlflowClient(uri)
    victim = sweep_runs(uri, NAME)[1][0]
    client.set_terminated(victim.info.run_id, "FAILED")
    try:
        result = CliRunner().invoke(app, ["report", NAME, "--out", str(tmp_path), "--tracking-uri", uri])
        assert result.exit_code == 0, result.output
        assert "Partial sweep: 1 trial(s) FAILED" in (tmp_path / "report.md").read_text()
        assert len(pd.read_csv(tmp_path / "trials.csv")) == 8
    finally:
        client.set_terminated(victim.info.run_id, "FINISHED")
