"""Every bad input of a sweep ends in one line, a non-zero exit and no traceback, with nothing started: no Ray,
no MLflow store, no experiment, no run. Plus the spec's own expansion: dry-run tables, overrides, run names."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.console.table import run_name, trial_table
from dreamfusion.evaluators.base import make_evaluator_classes
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.sweep.validate import apply_spec_overrides, load_spec

GOOD = {
    "name": "bad-input",
    "base": {"steps": 10, "nerf": {"size": "tiny"}},
    "space": {"prompt": {"grid": ["a red cube", "a blue sphere"]}},
}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _spec(tmp_path: Path, text: str | dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text if isinstance(text, str) else yaml.safe_dump(text, sort_keys=False))
    return path


def _with(**changes) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(GOOD, sort_keys=False))
    for key, value in changes.items():
        node = spec
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return spec


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fails(tmp_path: Path, args: list[str], expect: str) -> str:
    result = CliRunner().invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert expect in lines[0], lines[0]
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert not (tmp_path / "ray_results").exists()
    return lines[0]


SPEC_CASES = {
    "malformed yaml": ("name: x\nspace: {prompt: {grid: [unclosed\n", "malformed YAML at line"),
    "unknown top-level key": (_with(schedule="fifo"), "schedule: unknown key"),
    "unknown base key": (_with(base__stepz=10), "base.stepz: unknown key"),
    "unknown space key": (
        _with(space={"guidance_scale": {"grid": [10]}}),
        "space.guidance_scale: unknown trial config key; expected 'sds.guidance_scale'",
    ),
    "unknown space kind": (_with(space={"seed": {"normal": [0, 1]}}), "space.seed.normal: unknown key"),
    "wrong type in base": (_with(base__steps="many"), "base.steps: Input should be a valid integer"),
    "wrong type in tune": (_with(tune={"num_samples": "lots"}), "tune.num_samples"),
    "wrong type in space value": (
        _with(space={"sds.guidance_scale": {"grid": [20, "x"]}}),
        "space.sds.guidance_scale='x': sds.guidance_scale: Input should be a valid number",
    ),
    "empty prompt in base": (_with(base__prompt="  "), "base.prompt: prompt must not be empty"),
    "empty prompt in space": (_with(space={"prompt": {"grid": ["a red cube", ""]}}), "prompt must not be empty"),
    "empty search space": (_with(space={}), "space: expected at least one dotted key"),
    "empty grid": (_with(space={"seed": {"grid": []}}), "space.seed.grid: List should have at least 1 item"),
    "t_min >= t_max in base": (
        _with(base__sds={"timesteps": {"t_min": 0.6, "t_max": 0.4}}),
        "t_min (0.6) must be < t_max (0.4)",
    ),
    "t_min >= t_max across the space": (
        _with(space={"sds.timesteps.t_min": {"grid": [0.02, 0.5]}, "sds.timesteps.t_max": {"grid": [0.4, 0.98]}}),
        "space combination sds.timesteps.t_min=0.5, sds.timesteps.t_max=0.4",
    ),
    "negative guidance": (
        _with(space={"sds.guidance_scale": {"grid": [-1, 20]}}),
        "space.sds.guidance_scale=-1: sds.guidance_scale: Input should be greater than or equal",
    ),
    "negative guidance range": (
        _with(space={"sds.guidance_scale": {"loguniform": [-1, 20]}}),
        "loguniform: expected low > 0",
    ),
    "unknown prior name": (_with(base__prior="dall-e"), "base.prior: 'dall-e' is neither a registered prior"),
    "unknown prior kind": (
        _with(base__prior={"kind": "imagen"}),
        "base.prior.kind: unknown prior 'imagen'; expected one of analytic, deepfloyd-if",
    ),
    "prompt outside the toy world": (
        _with(space={"prompt": {"grid": ["a red cube", "a dragon"]}}),
        "'a dragon' is not known to the toyworld prior",
    ),
    "unknown metric": (
        _with(tune={"metric": "accuracy"}),
        "tune.metric: expected a metric an evaluator logs (clip_r_precision,",
    ),
    "ground-truth metric without ground truth": (
        _with(base__prior="stable-diffusion", space={"prompt": {"grid": ["a hamburger"]}}, tune={"metric": "gt_iou"}),
        "tune.metric: gt_iou is logged by the ground_truth evaluator, which does not run for prompt 'a hamburger'",
    ),
    "bad name": (_with(name="my sweep/1"), "name: String should match pattern"),
    "an option no trial's component reads": (
        _with(space={"sds.timesteps.dreamtime_m1": {"grid": [700, 800]}}),
        "space.sds.timesteps.dreamtime_m1: only the dreamtime or dreamtime_plateau schedule reads it, and no trial of "
        "the sweep selects it",
    ),
    "a float range on an integer key": (
        _with(space={"seed": {"uniform": [0, 1]}}),
        "space.seed: seed is an integer, and uniform draws floats; expected {randint: [low, high]} or a grid of "
        "integers",
    ),
    "a float range on a nested integer key": (
        _with(space={"render.resolution": {"uniform": [32, 64]}}),
        "space.render.resolution: render.resolution is an integer, and uniform draws floats",
    ),
    "a quantized range on an integer option": (
        _with(
            base__sds={"timesteps": {"schedule": "stratified"}}, space={"sds.timesteps.strata": {"quniform": [2, 8, 2]}}
        ),
        "space.sds.timesteps.strata: sds.timesteps.strata is an integer, and quniform draws floats",
    ),
    "whole floats in a grid on an integer key": (
        "name: x\nspace: {render.resolution: {grid: [32.0, 64.0]}}\n",
        "space.render.resolution: render.resolution is an integer, and the grid lists 32.0; expected "
        "{randint: [low, high]} or a grid of integers",
    ),
    "a bool in a choice on an integer key": (
        _with(space={"seed": {"choice": [0, True]}}),
        "space.seed: seed is an integer, and the choice lists True; expected {randint: [low, high]}",
    ),
    "a duplicate key": (
        "name: x\nbase: {steps: 10}\nspace: {seed: {grid: [0]}}\nbase: {steps: 20}\n",
        "spec.yaml: line 4: base is given twice (first at line 2); expected each key once",
    ),
    "a duplicate nested key": (
        "name: x\nspace:\n  seed: {grid: [0]}\n  seed: {grid: [1]}\n",
        "spec.yaml: line 4: seed is given twice (first at line 3)",
    ),
    "a device torch has no backend for here": (
        _with(base__device="tpu"),
        "base.device: expected auto, cpu, cuda, cuda:N or mps, got 'tpu'",
    ),
    "a placeholder for the run to start from": (
        _with(base__init_from="RUN_ID"),
        "base.init_from: 'RUN_ID' is neither an MLflow run id (32 hex digits) nor an existing path",
    ),
    "the opposite direction of a known metric": (
        _with(tune={"metric": "gt_colour_error", "mode": "max"}),
        "tune.mode: gt_colour_error is better when smaller; expected mode: min",
    ),
    "checkpoints between evaluations": (
        _with(base__checkpoint_every=3),
        "base: checkpoint_every (3) must be a multiple of eval.every",
    ),
    "an infinite uniform bound": (
        "name: x\nspace: {sds.guidance_scale: {uniform: [0, .inf]}}\n",
        "space.sds.guidance_scale.uniform.1: Input should be a finite number",
    ),
    "NaN in a grid": (
        "name: x\nspace: {sds.guidance_scale: {grid: [20, .nan]}}\n",
        "space.sds.guidance_scale=nan: sds.guidance_scale: Input should be a finite number",
    ),
    "an overflowing number in a choice": (
        "name: x\nspace: {sds.guidance_scale: {choice: [20, 1e309]}}\n",
        "sds.guidance_scale: Input should be a finite number",
    ),
    "an infinite tune field": (_with(tune={"reduction_factor": float("inf")}), "tune.reduction_factor: Input should"),
    "NaN in a custom resource": (_with(resources={"custom": {"node2": float("nan")}}), "resources.custom.node2"),
    "NaN in a base camera range": (_with(base__camera={"distance": [2, float("nan")]}), "base.camera.distance.1"),
    "a CLIP metric without a scorer": (
        _with(base__scoring={"model": "none"}),
        "tune.metric: clip_r_precision is computed by the scorer, and scoring.model is none; expected a metric "
        "that needs no scorer, such as gt_iou, gt_colour_error",
    ),
    "no metric at all without a scorer": (
        _with(
            base__prior="random:sd-2.1-base",
            base__scoring={"model": "none"},
            space={"prompt": {"grid": ["a hamburger"]}},
            tune={"metric": "gt_iou"},
        ),
        "which does not run for prompt 'a hamburger'; expected a metric every trial logs (this trial logs none",
    ),
    "the CLIP evaluator named without a scorer": (
        _with(base__scoring={"model": "none"}, base__eval={"evaluators": ["clip"]}, tune={"metric": "gt_iou"}),
        "eval.evaluators: clip computes its metrics with the scorer, and scoring.model is none",
    ),
    "the Jacobian ablation through a shared prior": (
        _with(base__prior={"placement": "shared"}, base__sds={"jacobian": True}),
        "sds.jacobian backpropagates through the denoiser, which a shared prior runs in another process; "
        "expected prior.placement: local",
    ),
    "an architecture that is not shipped": (
        _with(base__prior="random:sd-1.5"),
        "base.prior: 'random:sd-1.5' is neither a registered prior",
    ),
}

DREAMTIME_M1 = "sds.timesteps.dreamtime_m1"
SCHEDULE = "sds.timesteps.schedule"
GUIDANCE = "sds.guidance_scale"
CONDITION_CASES = {
    "a condition on a key the space does not vary": (
        _with(space={DREAMTIME_M1: {"grid": [700], "when": {SCHEDULE: "dreamtime"}}}),
        f"space.{DREAMTIME_M1}.when: {SCHEDULE} is not another dimension of the space",
    ),
    "a condition on a value the key never takes": (
        _with(
            space={
                SCHEDULE: {"grid": ["anneal", "dreamtime"]},
                DREAMTIME_M1: {"grid": [700], "when": {SCHEDULE: "dreamtyme"}},
            }
        ),
        f"space.{DREAMTIME_M1}.when: dreamtyme is not one of the values of {SCHEDULE} (anneal, dreamtime)",
    ),
    "a condition on a drawn range": (
        _with(space={GUIDANCE: {"uniform": [5, 50]}, "seed": {"grid": [0, 1], "when": {GUIDANCE: 5}}}),
        f"space.seed.when: {GUIDANCE} is uniform; expected a grid or choice dimension to depend on",
    ),
    "a grid under a drawn condition": (
        _with(
            space={
                SCHEDULE: {"choice": ["anneal", "dreamtime"]},
                DREAMTIME_M1: {"grid": [700], "when": {SCHEDULE: "dreamtime"}},
            }
        ),
        "a grid can depend only on a grid",
    ),
    "a chain of conditions": (
        _with(
            space={
                SCHEDULE: {"grid": ["anneal", "dreamtime"]},
                DREAMTIME_M1: {"grid": [700, 800], "when": {SCHEDULE: "dreamtime"}},
                "seed": {"grid": [0, 1], "when": {DREAMTIME_M1: 700}},
            }
        ),
        f"space.seed.when: {DREAMTIME_M1} is itself conditional",
    ),
    "two conditions on one key": (
        _with(space={"seed": {"grid": [0], "when": {SCHEDULE: "anneal", "prompt": "a red cube"}}}),
        "space.seed.when: expected one condition",
    ),
    "an option varied only where its component is not selected": (
        _with(
            space={
                SCHEDULE: {"grid": ["anneal", "dreamtime"]},
                DREAMTIME_M1: {"grid": [700], "when": {SCHEDULE: "anneal"}},
            }
        ),
        f"space.{DREAMTIME_M1}: only the dreamtime or dreamtime_plateau schedule reads it, "
        "and no trial it varies in selects it",
    ),
}

SEARCH_CASES = {
    "a grid for a model-based searcher": (
        _with(tune={"search": "optuna"}),
        "space.prompt: optuna draws every value itself and cannot cross a grid; expected {choice: [...]}",
    ),
    "a drawn dimension in a grid search": (
        _with(space={GUIDANCE: {"uniform": [5, 50]}}, tune={"search": "grid"}),
        f"space.{GUIDANCE}: search grid enumerates every dimension, and uniform draws",
    ),
    "bohb without its hyperband": (
        _with(space={"prompt": {"choice": ["a red cube"]}}, tune={"search": "bohb"}),
        "tune.scheduler: search bohb needs its HyperBand scheduler",
    ),
    "pbt with a model-based searcher": (
        _with(space={GUIDANCE: {"uniform": [5, 50]}}, tune={"search": "optuna", "scheduler": "pbt"}),
        "tune.scheduler: pbt works with search random or grid",
    ),
    "pbt with nothing to perturb": (
        _with(space={"seed": {"grid": [0, 1]}}, tune={"scheduler": "pbt"}),
        "tune.pbt.mutate: expected the space keys PBT perturbs",
    ),
    "pbt perturbing the model": (
        _with(
            space={"nerf.blob_radius": {"uniform": [0.3, 0.6]}},
            tune={"scheduler": "pbt", "pbt": {"mutate": ["nerf.blob_radius"]}},
        ),
        "tune.pbt.mutate: nerf.blob_radius: a trial continuing another's checkpoint keeps its model",
    ),
    "pbt with a dimension it does not perturb": (
        _with(
            space={"prompt": {"grid": ["a red cube", "a blue sphere"]}, GUIDANCE: {"uniform": [5, 50]}},
            tune={"scheduler": "pbt", "pbt": {"mutate": [GUIDANCE]}},
        ),
        "space.prompt: pbt: a trial that exploits another takes on its whole config",
    ),
    "pbt perturbing between checkpoints": (
        _with(
            base__checkpoint_every=100,
            base__steps=400,
            space={GUIDANCE: {"uniform": [5, 50]}},
            tune={"scheduler": "pbt", "pbt": {"mutate": [GUIDANCE], "perturbation_interval": 150}},
        ),
        "tune.pbt.perturbation_interval: 150 is not a multiple of checkpoint_every (100",
    ),
    "an unknown search": (_with(tune={"search": "tpe"}), "tune.search: Input should be 'random', 'grid'"),
}
SPEC_CASES = {**SPEC_CASES, **CONDITION_CASES, **SEARCH_CASES}


def test_an_option_is_valid_where_some_trial_selects_its_component(tmp_path):
    text = _with(
        space={
            "sds.timesteps.schedule": {"grid": ["anneal", "dreamtime"]},
            "sds.timesteps.dreamtime_m1": {"grid": [700, 800]},
        }
    )
    assert load_spec(_spec(tmp_path, text)).num_trials() == 4


def test_a_full_size_random_prior_without_a_scorer_is_valid_and_ranks_by_ground_truth(tmp_path):
    """Validation loads nothing: a 1.3 B-parameter prior is checked in a blink."""
    text = _with(
        base__prior={"kind": "stable-diffusion", "model": "random:sd-2.1-base", "placement": "shared"},
        base__scoring={"model": "none"},
        tune={"metric": "gt_iou"},
    )
    spec = load_spec(_spec(tmp_path, text))
    cfg = spec.trial_config({"prompt": "a red cube"})
    assert cfg.prior.model == "random:sd-2.1-base" and cfg.scoring.model == "none"
    names = [e.name for e in make_evaluator_classes(cfg)]
    assert "ground_truth" in names and "clip" not in names  # the toy world's exact metrics, no scorer's


def test_a_metric_gives_its_direction_when_the_spec_does_not(tmp_path):
    assert load_spec(_spec(tmp_path, _with(tune={"metric": "gt_colour_error"}))).tune.mode == "min"
    assert load_spec(_spec(tmp_path, _with(tune={"metric": "gt_iou"}))).tune.mode == "max"


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_bad_spec_fails_in_one_line_and_starts_nothing(case, tmp_path):
    text, expect = SPEC_CASES[case]
    spec = _spec(tmp_path, text)
    message = _fails(tmp_path, ["launch", str(spec)], expect)
    assert message.startswith(f"error: {spec}")
    _fails(tmp_path, ["validate", str(spec)], expect)


def _all_errors(tmp_path: Path, spec: dict) -> list[str]:
    result = CliRunner().invoke(app, ["validate", str(_spec(tmp_path, spec))])
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert all(line.startswith(f"error: {tmp_path / 'spec.yaml'}: ") for line in lines), result.output
    return lines


def test_every_mistake_is_reported_one_line_each(tmp_path):
    spec = _with(
        tune={"metric": "gt_colour_error", "mode": "max", "num_sample": 4},
        space={"guidance_scale": {"grid": [10]}, "seed": {"uniform": [0, 2]}, "prompt": {"grid": ["a red cube"]}},
    )
    lines = _all_errors(tmp_path, spec)
    assert len(lines) == 4, lines
    assert "tune.mode: gt_colour_error is better when smaller; expected mode: min" in lines[0]
    assert "tune.num_sample: unknown key" in lines[1]
    assert "space.guidance_scale: unknown trial config key; expected 'sds.guidance_scale'" in lines[2]
    assert "space.seed: seed is an integer, and uniform draws floats" in lines[3]


def test_every_bad_dimension_and_base_key_is_reported(tmp_path):
    spec = _with(
        base__steps="many",
        base__device="tpu",
        space={"render.resolution": {"uniform": [32, 64]}, "seed": {"normal": [0, 1]}},
    )
    lines = _all_errors(tmp_path, spec)
    assert "space.seed.normal: unknown key" in lines[0]
    assert any("base.steps: Input should be a valid integer" in line for line in lines), lines
    assert any("base.device: expected auto, cpu, cuda, cuda:N or mps" in line for line in lines), lines
    spec = _with(space={"render.resolution": {"uniform": [32, 64]}, "sds.guidance_scale": {"grid": [-1, 20]}})
    lines = _all_errors(tmp_path, spec)
    assert len(lines) == 2 and "space.render.resolution: render.resolution is an integer" in lines[0], lines
    assert "space.sds.guidance_scale=-1: sds.guidance_scale: Input should be greater than" in lines[1], lines


def test_an_integer_key_takes_integer_dimensions(tmp_path):
    for dimension in ({"randint": [0, 4]}, {"grid": [0, 3]}, {"choice": [1, 2]}):
        assert load_spec(_spec(tmp_path, _with(space={"seed": dimension}))).space["seed"].kind in dimension
    assert load_spec(_spec(tmp_path, _with(space={"sds.guidance_scale": {"uniform": [5, 50]}})))


def test_a_draw_is_checked_where_the_bounds_pass(tmp_path, monkeypatch):
    """Validation checks values inside a range, not only its ends: a constraint that only inner values break (here a
    stand-in, since the schema has no such field) is caught by the seeded draws."""
    from dreamfusion.sweep.space import Dimension

    inner = Dimension(uniform=(5.0, 50.0)).draws()
    assert inner and all(5 <= v < 50 for v in inner) and inner == Dimension(uniform=(5.0, 50.0)).draws()
    monkeypatch.setattr(Dimension, "draws", lambda self, n=3, seed=0: [-1.0] if self.kind == "uniform" else [])
    lines = _all_errors(tmp_path, _with(space={"sds.guidance_scale": {"uniform": [5, 50]}}))
    assert "space.sds.guidance_scale=-1.0: sds.guidance_scale: Input should be greater than" in lines[0], lines


def test_missing_spec_file(tmp_path):
    _fails(tmp_path, ["launch", str(tmp_path / "nope.yaml")], "nope.yaml: no such file")


def test_a_directory_given_as_the_spec(tmp_path):
    _fails(tmp_path, ["validate", str(tmp_path)], f"{tmp_path}: is a directory; expected a YAML file")


def test_a_trial_key_set_on_a_spec_suggests_base(tmp_path):
    message = _fails(tmp_path, ["launch", str(_spec(tmp_path, GOOD)), "--set", "steps=5"], "--set steps: ")
    assert "expected --set base.steps=" in message and str(tmp_path) not in message  # the override is to blame
    _fails(tmp_path, ["validate", str(_spec(tmp_path, GOOD)), "--set", "stepz=5"], "--set stepz: unknown spec key")


def test_a_long_prompt_is_not_repeated_whole(tmp_path):
    prompt = "a red cube " * 1000
    spec = _spec(tmp_path, _with(space={"prompt": {"grid": ["a red cube", prompt]}}))
    message = _fails(tmp_path, ["validate", str(spec)], "is not known to the toyworld prior")
    assert len(message) < 600 and "(11,000 characters)" in message
    message = _fails(tmp_path, ["run", "--prompt", prompt, "--no-tracking"], "is not known to the toyworld prior")
    assert len(message) < 600


# ---------------------------------------------------------------------------------------------------------------
# How many trials


def _grid(*sizes: int) -> dict:
    keys = ["seed", "sds.guidance_scale", "optim.lr_grid"]
    return _with(space={k: {"grid": [i + 1 for i in range(n)]} for k, n in zip(keys, sizes)})


def test_a_huge_grid_is_refused_at_once_with_its_count(tmp_path):
    """10^12 trials: enumerated, this would never end; counted from the dimensions' sizes, it is refused at once."""
    spec = _spec(tmp_path, _grid(10_000, 10_000, 10_000))
    count = "1,000,000,000,000 trials (1,000,000,000,000 grid point(s) x num_samples 1) is over the limit of 10,000"
    for args in (["validate", str(spec)], ["launch", str(spec)], ["launch", str(spec), "--dry-run"]):
        message = _fails(tmp_path, args, count)
        assert message.endswith("pass --max-trials 1000000000000 to run them all")


def test_max_trials_raises_the_limit_and_a_large_dry_run_prints_a_summary(tmp_path):
    spec = str(_spec(tmp_path, _grid(100, 200)))
    _fails(tmp_path, ["validate", spec], "20,000 trials")
    assert CliRunner().invoke(app, ["validate", spec, "--max-trials", "20000"]).exit_code == 0
    result = CliRunner().invoke(app, ["launch", spec, "--dry-run", "--max-trials", "20000"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) < 40
    assert "  seed: grid of 100 value(s) (1, 2, 3, ...)" in lines
    assert "... and 19,975 more trial(s)" in lines  # 25 rows shown
    assert lines[-1].startswith("cost: ")


def test_malformed_override(tmp_path):
    _fails(tmp_path, ["launch", str(_spec(tmp_path, GOOD)), "--set", "tune.num_samples"], "expected KEY=VALUE")


@pytest.mark.parametrize(
    "resources, expect",
    [
        ({"gpu": 1}, "GPU=1"),  # no GPU on the CPU machine; satisfiable on a GPU box, hence the next cases too
        ({"cpu": 4096}, "CPU=4096"),
        ({"cpu": 1, "custom": {"node_that_is_not_there": 1}}, "node_that_is_not_there=1"),
    ],
)
def test_unsatisfiable_resources_fail_fast(resources, expect, tmp_path):
    import torch

    if resources.get("gpu") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    spec = _spec(tmp_path, _with(resources=resources))
    message = _fails(tmp_path, ["launch", str(spec)], expect)
    assert "no node can ever run a trial" in message
    _fails(tmp_path, ["launch", str(spec), "--dry-run"], expect)


def test_unreachable_tracking_server(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    _fails(tmp_path, ["launch", str(_spec(tmp_path, GOOD)), "--tracking-uri", uri], "cannot reach an MLflow server")


def test_unreachable_tracking_uri_in_the_spec(tmp_path):
    spec = _spec(tmp_path, _with(tracking={"uri": f"http://127.0.0.1:{_closed_port()}"}))
    _fails(tmp_path, ["launch", str(spec)], "tracking.uri: cannot reach")


def test_no_ray_cluster_at_the_address(tmp_path):
    spec = str(_spec(tmp_path, GOOD))
    _fails(tmp_path, ["launch", spec, "--address", f"127.0.0.1:{_closed_port()}"], "nothing answers there")
    _fails(tmp_path, ["launch", spec, "--address", f"ray://127.0.0.1:{_closed_port()}"], "nothing answers there")


def test_sqlite_store_in_a_missing_directory(tmp_path):
    uri = f"sqlite:///{tmp_path}/no/such/dir/mlruns.db"
    _fails(tmp_path, ["launch", str(_spec(tmp_path, GOOD)), "--tracking-uri", uri], "does not exist")


def test_run_checks_the_prompt_and_the_store_before_loading_anything(tmp_path):
    _fails(tmp_path, ["run", "--prompt", "a dragon", "--steps", "1"], "'a dragon' is not known to the toyworld")
    uri = f"http://127.0.0.1:{_closed_port()}"
    _fails(tmp_path, ["run", "--steps", "1", "--tracking-uri", uri], "cannot reach an MLflow server")


# ---------------------------------------------------------------------------------------------------------------
# Expansion


def test_dry_run_prints_the_grid_and_the_sampled_dimensions(tmp_path):
    spec = _spec(
        tmp_path,
        _with(
            space={
                "prompt": {"grid": ["a red cube", "a blue sphere"]},
                "seed": {"grid": [0, 1, 2]},
                "sds.guidance_scale": {"loguniform": [5, 100]},
            },
            tune={"num_samples": 2},
        ),
    )
    result = CliRunner().invoke(app, ["launch", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "12 trials (6 grid point(s) x num_samples 2, sampling sds.guidance_scale)" in result.output
    rows = [line for line in result.output.splitlines() if "~loguniform(5, 100)" in line]
    assert len(rows) == 12 and "a blue sphere" in rows[-1]  # every trial: the 6 points, each sampled twice
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "ray_results").exists()


def test_space_overrides_address_dotted_keys():
    data = apply_spec_overrides(
        GOOD,
        [
            "space.sds.guidance_scale.grid=[10, 50]",
            "space.seed={randint: [0, 9]}",
            "tune.num_samples=3",
            "base.steps=7",
        ],
    )
    spec = SweepSpec.model_validate(data)
    assert spec.space["sds.guidance_scale"].grid == [10, 50]
    assert spec.space["seed"].randint == (0, 9)
    assert spec.tune.num_samples == 3 and spec.base["steps"] == 7
    assert spec.num_trials() == 2 * 2 * 3


def test_trial_config_and_names(tmp_path):
    spec = load_spec(
        _spec(
            tmp_path,
            _with(
                space={"prompt": {"grid": ["a red cube"]}, "sds.timesteps.schedule": {"grid": ["anneal", "uniform"]}}
            ),
        )
    )
    cfg = spec.trial_config({"prompt": "a red cube", "sds.timesteps.schedule": "uniform"})
    assert cfg.sds.timesteps.schedule == "uniform" and cfg.steps == 10 and cfg.nerf.size == "tiny"
    assert [r["sds.timesteps.schedule"] for r in trial_table(spec)] == ["anneal", "uniform"]
    assert (
        run_name({"sds.timesteps.schedule": "anneal", "prompt": "a red cube", "seed": 0})
        == "prompt=a red cube,schedule=anneal,seed=0"
    )
    assert run_name({"nerf.size": "tiny", "render.size": 1}) == "nerf.size=tiny,render.size=1"


#: What a preset needs from the user before it runs: coarse_to_fine refines the trial whose run id it is given.
PRESET_ARGS = {"coarse_to_fine.yaml": ["--set", f"base.init_from={'ab' * 16}"]}


@pytest.mark.parametrize("preset", sorted(str(p) for p in Path(__file__).parents[3].glob("sweeps/**/*.yaml")))
def test_presets_validate(preset):
    result = CliRunner().invoke(app, ["validate", preset, *PRESET_ARGS.get(Path(preset).name, [])])
    assert result.exit_code == 0, result.output


def test_the_coarse_to_fine_preset_is_refused_until_given_a_run_id():
    preset = Path(__file__).parents[3] / "sweeps" / "coarse_to_fine.yaml"
    result = CliRunner().invoke(app, ["validate", str(preset)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "base.init_from: 'RUN_ID_OF_A_COARSE_TRIAL' is neither an MLflow run id" in result.output
    assert "--set base.init_from=RUN_ID" in result.output
