"""Two real small sweeps in one store (real Ray, real MLflow on SQLite) and their reports, shared by the
analysis tests: `analysed` (2 prompts × 2 guidance scales × 2 seeds, 12 steps) and `analysed-short` (the same
prompts and scales, seed 0 only, 8 steps), so that a cross-sweep report has four shared configs to pair."""

from __future__ import annotations

import pytest
from sweep_helpers import ANALYSED, ANALYSED_SHORT, ANALYSED_SPACE, sweep_workdir, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory):
    """The store's folder and tracking URI. Ray runs only while the sweeps launch: a report reads MLflow alone,
    and other test modules start their own Ray."""
    path = tmp_path_factory.mktemp("analysis")
    with sweep_workdir(path):
        short = {**ANALYSED_SPACE, "seed": {"grid": [0]}}
        for name, space, steps in ((ANALYSED, ANALYSED_SPACE, 12), (ANALYSED_SHORT, short, 8)):
            spec = write_spec(path / f"{name}.yaml", name, space)
            result = CliRunner().invoke(app, ["launch", str(spec), "--set", f"base.steps={steps}"])
            assert result.exit_code == 0, result.output
    return path, f"sqlite:///{path / 'mlruns.db'}"


def write_report(sweep_store, out_name: str, *names: str) -> tuple:
    path, uri = sweep_store
    out = path / out_name
    result = CliRunner().invoke(app, ["report", *names, "--out", str(out), "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="session")
def report(sweep_store):
    return write_report(sweep_store, "report", ANALYSED)


@pytest.fixture(scope="session")
def cross_report(sweep_store):
    return write_report(sweep_store, "cross", ANALYSED, ANALYSED_SHORT)
