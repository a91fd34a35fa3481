"""What a trial leaves to take away (weights, mesh, mp4, each switchable off), and trials that start from trials:
the same size from exactly the source's field, a larger one from the source's field grown into it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import trimesh
from sweep_helpers import TINY_BASE

from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError
from dreamfusion.export.video import count_frames
from dreamfusion.export.views import Scene
from dreamfusion.export.weights import find_weights, load_weights
from dreamfusion.toyworld.analytic import AnalyticPrior, load_analytic_prior
from dreamfusion.trial.evaluation import scene
from dreamfusion.trial.loop import run_trial
from dreamfusion.trial.state import TrialState

torch.set_num_threads(1)

#: The sweep tests' tiny trial (12 steps, 16 px, analytic prior) on a torus, with a few more turntable frames.
SOURCE = dict(
    TINY_BASE,
    prompt="a green torus",
    device="cpu",
    eval={**TINY_BASE["eval"], "turntable_frames": 4},
    export={"mesh_resolution": 32},
)
#: How close a grown field's first render is to its source's last (mean absolute difference of RGB in [0, 1], over
#: the eval ring at the source's resolution). Measured 0.0014 (tiny → medium) and 0.0009 (tiny → small, whose grids
#: nest exactly: what remains is the renderer's normal step, half the finest voxel of each size, in the shading).
GROWN_RENDER_TOLERANCE = 0.01


def config(**changes) -> TrialConfig:
    return TrialConfig.model_validate({**SOURCE, **changes})


@pytest.fixture(scope="module")
def prior() -> AnalyticPrior:
    return load_analytic_prior("cpu")


@pytest.fixture(scope="module")
def source(prior, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source")
    run_trial(config(), out, prior=prior)
    return out


def test_a_trial_leaves_weights_a_mesh_and_an_mp4(source):
    final = source / "final"
    weights = load_weights(final / "field.pt")  # weights_only: a weights file runs no code
    assert weights.step == 12 and weights.config == config()
    assert "optim" not in torch.load(final / "field.pt", weights_only=True)
    mesh = trimesh.load(final / "mesh.glb", force="mesh")
    assert len(mesh.faces) > 0 and (final / "mesh.glb").stat().st_size <= 5 << 20
    assert count_frames(final / "turntable.mp4") == SOURCE["eval"]["turntable_frames"]
    assert (final / "turntable.mp4").stat().st_size <= 2 << 20


def test_each_artifact_switches_off(prior, tmp_path):
    result = run_trial(config(steps=4, export={"weights": False, "mesh": False, "video": False}), tmp_path, prior=prior)
    assert not {"weights", "mesh", "video"} & result.artifacts.keys()
    assert sorted(p.name for p in (tmp_path / "final").iterdir()) == ["metrics.json", "turntable.gif", "views.png"]


def test_the_torus_trial_scores_its_mesh_against_the_true_shape(source):
    metrics = load_metrics(source)
    assert {"gt_chamfer", "gt_genus_error", "mesh_genus", "mesh_components", "mesh_watertight"} <= metrics.keys()
    assert metrics["gt_genus_error"] == abs(metrics["mesh_genus"] - 1)  # the true torus has genus 1
    assert 0 < metrics["gt_chamfer"] < 1


def load_metrics(out: Path) -> dict[str, float]:
    import json

    return json.loads((out / "final" / "metrics.json").read_text())


def test_same_size_starts_from_exactly_the_source_field(source):
    """init_from: the source's field weights exactly; a fresh optimiser, step 0 and the trial's own RNG."""
    cfg = config(init_from=str(source), seed=7)
    state = TrialState(cfg, torch.device("cpu"))
    state.start_from(load_weights(find_weights(source)))
    final = torch.load(source / "final" / "field.pt", weights_only=True)
    for part, module in (("field", state.field), ("background", state.background)):
        got = module.state_dict()
        assert got.keys() == final[part].keys()
        assert all(torch.equal(got[k], final[part][k]) for k in got), part
    assert state.step == 0 and state.optim.state_dict()["state"] == {}
    assert torch.equal(state.generator.get_state(), torch.Generator().manual_seed(7).get_state())


def test_a_trial_with_init_from_runs_from_the_source(prior, source, tmp_path):
    fresh = run_trial(config(steps=4), tmp_path / "fresh", prior=prior)
    started = run_trial(config(steps=4, init_from=str(source)), tmp_path / "started", prior=prior)
    again = run_trial(config(steps=4, init_from=str(source)), tmp_path / "again", prior=prior)
    assert [r["step"] for r in started.history] == list(range(1, 5))
    assert started.history[0]["loss"] != fresh.history[0]["loss"]
    assert started.metrics == again.metrics  # deterministic from the same source


@pytest.mark.parametrize("size", ["small", "medium"])
def test_a_larger_field_first_renders_as_the_source_last_did(source, size):
    weights = load_weights(find_weights(source))
    before = Scene(*weights.build(), weights.config)
    state = TrialState(config(nerf={"size": size}, init_from=str(source)), torch.device("cpu"))
    state.start_from(weights)
    after = scene(state)
    cams = before.ring(SOURCE["eval"]["views"])
    difference = (after.render(cams, "shaded") - before.render(cams, "shaded")).abs().mean()
    assert difference < GROWN_RENDER_TOLERANCE
    print(f"{size}: mean |Δrgb| {float(difference):.4f}")


def test_a_smaller_field_cannot_start_from_a_larger_one(source):
    state = TrialState(config(nerf={"size": "tiny", "mlp_width": 8}), torch.device("cpu"))
    with pytest.raises(ConfigError, match="^nerf.mlp_width: 8 is smaller"):
        state.start_from(load_weights(find_weights(source)))


def test_weights_are_found_in_a_trial_a_checkpoint_or_a_file(source, tmp_path):
    assert find_weights(source) == source / "final" / "field.pt"
    checkpoint = source / "checkpoints" / "step_000012"
    assert find_weights(checkpoint) == checkpoint / "state.pt"
    assert load_weights(checkpoint / "state.pt").config == config()  # a full checkpoint serves too
    with pytest.raises(ConfigError, match="no field weights here"):
        find_weights(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read field weights"):
        load_weights(junk)
