"""The tracking store turning read-only under a running sweep (a real SQLite file made unwritable while a real
`df-sweep launch` holds a trial at step 6): the launch ends in one line and a non-zero exit, no traceback, and once
the store is writable again `df-sweep resume` finishes every trial in its own run, no step logged twice."""

from __future__ import annotations

import pytest
from cluster_helpers import df_sweep, finished, wait_until
from mlflow import MlflowClient
from process_helpers import read_only
from sweep_helpers import TINY_BASE, sweep_runs, write_spec

STEPS = TINY_BASE["steps"]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "markers").mkdir()
    return tmp_path


def _start(workdir, *args: str):
    env = {
        "DF_TEST_MARKERS": str(workdir / "markers"),
        "DF_SWEEP_CACHE": str(workdir / "cache"),
        "DF_TEST_HOLD_SEEDS": "0",
    }
    return df_sweep(list(args), workdir, "sweep_helpers.faulty_world", env)


def test_a_store_gone_read_only_mid_sweep_ends_in_one_line_and_resume_completes(workdir):
    uri = f"sqlite:///{workdir / 'mlruns.db'}"
    spec = write_spec(workdir / "ro.yaml", "read-only", {"seed": {"grid": [0, 1]}})
    driver = _start(workdir, "launch", str(spec), "--tracking-uri", uri)
    try:
        wait_until("a held trial", lambda: any((workdir / "markers").glob("*.held")), 300, 0.2)
        with read_only(workdir / "mlruns.db"):
            (workdir / "markers" / "release").touch()
            code, output = finished(driver, 300)
    finally:
        driver.stop()
    assert code == 1, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    assert last.startswith(f"error: tracking: {uri} refused to record how the sweep ended ("), last
    assert last.endswith("until df-sweep resume read-only runs with the store writable"), last

    resumed = _start(workdir, "resume", "read-only")
    code, output = finished(resumed, 300)
    assert code == 0, output
    assert "trials: 2 TERMINATED" in output and "Traceback" not in output
    parents, children = sweep_runs(uri, "read-only")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len(children) == 2 and {run.info.status for run in children} == {"FINISHED"}
    client = MlflowClient(uri)
    for run in children:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == list(range(1, STEPS + 1))
