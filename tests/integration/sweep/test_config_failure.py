"""A trial whose config its worker cannot build (the trial schema refuses it) fails once and is not retried, even
under `max_failures: -1`: Tune would retry the same deterministic error forever. The launch ends, says which trial
failed on its config and that `df-sweep resume` would not help, and exits non-zero; the other trials finish.
`df-sweep status` then shows the failed trial as CONFIG_ERROR, as the launch did: Tune saved it TERMINATED."""

from __future__ import annotations

import json
from pathlib import Path

from cluster_helpers import df_sweep, finished
from sweep_helpers import sweep_runs, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app


def test_a_trial_failing_on_its_config_is_not_retried_and_the_launch_says_so(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    spec = write_spec(tmp_path / "refused.yaml", "refused", {"seed": {"grid": [0, 1]}}, max_failures=-1)
    env = {"DF_TEST_MARKERS": str(markers), "DF_SWEEP_CACHE": str(tmp_path / "cache")}
    driver = df_sweep(
        ["launch", str(spec), "--tracking-uri", uri], tmp_path, "sweep_helpers.small_world_refusing_seed_1", env
    )
    code, output = finished(driver, 300)

    assert code == 1, output
    assert len((markers / "refused").read_text().splitlines()) == 1, output  # built once: no retry
    refused = [line for line in output.splitlines() if "failed on its config" in line and line.startswith("trial ")]
    assert len(refused) == 1, output
    assert ": seed: Input should be greater than or equal to 0" in refused[0]
    assert "not retried: df-sweep resume would not help" in refused[0]
    assert "trials: 1 TERMINATED, 1 CONFIG_ERROR" in output or "trials: 1 CONFIG_ERROR, 1 TERMINATED" in output
    assert "resume: df-sweep resume" not in output
    assert "Traceback" not in output

    parents, children = sweep_runs(uri, "refused")
    by_seed = {run.data.params.get("seed", "none"): run for run in children}
    assert by_seed["0"].info.status == "FINISHED"
    failed = next(run for run in children if run is not by_seed["0"])
    assert failed.info.status == "FAILED" and "df.config_failure" in failed.data.tags
    assert "failed on its config" in failed.data.tags["df.failure"]
    assert parents[0].info.status == "FAILED"
    assert parents[0].data.tags["df.failure"] == (
        "1 failed on their config of 2 trials; fix the spec and launch again (df-sweep resume would not help)"
    )

    storage = ["--storage", str(tmp_path / "ray_results")]
    shown = CliRunner().invoke(app, ["status", "refused", "--json", *storage])
    assert shown.exit_code == 0, shown.output
    (trials,) = json.loads(shown.output)["sweeps"]
    assert trials["states"] == {"TERMINATED": 1, "CONFIG_ERROR": 1}, trials
    table = CliRunner().invoke(app, ["status", "refused", *storage]).output
    rows = table.splitlines()[1:]  # under the sweep's line of counts
    assert sum("CONFIG_ERROR" in row for row in rows) == 1 and sum("TERMINATED" in row for row in rows) == 1, table
