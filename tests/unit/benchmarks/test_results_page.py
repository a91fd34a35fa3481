"""The results page writer of the measuring scripts (`benchmarks/results_page.py`): the front matter carries what the
documentation site and a reader need (script, exact command, commit with +dirty, prior and its sha256, load average
before and after, peak memory), the body repeats it in a table before the script's Markdown, output and figures, and
a page is written whole or not at all."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).parents[3]


def _load():
    spec = importlib.util.spec_from_file_location("results_page", ROOT / "benchmarks" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_page = _load()


def front_matter(text: str) -> tuple[dict, str]:
    _, meta, body = text.split("---\n", 2)
    return yaml.safe_load(meta), body


def test_the_page_carries_its_provenance_its_markdown_its_output_and_its_figures(tmp_path, capsys):
    figure = tmp_path / "sheet.png"
    Image.new("RGB", (4, 4), "red").save(figure)
    argv = [str(ROOT / "benchmarks" / "toyworld_quality.py"), "--prompts", "6", "--set", "prompt=a red cube"]
    page = results_page.ResultsPage("example", "An example", "What it measures.", tmp_path / "results", argv)
    page.prior("toyworld", "ab" * 32)
    page.condition("torch threads", 1)
    page.print("a \x1b[36mrow\x1b[0m", "key=1.000")
    page.table(["shape", "gt_iou"], [["cube", "0.9"]])
    page.figure(figure, "the trials", "example.png")
    path = page.write()

    assert path == tmp_path / "results" / "example.md"
    assert capsys.readouterr().out == "a \x1b[36mrow\x1b[0m\nkey=1.000\n"  # the last line stays the summary
    meta, body = front_matter(path.read_text())
    assert meta["generated_by"] == "benchmarks/toyworld_quality.py"
    assert meta["command"] == "python benchmarks/toyworld_quality.py --prompts 6 --set 'prompt=a red cube'"
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", meta["commit"])
    assert (meta["prior"], meta["prior_sha256"]) == ("toyworld", "ab" * 32)
    loads = meta["load_average"]
    assert len(loads["before"]) == len(loads["after"]) == 3 and all(x >= 0 for x in loads["before"] + loads["after"])
    assert meta["peak_memory_mb"] > 0 and meta["wall_s"] >= 0
    assert body.index("# An example") < body.index("| command |") < body.index("| cube | 0.9 |")
    assert f"| prior | toyworld, sha256 `{'ab' * 32}` |" in body and "| torch threads | 1 |" in body
    assert "```text\na row\nkey=1.000\n```" in body
    assert "![the trials](img/example.png)" in body
    assert (tmp_path / "results" / "img" / "example.png").read_bytes() == figure.read_bytes()


def test_a_measurement_without_a_prior_says_so():
    page = results_page.ResultsPage("none", "No prior", "", None, ["benchmarks/nerf_ceiling.py"])
    meta, _ = front_matter(page.render())
    assert (meta["prior"], meta["prior_sha256"]) == ("none", None)


def test_no_page_writes_nothing_and_results_dir_writes_elsewhere(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    results_page.add_arguments(parser)
    monkeypatch.setattr("sys.argv", ["benchmarks/sds_step.py"])
    quiet = results_page.ResultsPage.from_args(parser.parse_args(["--no-page"]), "quiet", "Quiet", "")
    assert quiet.write() is None
    elsewhere = parser.parse_args(["--results-dir", str(tmp_path)])
    assert results_page.ResultsPage.from_args(elsewhere, "here", "Here", "").write() == tmp_path / "here.md"
    assert parser.parse_args([]).results_dir == ROOT / "docs" / "results"


def test_a_page_is_replaced_whole_or_left_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "page.md"
    results_page.write_atomic(path, b"old")
    results_page.write_atomic(path, b"new")
    assert path.read_bytes() == b"new"

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(results_page.os, "replace", fail)
    with pytest.raises(OSError):
        results_page.write_atomic(path, b"half")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.md"]  # no temporary file left behind


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    return subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True).stdout


def test_the_commit_is_head_and_dirty_when_a_tracked_file_differs(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-q", "-m", "one")
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    assert results_page.commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("not part of the tree")
    assert results_page.commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("two")
    assert results_page.commit(tmp_path) == head + "+dirty"
    outside = tmp_path.parent / "not-a-checkout"
    outside.mkdir()
    assert results_page.commit(outside) == "unknown"


def test_the_prior_of_trials_run_elsewhere_is_read_from_their_runs(tmp_path):
    """A sweep's trials ran in other processes: their runs' prior kind and sha256 tag name the page's prior; with
    `newest_launch` only the newest launch's trials count."""
    from mlflow import MlflowClient

    from dreamfusion.tracking.runs import start_parent_run
    from dreamfusion.tracking.schema import PARENT_TAG, PRIOR_HASH_TAG
    from dreamfusion.tracking.store import open_experiment

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    experiment = open_experiment(uri, "sweep")
    client = MlflowClient(uri)
    for launch, sha in (("2026-01-01_00-00-00", "ab" * 32), ("2026-01-02_00-00-00", "12" * 32)):
        parent = start_parent_run(uri, experiment, "sweep", launch, "", "name: sweep\n")
        for seed in (0, 1):
            run = client.create_run(experiment, run_name=f"seed={seed}", tags={PARENT_TAG: parent, PRIOR_HASH_TAG: sha})
            client.log_param(run.info.run_id, "prior.kind", "toyworld")
    assert results_page.runs_prior(uri, "sweep") == ("toyworld", f"{'12' * 32}, {'ab' * 32}")
    assert results_page.runs_prior(uri, "sweep", newest_launch=True) == ("toyworld", "12" * 32)
    assert results_page.runs_prior(uri, "no such sweep") == ("none", None)
