"""Taking a sweep's results away, end to end on a real local Ray and a real MLflow SQLite store: every child run
holds its weights, mesh and mp4 and its provenance; `df-sweep export` makes a mesh and a video from a run id;
`run --from-run` re-runs a trial with its config; a second sweep starts from a first one's trial (`init_from`);
`df-sweep gc` frees the heavy artifacts of all but the best."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import trimesh
from mlflow import MlflowClient
from sweep_helpers import render_steps, run_artifacts, set_args, sweep_runs, sweep_workdir, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.export.video import count_frames

NAME = "takeaway"
SPACE = {"prompt": {"grid": ["a green torus", "a red cube"]}}
HEAVY = {"final/field.pt", "final/mesh.glb", "final/turntable.mp4"}
REPO = Path(__file__).parents[3]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("takeaway")
    with sweep_workdir(path):
        yield path


@pytest.fixture(scope="module")
def launched(workdir):
    spec = write_spec(workdir / "takeaway.yaml", NAME, SPACE, tune={"metric": "gt_iou"})
    result = CliRunner().invoke(app, ["launch", str(spec)])
    assert result.exit_code == 0, result.output
    uri = f"sqlite:///{workdir / 'mlruns.db'}"
    parents, children = sweep_runs(uri, NAME)
    return uri, parents[0], {c.data.params["prompt"]: c for c in children}


def test_every_child_run_holds_weights_mesh_and_mp4(launched):
    uri, _, children = launched
    client = MlflowClient(uri)
    for run in children.values():
        assert HEAVY <= run_artifacts(client, run.info.run_id)
    assert "mesh_genus" in children["a green torus"].data.metrics
    assert "gt_chamfer" in children["a green torus"].data.metrics


def test_renders_go_to_the_image_viewer_by_step(launched):
    uri, _, children = launched
    assert render_steps(MlflowClient(uri), children["a red cube"].info.run_id) == [4, 8, 12]


def test_every_run_records_the_source_commit_and_versions(launched):
    uri, parent, children = launched
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    for run in [parent, *children.values()]:
        tags = run.data.tags
        assert tags["df.git.commit"] == tags["mlflow.source.git.commit"] == commit.strip()
        assert tags["df.package.torch"] == torch.__version__
        # the driver's own command line: here pytest's, which ran `launch` in-process
        assert tags["df.command"] == shlex.join(sys.argv) and tags["df.git.dirty"] in ("true", "false")
    for run in children.values():
        assert len(run.data.tags["df.prior.sha256"]) == 64 and run.data.tags["df.device"].startswith("cpu")


def test_export_makes_a_mesh_and_a_video_from_a_run_id(launched, tmp_path):
    _, _, children = launched
    run_id = children["a green torus"].info.run_id
    args = ["export", run_id, "--out", str(tmp_path), "--mesh", "glb", "--video", "mp4"]
    small = ["--resolution", "32", "--frames", "4", "--views", "1", "--mesh-resolution", "32", "--samples", "16"]
    result = CliRunner().invoke(app, [*args, *small])
    assert result.exit_code == 0, result.output
    mesh = trimesh.load(tmp_path / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0
    assert count_frames(tmp_path / "turntable.mp4") == 4
    assert sorted(p.name for p in (tmp_path / "renders").iterdir()) == [
        f"{mode}_0.png" for mode in ("albedo", "depth", "normals", "shaded", "textureless")
    ]


def test_export_of_an_unknown_run_is_one_line(launched, tmp_path):
    result = CliRunner().invoke(app, ["export", "0" * 32, "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: SOURCE: no run 000") and len(result.output.splitlines()) == 1


def test_run_from_run_reruns_with_exactly_its_config(launched, tmp_path):
    uri, _, children = launched
    source = children["a red cube"]
    result = CliRunner().invoke(app, ["run", "--from-run", source.info.run_id, "--out", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    assert "differs from run" not in result.output  # the same code and packages
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("df-sweep-run")
    [rerun] = client.search_runs([experiment.experiment_id], f"tags.`df.from_run` = '{source.info.run_id}'")
    assert rerun.data.params == source.data.params
    assert rerun.data.metrics["gt_iou"] == source.data.metrics["gt_iou"]  # same seed, config and machine


def test_a_sweep_starts_from_a_trial_of_another(launched, workdir):
    uri, _, children = launched
    source = children["a green torus"].info.run_id
    spec = write_spec(workdir / "stage2.yaml", "stage2", {"prompt": {"grid": ["a green torus"]}})
    result = CliRunner().invoke(app, ["launch", str(spec), *set_args(base__init_from=source, base__nerf__size="small")])
    assert result.exit_code == 0, result.output
    [run] = sweep_runs(uri, "stage2")[1]
    assert run.info.status == "FINISHED" and run.data.tags["df.init_run"] == source
    assert run.data.params["init_from"] == source and run.data.params["nerf.size"] == "small"


def test_gc_keeps_the_best_and_frees_the_rest(launched, tmp_path):
    uri, _, children = launched
    best = max(children.values(), key=lambda r: r.data.metrics["gt_iou"])
    other = next(r for r in children.values() if r is not best)
    result = CliRunner().invoke(app, ["gc", NAME, "--keep-best", "1"])
    assert result.exit_code == 0, result.output
    assert other.info.run_id in result.output and "freed" in result.output
    client = MlflowClient(uri)
    assert HEAVY <= run_artifacts(client, best.info.run_id)
    left = run_artifacts(client, other.info.run_id)
    assert not HEAVY & left and {"final/views.png", "config.yaml"} <= left
    assert "kept the best 1 by gt_iou" in client.get_run(other.info.run_id).data.tags["df.gc"]
    gone = CliRunner().invoke(app, ["export", other.info.run_id, "--out", str(tmp_path)])
    assert gone.exit_code == 2 and "deleted by df-sweep gc" in gone.output
