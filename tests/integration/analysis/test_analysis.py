"""The report of real small sweeps (real Ray, real MLflow on SQLite): its numbers are checked against the runs in
MLflow and against independently computed statistics, not just for the files' existence."""

from __future__ import annotations

import itertools
import math
import re

import pandas as pd
import pytest
from mlflow import MlflowClient
from sweep_helpers import ANALYSED as NAME
from sweep_helpers import ANALYSED_SHORT as SHORT
from sweep_helpers import sweep_runs
from typer.testing import CliRunner

from analysis.compare import dreamfusion_table, group_summary, mean_ci
from analysis.load import SweepNotFound, load_sweep, load_sweeps
from dreamfusion.cli import app

COLUMNS = "axis,level_a,level_b,metric,delta,ci_low,ci_high,p_adj,verdict,seeds_needed".split(",")


def test_trials_csv_has_one_row_per_run_with_the_runs_numbers(sweep_store, report):
    _, uri = sweep_store
    out, _ = report
    trials = pd.read_csv(out / "trials.csv")
    _, children = sweep_runs(uri, NAME)
    assert len(trials) == len(children) == 8
    by_id = trials.set_index("run_id")
    client = MlflowClient(uri)
    for run in children:
        row = by_id.loc[run.info.run_id]
        for metric in ("clip_score", "clip_r_precision", "clip_r_precision_geometry", "gt_iou"):
            assert row[metric] == pytest.approx(run.data.metrics[metric], rel=1e-12, abs=1e-12)
        assert row["sds.guidance_scale"] == float(run.data.params["sds.guidance_scale"])
        assert row["status"] == "FINISHED" and row["sweep"] == NAME
        assert row["component.prior"] == run.data.tags["df.component.prior"]
        # compute is the summed step time, one point per step
        history = client.get_metric_history(run.info.run_id, "step_ms")
        assert len(history) == 12
        assert row["compute_s"] == pytest.approx(sum(m.value for m in history) / 1000)


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


def test_comparisons_csv_matches_a_paired_test_computed_from_the_runs(sweep_store, report):
    """guidance 5 vs 30 on gt_iou, paired by (prompt, seed) straight from MLflow; the sign-flip p-value by
    enumerating the 16 sign patterns; with 4 pairs no p falls below 2/16, so the interval is unbounded."""
    _, uri = sweep_store
    table = pd.read_csv(report[0] / "comparisons.csv")
    assert list(table.columns[: len(COLUMNS)]) == COLUMNS
    _, children = sweep_runs(uri, NAME)
    score = {
        (r.data.params["prompt"], r.data.params["seed"], float(r.data.params["sds.guidance_scale"])): r.data.metrics[
            "gt_iou"
        ]
        for r in children
    }
    d = [score[(p, s, 5.0)] - score[(p, s, 30.0)] for p in ("a red cube", "a blue cone") for s in ("0", "1")]
    hits = sum(
        abs(sum(x * v for x, v in zip(signs, d))) >= abs(sum(d)) - 1e-12
        for signs in itertools.product((1, -1), repeat=4)
    )
    row = table[(table["axis"] == "sds.guidance_scale") & (table["metric"] == "gt_iou")].iloc[0]
    assert (row["level_a"], row["level_b"]) == ("5.0", "30.0")  # a column of mixed levels reads back as text
    assert row["delta"] == pytest.approx(sum(d) / 4)
    assert row["p_adj"] == pytest.approx(hits / 16)  # one pair of levels: Holm leaves it as is
    assert row["ci_low"] == -math.inf and row["ci_high"] == math.inf and row["verdict"] == "same"
    assert set(table["metric"]) == {"clip_r_precision", "gt_iou", "gt_colour_error"}  # the sweep's, then exact ones
    # which way is better, as the trials' runs record it (gt_colour_error's only source: no spec ranks by it)
    assert dict(zip(table["metric"], table["direction"])) == {
        "clip_r_precision": "max",
        "gt_iou": "max",
        "gt_colour_error": "min",
    }
    assert "seed" not in set(table["axis"])


def test_importance_csv_shares_of_variance_by_hand(sweep_store, report):
    _, uri = sweep_store
    table = pd.read_csv(report[0] / "importance.csv").set_index("param")["importance"]
    assert set(table.index) == {"prompt", "sds.guidance_scale", "seed"}
    _, children = sweep_runs(uri, NAME)
    frame = pd.DataFrame(
        [{"prompt": r.data.params["prompt"], "y": r.data.metrics["clip_r_precision"]} for r in children]
    )
    total = ((frame["y"] - frame["y"].mean()) ** 2).sum()
    between = sum(len(g) * (g["y"].mean() - frame["y"].mean()) ** 2 for _, g in frame.groupby("prompt"))
    assert table["prompt"] == pytest.approx(between / total if total else 0.0)


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


def test_report_pages_reference_files_that_exist_and_state_verdicts(report):
    out, output = report
    html = (out / "report.html").read_text()
    assert not re.search(r"<script[^>]+src=", html)  # plotly inlined, nothing fetched
    page = re.sub(r"<script>.*?</script>", "", html, flags=re.S)  # plotly's own source mentions its site
    for name in re.findall(r'(?:src|href)="((?!data:)[^"#]+)"', page):
        assert (out / name).is_file(), name
    assert html.count('src="turntables/') == 8
    md = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"render_grid.png", "metric_vs_sds_guidance_scale.png", "curves_loss.png"} <= set(linked)
    assert {"comparisons.png", "importance.png", "parallel_coordinates.png"} <= set(linked)
    assert all((out / name).is_file() for name in linked)
    assert "Best by" not in md and "best" not in output.lower()
    # 4 pairs cannot reach p < 0.05: the headline must say no difference was detected, with the pairing spelled out
    # and that 4 pairs could detect none of any size
    assert "No difference detected between levels of sds.guidance_scale on clip_r_precision at 95%" in output
    assert "paired over 2 prompts × 2 seeds; with so few pairs no difference could reach 95%" in output
    assert "Multiple comparisons: one Holm family per axis" in output
    assert "Downloading" not in output and "it/s" not in output  # no per-artifact progress bars


def test_render_grid_has_a_cell_per_config_and_prompt(report):
    from PIL import Image

    with Image.open(report[0] / "render_grid.png") as grid:
        width, height = grid.size
        # 2 prompts (columns) × 2 guidance scales (rows) of 128 px cells, plus the label margins
        assert (width, height) == (220 + 2 * 128, 18 + 2 * 128)
        cell = grid.crop((220 + 40, 18 + 40, 220 + 88, 18 + 88)).convert("RGB")
        assert cell.getextrema() != ((255, 255), (255, 255), (255, 255))  # a render, not an empty cell


def test_two_sweeps_say_what_differs_and_compare_on_shared_configs(sweep_store, cross_report):
    out, output = cross_report
    trials = pd.read_csv(out / "trials.csv")
    assert trials.groupby("sweep").size().to_dict() == {NAME: 8, SHORT: 4}
    settings = pd.read_csv(out / "settings.csv", dtype=str)
    steps = settings[settings["setting"] == "steps"].iloc[0]
    assert (steps[NAME], steps[SHORT]) == ("12", "8")
    lines = output.splitlines()
    before = next(i for i, line in enumerate(lines) if line.startswith("Before comparing: the sweeps differ in"))
    verdict = next(i for i, line in enumerate(lines) if "sweep" in line and "on clip_r_precision" in line)
    assert before < verdict and "steps (12 vs 8)" in lines[before]
    table = pd.read_csv(out / "comparisons.csv")
    rows = table[(table["axis"] == "sweep") & (table["metric"] == "clip_r_precision")]
    assert len(rows) == 1 and (rows.iloc[0]["level_a"], rows.iloc[0]["level_b"]) == (NAME, SHORT)
    assert rows.iloc[0]["n"] == 4  # the configs both ran: 2 prompts × 2 scales at seed 0
    both = trials[trials["seed"] == 0].pivot_table(
        index=["prompt", "sds.guidance_scale"], columns="sweep", values="clip_r_precision"
    )
    assert rows.iloc[0]["delta"] == pytest.approx((both[NAME] - both[SHORT]).mean())


def test_launches_are_selected_by_number(sweep_store):
    sweep = load_sweeps([f"{NAME}@1", f"{SHORT}@-1"], sweep_store[1], with_curves=False)
    assert sweep.labels == [f"{NAME}@1", f"{SHORT}@-1"]
    assert sweep.trials.groupby("sweep").size().to_dict() == {f"{NAME}@1": 8, f"{SHORT}@-1": 4}


@pytest.mark.parametrize(
    "names, message",
    [
        (["no-such-sweep"], "no sweep named 'no-such-sweep'"),
        ([f"{NAME}@7"], f"no launch '7' in sweep '{NAME}'"),
        ([NAME, NAME], "a sweep is named twice"),
    ],
)
def test_naming_mistakes_are_one_line_errors(sweep_store, names, message, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", *names, "--out", str(out), "--tracking-uri", sweep_store[1]])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # the progress line at most, then the error
    assert not out.exists()  # nothing written for a mistake
    if len(names) == 1:
        with pytest.raises(SweepNotFound):
            load_sweep(names[0], sweep_store[1])


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


def test_a_launch_records_its_trial_count_and_the_report_reads_it(sweep_store, report):
    """2 prompts × 2 guidance scales × 2 seeds, as the launch counted them (its `when:`-aware count)."""
    parents, _ = sweep_runs(sweep_store[1], NAME)
    assert [p.data.params["df.expected_trials"] for p in parents] == ["8"]
    assert "8 of 8 expected trials (8 finished)" in (report[0] / "report.md").read_text()
