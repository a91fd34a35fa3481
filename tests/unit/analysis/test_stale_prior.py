"""A report says in one line when its trials ran on other weights than the prior ships now (real MLflow on SQLite):
trials of the toy-world prior whose `df.prior.sha256` tag is another sha256, or missing (runs logged before the tag),
are stale; trials on the shipped weights, and trials of a prior kind that ships no weights, are not."""

from __future__ import annotations

import itertools

import pytest
import yaml
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from typer.testing import CliRunner

from analysis.load import load_sweeps
from analysis.report import stale_prior
from dreamfusion.cli import app
from dreamfusion.toyworld.assets import shipped_sha256
from dreamfusion.tracking.runs import start_parent_run
from dreamfusion.tracking.schema import PRIOR_HASH_TAG
from dreamfusion.tracking.store import open_experiment

SHIPPED = shipped_sha256() or "0" * 64
OTHER = "ab" * 32
SPACE = {"schedule": ["uniform", "anneal"], "seed": [0, 1, 2]}


def store(path, name: str, hashes: dict[tuple[str, int], str | None], kind: str = "toyworld") -> str:
    """A sweep `name` of 6 finished trials on prior `kind`, each tagged with its sha256 from `hashes` (None: no tag,
    as runs logged before the tag)."""
    uri = f"sqlite:///{path / 'mlruns.db'}"
    spec = {"name": name, "space": {k: {"grid": v} for k, v in SPACE.items()}, "tune": {"metric": "gt_iou"}}
    experiment = open_experiment(uri, name)
    parent = start_parent_run(uri, experiment, name, "2026-01-01_00-00-00", "", yaml.safe_dump(spec))
    client = MlflowClient(uri)
    for schedule, seed in itertools.product(*SPACE.values()):
        run = client.create_run(experiment, run_name=f"schedule={schedule},seed={seed}")
        sha = hashes.get((schedule, seed), SHIPPED)
        tags = {"mlflow.parentRunId": parent, **({PRIOR_HASH_TAG: sha} if sha else {})}
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("gt_iou", 0.8 + 0.01 * seed - 0.1 * (schedule == "anneal"), 0, 10)],
            params=[Param("schedule", schedule), Param("seed", str(seed)), Param("prior.kind", kind)],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
    return uri


@pytest.fixture(scope="module")
def stale_uri(tmp_path_factory) -> str:
    """One trial on other weights, one from before the tag, four on the shipped weights."""
    return store(tmp_path_factory.mktemp("stale"), "stale", {("uniform", 0): OTHER, ("anneal", 1): None})


def test_trials_on_other_weights_or_unrecorded_ones_are_stale(stale_uri):
    line = stale_prior(load_sweeps(["stale"], stale_uri, with_curves=False), {"toyworld": SHIPPED})
    assert line is not None and line.startswith("Stale: 2 of 6 trials on the toyworld prior")
    assert f"{OTHER[:12]}…" in line and "not recorded" in line and f"shipped {SHIPPED[:12]}…" in line


def test_trials_on_the_shipped_weights_or_on_a_kind_that_ships_none_are_not(tmp_path):
    current = store(tmp_path, "current", {})
    assert stale_prior(load_sweeps(["current"], current, with_curves=False), {"toyworld": SHIPPED}) is None
    analytic = store(tmp_path, "analytic", dict.fromkeys(itertools.product(*SPACE.values())), "analytic")
    assert stale_prior(load_sweeps(["analytic"], analytic, with_curves=False), {"toyworld": SHIPPED}) is None
    assert stale_prior(load_sweeps(["analytic"], analytic, with_curves=False), {}) is None


@pytest.mark.skipif(shipped_sha256() is None, reason="the toy-world weights are not installed")
def test_df_sweep_report_prints_the_note_and_its_pages_show_it(stale_uri, tmp_path):
    """The command passes the shipped prior's sha256 (`prior_sha256.txt` beside its weights) to the report."""
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", "stale", "--out", str(out), "--tracking-uri", stale_uri])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("Stale: ")]
    assert len(notes) == 1 and "2 of 6 trials" in notes[0]
    assert notes[0] in (out / "report.md").read_text()
    assert "Stale: 2 of 6 trials" in (out / "report.html").read_text()
