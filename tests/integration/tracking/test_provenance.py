"""Provenance against the truth of this checkout (git itself), of a copy of the package outside any checkout (an
installed wheel, a worker's shipped code), and a run that goes on under changed code, in a real MLflow store."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mlflow import MlflowClient

from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.provenance import Provenance, collect
from dreamfusion.tracking.store import open_experiment

REPO = Path(__file__).parents[3]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout


def test_this_checkout_is_recorded_as_git_sees_it():
    tags = collect(["df-sweep", "launch", "x.yaml"]).tags
    assert tags["df.git.commit"] == tags["mlflow.source.git.commit"] == git("rev-parse", "HEAD").strip()
    dirty = bool(git("status", "--porcelain", "--untracked-files=normal").strip())
    assert tags["df.git.dirty"] == str(dirty).lower() and ("df.git.diff_sha256" in tags) == dirty
    assert tags["df.command"] == "df-sweep launch x.yaml" and tags["df.version"] == metadata.version("df-sweep")
    assert tags["df.package.mlflow"] == metadata.version("mlflow")


def test_a_copy_outside_a_checkout_records_its_version_only(tmp_path):
    """From inside the repository as working directory: the commit is the package's, never the cwd's. (The editable
    install's import hook is dropped in the child, so that it imports the copy, as from an installed wheel.)"""
    shutil.copytree(REPO / "dreamfusion", tmp_path / "dreamfusion", ignore=shutil.ignore_patterns("weights", "*.png"))
    code = (
        "import sys, json; sys.meta_path = [f for f in sys.meta_path if '__editable__' not in f.__module__]; "
        "import dreamfusion; assert dreamfusion.__file__.startswith(sys.argv[1]), dreamfusion.__file__; "
        "from dreamfusion.tracking.provenance import collect; print(json.dumps(collect().tags))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO / "sweeps",  # inside the checkout, where `-c` puts the cwd first on sys.path
        env={"PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    tags = json.loads(out.stdout.splitlines()[-1])
    assert "df.git.commit" not in tags and "mlflow.source.git.commit" not in tags
    assert tags["df.version"] == metadata.version("df-sweep")


def test_a_run_continued_under_other_code_records_the_change(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    experiment = open_experiment(uri, "provenance")
    before = Provenance({"df.git.commit": "a" * 40, "df.git.dirty": "false", "df.package.torch": "2.13.0"})
    after = Provenance({"df.git.commit": "b" * 40, "df.git.dirty": "true", "df.package.torch": "2.13.0"}, "diff\n")
    with TrialTracker(uri, experiment, provenance=before).run("trial", "t", continue_existing=False) as first:
        run_id = first.run_id
    for _ in range(2):  # a second resume under the same new code adds nothing
        with TrialTracker(uri, experiment, provenance=after).run("trial", "t", continue_existing=True) as again:
            assert again.run_id == run_id
    run = MlflowClient(uri).get_run(run_id)
    assert (
        run.data.tags["df.code_changed"] == "continued: git.commit aaaaaaaaaaaa → bbbbbbbbbbbb, git.dirty false → true"
    )
    assert run.data.tags["df.git.commit"] == "b" * 40
    assert [a.path for a in MlflowClient(uri).list_artifacts(run_id, "provenance")] == ["provenance/changed_1.diff"]
