"""`df-sweep run` never deletes or overwrites a run (real trials on the toy-world prior, real MLflow on SQLite):
without --out each run gets a new directory; a directory is continued only when it holds an unfinished run of the
same config (a Ctrl-C'd run goes on in its directory and its MLflow run); anything else is refused in one line,
with nothing written and no MLflow run left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cluster_helpers import wait_until
from mlflow import MlflowClient
from process_helpers import read_only
from sweep_helpers import TINY_RUN, set_args
from typer.testing import CliRunner

from dreamfusion.cli import app

TINY = [*TINY_RUN, *set_args(eval__every=4, checkpoint_every=4)]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(app, ["run", "--prompt", "a red cube", *TINY, *args])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _runs(workdir: Path) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("df-sweep-run")
    return client.search_runs([experiment.experiment_id]) if experiment else []


def _refused(result, expect: str) -> None:
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: --out ") and expect in lines[0], lines


def test_without_out_each_run_gets_a_directory_of_its_own(workdir):
    for _ in range(2):
        result = _run("--steps", "4")
        assert result.exit_code == 0, result.output
    made = sorted(p.name for p in (workdir / "runs").iterdir())
    assert len(made) == 2 and all(re.fullmatch(r"a-red-cube_\d{8}-\d{6}(_2)?", name) for name in made), made
    assert all((workdir / "runs" / name / "final" / "views.png").is_file() for name in made)
    assert len(_runs(workdir)) == 2


def test_a_directory_holding_another_run_is_refused_and_left_as_it_was(workdir):
    assert _run("--steps", "4", "--out", "mine").exit_code == 0
    before = _files(workdir / "mine")
    _refused(_run("--steps", "8", "--out", "mine"), "holds a run of another config (steps: 4 there, 8 here)")
    _refused(_run("--steps", "4", "--out", "mine"), "holds this run, finished")
    (workdir / "other").mkdir()
    (workdir / "other" / "notes.txt").write_text("mine")
    _refused(_run("--steps", "4", "--out", "other"), "holds files that are not a df-sweep run")
    assert _files(workdir / "mine") == before and _files(workdir / "other") == {"notes.txt": b"mine"}
    assert len(_runs(workdir)) == 1


def test_an_out_that_is_a_file_or_unwritable_fails_before_any_run(workdir):
    (workdir / "taken").write_text("a file")
    _refused(_run("--steps", "4", "--out", "taken"), "--out taken: is a file; expected a directory")
    (workdir / "locked").mkdir()
    with read_only(workdir / "locked"):
        _refused(_run("--steps", "4", "--out", "locked/run"), "--out locked/run: cannot write there")
    assert _runs(workdir) == [] and (workdir / "taken").read_text() == "a file"


def test_a_ctrl_c_run_continues_in_its_directory_and_its_mlflow_run(workdir):
    args = ["run", "--prompt", "a red cube", "--steps", "12", *TINY, "--out", "resumed"]
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "df-sweep"), *args],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until("a checkpoint", lambda: any((workdir / "resumed" / "checkpoints").glob("step_*")), 300, 0.1)
        os.killpg(run.pid, signal.SIGINT)
        _, errors = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 130 and errors.decode().strip().endswith("error: interrupted"), errors
    [interrupted] = _runs(workdir)
    assert interrupted.info.status == "FAILED"

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "run directory: resumed (continuing from step_0000" in result.output
    [run_after] = _runs(workdir)
    assert run_after.info.run_id == interrupted.info.run_id and run_after.info.status == "FINISHED"
    history = MlflowClient(f"sqlite:///{workdir / 'mlruns.db'}").get_metric_history(run_after.info.run_id, "loss")
    assert [m.step for m in history] == list(range(1, 13))
