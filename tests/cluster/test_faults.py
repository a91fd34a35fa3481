"""Faults on a real two-node Ray cluster logging to a real MLflow server: a trial worker SIGKILLed mid-trial, the
driver SIGKILLed mid-sweep, a node lost mid-trial, and a trial whose prior goes NaN. Nothing is lost and nothing
is logged twice: one run per trial, each with a continuous step history.

The faults come from the worker setup hook `sweep_helpers.faulty_world`: a held trial waits at step 6 (after its
checkpoint at step 4) and says where it runs, so that the test can kill its worker or its node there. A trial
that raises and a sweep resumed after it are test_sweep_resume's; here the processes themselves die.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from cluster_helpers import Service, finished, wait_until
from mlflow import MlflowClient
from sweep_helpers import TINY_BASE, sweep_runs, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.sweep.validate import load_spec
from dreamfusion.tune.results import trial_rows
from dreamfusion.tune.storage import find_launch

STEPS = TINY_BASE["steps"]
EVALS = list(range(TINY_BASE["eval"]["every"], STEPS + 1, TINY_BASE["eval"]["every"]))


def _held(markers: Path, n: int, driver: Service) -> list[dict]:
    """The {pid, node} of the first `n` trials held at step 6, once they are."""

    def held() -> list[dict]:
        if driver.proc.poll() is not None:
            raise AssertionError(f"the sweep ended before {n} trial(s) were held:\n{driver.tail()}")
        found = [json.loads(p.read_text()) for p in markers.glob("*.held")]
        return found if len(found) >= n else []

    return wait_until(f"{n} held trial(s)", held, 120, 0.2)


def _runs(stack, name: str, key: str = "seed") -> dict[str | None, object]:
    """The sweep's runs by the value of param `key` (None: a run whose trial was stopped before it logged any)."""
    runs = sweep_runs(stack.tracking_uri, name)[1]
    by_key = {run.data.params.get(key): run for run in runs}
    assert len(by_key) == len(runs), "more than one run for a trial"
    return by_key


def _steps(stack, run, key: str = "loss") -> list[int]:
    return [m.step for m in MlflowClient(stack.tracking_uri).get_metric_history(run.info.run_id, key)]


def _assert_complete(stack, run) -> None:
    """FINISHED, with every step and every eval logged exactly once."""
    assert run.info.status == "FINISHED" and "df.failure" not in run.data.tags
    assert _steps(stack, run) == list(range(1, STEPS + 1))
    assert _steps(stack, run, "clip_score") == EVALS


def _reports(stack, name: str) -> list[dict]:
    """What the trials reported to Tune, in order (result.json of each trial of the newest launch)."""
    return [
        json.loads(line)
        for f in sorted((stack.root / "results" / name).glob("*/*/result.json"))
        for line in f.read_text().splitlines()
    ]


def test_a_killed_trial_worker_is_retried_from_its_checkpoint_into_the_same_run(stack, tmp_path):
    spec = write_spec(tmp_path / "killed.yaml", "killed-worker", {"seed": {"grid": [0]}}, max_failures=2)
    driver = stack.launch(spec, tmp_path / "markers", hold_seeds="0")
    [held] = _held(tmp_path / "markers", 1, driver)
    os.kill(held["pid"], signal.SIGKILL)
    code, output = finished(driver)
    assert code == 0, output
    [run] = _runs(stack, "killed-worker").values()
    _assert_complete(stack, run)
    reports = _reports(stack, "killed-worker")
    assert [r["step"] for r in reports] == EVALS  # the retry went on from step 4, not from the start
    assert reports[0]["worker_pid"] == held["pid"] != reports[-1]["worker_pid"]


def test_a_killed_driver_is_resumed_and_completes_the_sweep(stack, tmp_path):
    spec = write_spec(tmp_path / "orphaned.yaml", "orphaned", {"seed": {"grid": [0, 1, 2]}})
    driver = stack.launch(spec, tmp_path / "markers", hold_seeds="1,2")
    _held(tmp_path / "markers", 1, driver)
    wait_until("a finished trial in Tune's saved state", lambda: _finished_trials(stack, spec), 120)
    driver.kill()
    before = _runs(stack, "orphaned")
    # killed mid-sweep: seed 0 finished, a held seed still running (which one Tune started first varies)
    assert before["0"].info.status == "FINISHED" and "RUNNING" in {r.info.status for r in before.values()}

    resumed = stack.driver(
        ["resume", "orphaned", "--address", stack.ray.address, "--storage", stack.storage], tmp_path / "markers"
    )
    code, output = finished(resumed)
    assert code == 0, output
    assert "trials: 3 TERMINATED" in output
    status = CliRunner().invoke(app, ["status", "orphaned", "--storage", stack.storage])
    assert status.exit_code == 0 and "orphaned" in status.output and "3 TERMINATED" in status.output
    parents = sweep_runs(stack.tracking_uri, "orphaned")[0]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    after = _runs(stack, "orphaned")
    assert sorted(after) == ["0", "1", "2"]
    for run in after.values():
        _assert_complete(stack, run)
    assert after["0"].info.end_time == before["0"].info.end_time  # finished before the driver died: not rerun


def _finished_trials(stack, spec: Path) -> int:
    """Trials finished in the state Tune saved of the sweep's newest launch: what a resume starts from."""
    sweep = load_spec(spec)
    try:
        rows = trial_rows(find_launch(sweep.name, stack.storage), sweep)
    except Exception:  # nothing saved yet, or a state being written
        return 0
    return sum(row.state == "TERMINATED" for row in rows)


def test_a_trial_gone_nan_fails_with_the_reason_and_the_sweep_goes_on(stack, tmp_path):
    spec = write_spec(
        tmp_path / "nan.yaml",
        "nan",
        {"prompt": {"grid": ["a red cube", "a blue sphere"]}},
        # patience 1: the first non-finite step fails the trial, before its first checkpoint, so the retry starts
        # from the same state and is refused (the patience itself is tested in tests/unit/trial)
        base={**TINY_BASE, "prior": "test-nan-prompt", "plugins": ["sweep_helpers"], "sds": {"nonfinite_patience": 1}},
    )
    code, output = finished(stack.launch(spec, tmp_path / "markers", nan_prompt="a blue sphere"))
    assert code == 1, output
    runs = _runs(stack, "nan", "prompt")
    _assert_complete(stack, runs["a red cube"])
    failed = runs["a blue sphere"]
    assert failed.info.status == "FAILED"
    assert failed.data.tags["df.failure"].startswith("FloatingPointError: prior prediction became non-finite")
    # max_failures 1: Tune's retry restarts the trial, which stops at once instead of diverging a second time
    assert "(not run again: the previous attempt diverged" in failed.data.tags["df.failure"]
    parent = sweep_runs(stack.tracking_uri, "nan")[0][0]
    assert parent.info.status == "FAILED" and "1 errored of 2 trials" in parent.data.tags["df.failure"]


def test_a_lost_node_has_its_trial_rescheduled_on_the_other(stack, tmp_path):
    stack.ray.ensure_node2()
    head, node2 = sorted(stack.ray.nodes(), key=lambda node: node == stack.ray.node2_id())
    spec = write_spec(tmp_path / "lost.yaml", "lost-node", {"seed": {"grid": [0, 1]}}, max_failures=2)
    driver = stack.launch(spec, tmp_path / "markers", hold_seeds="0,1")
    held = _held(tmp_path / "markers", 2, driver)
    assert sorted(h["node"] for h in held) == sorted([head, node2])  # one trial on each node
    stack.ray.node2.kill()
    (tmp_path / "markers" / "release").touch()
    code, output = finished(driver)
    assert code == 0, output
    runs = _runs(stack, "lost-node")
    for run in runs.values():
        _assert_complete(stack, run)
        assert run.data.tags["df.node"] == head  # the lost node's trial ran its last part on the head
