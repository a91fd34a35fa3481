"""Config errors are one line naming the key; overrides parse like YAML; flatten/unflatten round-trip; presets fill."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.config.files import (
    apply_overrides,
    flatten,
    load_trial_config,
    parse_override,
    read_yaml,
    to_yaml,
    unflatten,
)
from dreamfusion.config.schema import NERF_PRESETS, NerfConfig, SpeedConfig, TrialConfig
from dreamfusion.errors import ConfigError


def _error(path: Path | None, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as err:
        load_trial_config(path, list(overrides))
    message = str(err.value)
    assert "\n" not in message, message
    return message


def _yaml(tmp_path: Path, text: str, name: str = "trial.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- one-line errors that name the key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, key, what",
    [
        (["guidence=1"], "guidence", "unknown key"),
        (["sds.guidence_scale=50"], "sds.guidence_scale", "unknown key"),
        (["sds.timesteps.shedule=uniform"], "sds.timesteps.shedule", "unknown key"),
        (["steps=abc"], "steps", "valid integer"),
        (["render.resolution=[32]"], "render.resolution", "valid integer"),
        (["prompt=''"], "prompt", "prompt must not be empty"),
        (["prompt='   '"], "prompt", "prompt must not be empty"),
        (["sds.timesteps.t_min=0.6", "sds.timesteps.t_max=0.6"], "sds.timesteps", "t_min (0.6) must be < t_max (0.6)"),
        (["sds.timesteps.t_min=0.9", "sds.timesteps.t_max=0.5"], "sds.timesteps", "t_min (0.9) must be < t_max (0.5)"),
        (["sds.guidance_scale=-1"], "sds.guidance_scale", "greater than or equal to 0"),
        (["sds.guidance_scale=.inf"], "sds.guidance_scale", "finite number"),
        (["sds.guidance_scale=.nan"], "sds.guidance_scale", "finite number"),
        (["camera.elevation=[0, .inf]"], "camera.elevation.1", "finite number"),
        # what a shell user types: YAML reads these as strings, which a float field must not take as inf or NaN
        (["sds.guidance_scale=inf"], "sds.guidance_scale", "finite number"),
        (["sds.guidance_scale=nan"], "sds.guidance_scale", "finite number"),
        (["sds.guidance_scale=-inf"], "sds.guidance_scale", "finite number"),
        (["sds.guidance_scale=1e309"], "sds.guidance_scale", "finite number"),
        (["camera.distance=[nan, 2]"], "camera.distance.0", "finite number"),
        (
            ["checkpoint_every=150", "eval.every=100"],
            "checkpoint_every (150) must be a multiple of eval.every (100)",
            "checkpoints are saved at evaluations",
        ),
        (
            ["sds.timesteps.schedule=cosine"],
            "sds.timesteps.schedule",
            "unknown schedule 'cosine'; expected one of anneal, dreamtime, dreamtime_plateau, sqrt_anneal, stratified, "
            "uniform",
        ),
        (["nerf.size=huge"], "nerf.size", "'tiny', 'small', 'medium' or 'large'"),
        (["camera.elevation=[50, 10]"], "camera.elevation", "low <= high"),
        (
            ["sds.weighting=linear"],
            "sds.weighting",
            "unknown weighting 'linear'; expected one of fantasia3d, sds, uniform",
        ),
    ],
)
def test_override_errors_name_the_key(overrides, key, what):
    message = _error(None, overrides)
    assert message.startswith(f"--set: {key}: "), message
    assert what in message


def test_file_errors_name_the_file_and_key(tmp_path):
    path = _yaml(tmp_path, "prompt: a red cube\nsds:\n  guidence_scale: 50\n")
    assert _error(path) == f"{path}: sds.guidence_scale: unknown key"
    path = _yaml(tmp_path, "promt: a red cube\n")
    assert _error(path) == f"{path}: promt: unknown key"
    path = _yaml(tmp_path, "steps: many\n")
    assert _error(path).startswith(f"{path}: steps: Input should be a valid integer")
    path = _yaml(tmp_path, "prompt: ''\n")
    assert _error(path) == f"{path}: prompt: prompt must not be empty"


def test_several_errors_are_counted_on_the_one_line():
    message = _error(None, ["steps=abc", "seed=-1", "nope=1"])
    assert "(and 2 more)" in message


def test_malformed_yaml_reports_the_line(tmp_path):
    path = _yaml(tmp_path, "prompt: a red cube\n\tsteps: 3\n")
    message = _error(path)
    assert message.startswith(f"{path}: malformed YAML at line 2, column 1")
    path = _yaml(tmp_path, "prompt: a red cube\nsteps: 4\nsds: {guidance_scale: 5\n")
    assert "malformed YAML at line" in _error(path)


def test_a_key_given_twice_is_an_error_naming_the_line(tmp_path):
    """PyYAML keeps the last of two equal keys silently: the trial would run what the first one did not say."""
    path = _yaml(tmp_path, "prompt: a red cube\nsds:\n  guidance_scale: 50\n  guidance_scale: 20\n")
    assert _error(path) == f"{path}: line 4: guidance_scale is given twice (first at line 3); expected each key once"
    path = _yaml(tmp_path, "steps: 10\nseed: 1\nsteps: 20\n")
    assert _error(path) == f"{path}: line 3: steps is given twice (first at line 1); expected each key once"


def test_yaml_anchors_and_merges_still_read(tmp_path):
    path = _yaml(tmp_path, "x-views: &views {views: 4}\nsteps: 10\n")
    assert read_yaml(path)["x-views"] == {"views": 4}
    path = _yaml(tmp_path, "a: &a {every: 2}\nb:\n  <<: *a\n  every: 4\n")
    assert read_yaml(path)["b"] == {"every": 4}


@pytest.mark.parametrize("device", ["tpu", "cuda:-1", "cuda:one", "CPU", "gpu"])
def test_a_device_torch_cannot_run_a_trial_on_is_refused(device):
    assert (
        _error(None, [f"device={device}"]) == f"--set: device: expected auto, cpu, cuda, cuda:N or mps, got {device!r}"
    )


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_the_devices_a_trial_runs_on_are_accepted(device):
    assert load_trial_config(None, [f"device={device}"]).device == device


def test_missing_file(tmp_path):
    assert _error(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such file"


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")])
def test_non_mapping_yaml(tmp_path, text, kind):
    path = _yaml(tmp_path, text)
    assert _error(path) == f"{path}: expected a mapping of keys at the top level, got {kind}"


def test_empty_yaml_is_the_defaults(tmp_path):
    assert read_yaml(_yaml(tmp_path, "")) == {}
    assert load_trial_config(_yaml(tmp_path, "")) == TrialConfig()


# -- --set parsing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("sds.guidance_scale=50", "sds.guidance_scale", 50),
        ("sds.guidance_scale=7.5", "sds.guidance_scale", 7.5),
        ("sds.baseline=false", "sds.baseline", False),
        ("camera.view_dependent_prompt=true", "camera.view_dependent_prompt", True),
        ("camera.elevation=[0, 30]", "camera.elevation", [0, 30]),
        ("eval.prompt_set=[a red cube, a blue cone]", "eval.prompt_set", ["a red cube", "a blue cone"]),
        ("sds.grad_clip=null", "sds.grad_clip", None),
        ("prompt=a red cube", "prompt", "a red cube"),
        (" steps = 12", "steps", 12),
        ("prompt=", "prompt", ""),
    ],
)
def test_parse_override_reads_values_as_yaml(text, key, value):
    got_key, got_value = parse_override(text)
    assert got_key == key and got_value == value and type(got_value) is type(value)


@pytest.mark.parametrize("text", ["steps", "=3", " =3"])
def test_malformed_override_is_a_config_error(text):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override(text)


def test_overrides_become_typed_config_values():
    cfg = load_trial_config(
        None,
        ["sds.guidance_scale=50", "sds.baseline=false", "camera.elevation=[0, 30]", "sds.grad_clip=1e-3", "steps=12"],
    )
    assert cfg.sds.guidance_scale == 50.0 and cfg.sds.baseline is False
    assert cfg.camera.elevation == (0.0, 30.0) and cfg.steps == 12
    assert cfg.sds.grad_clip == pytest.approx(1e-3)  # YAML reads 1e-3 as a string; the float field parses it


def test_overrides_do_not_mutate_their_input():
    data = {"sds": {"guidance_scale": 20}}
    out = apply_overrides(data, ["sds.guidance_scale=50", "render.resolution=64"])
    assert data == {"sds": {"guidance_scale": 20}}
    assert out == {"sds": {"guidance_scale": 50}, "render": {"resolution": 64}}


def test_prior_shorthand_then_dotted_override(tmp_path):
    path = _yaml(tmp_path, "prior: toyworld\n")
    cfg = load_trial_config(path, ["prior.dtype=float16"])
    assert (cfg.prior.kind, cfg.prior.model, cfg.prior.dtype) == ("toyworld", None, "float16")
    cfg = load_trial_config(None, ["prior=stabilityai/stable-diffusion-2-1-base", "prior.dtype=bfloat16"])
    assert (cfg.prior.kind, cfg.prior.model, cfg.prior.dtype) == (
        "stable-diffusion",
        "stabilityai/stable-diffusion-2-1-base",
        "bfloat16",
    )
    assert load_trial_config(None, ["prior=DeepFloyd/IF-I-XL-v1.0"]).prior.kind == "deepfloyd-if"


# -- flatten / unflatten / YAML round trips -----------------------------------------------------------------------


def _custom() -> TrialConfig:
    return load_trial_config(
        None,
        [
            "prompt=a blue cone",
            "seed=3",
            "nerf.size=medium",
            "nerf.mlp_width=128",
            "sds.timesteps.schedule=dreamtime",
            "sds.guidance_convention=paper",
            "sds.grad_clip=2.5",
            "camera.elevation=[0, 30]",
            "eval.prompt_set=[a blue cone, a red cube]",
            "prior=toyworld",
            "render.shading.albedo=0.5",
        ],
    )


def test_flatten_unflatten_round_trip():
    cfg = _custom()
    flat = flatten(cfg)
    assert flat["sds.timesteps.schedule"] == "dreamtime" and flat["nerf.mlp_width"] == 128
    assert flat["render.shading.albedo"] == 0.5 and flat["camera.elevation"] == [0.0, 30.0]
    assert all(not isinstance(v, dict) for v in flat.values())
    assert TrialConfig.model_validate(unflatten(flat)) == cfg
    assert unflatten(flat) == cfg.model_dump(mode="json")


def test_yaml_round_trip(tmp_path):
    cfg = _custom()
    assert load_trial_config(_yaml(tmp_path, to_yaml(cfg))) == cfg


# -- NeRF presets -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", list(NERF_PRESETS))
def test_presets_fill_every_size_field(size):
    cfg = NerfConfig(size=size)
    assert {k: getattr(cfg, k) for k in NERF_PRESETS[size]} == NERF_PRESETS[size]


def test_default_preset_is_small():
    assert {k: getattr(NerfConfig(), k) for k in NERF_PRESETS["small"]} == NERF_PRESETS["small"]


def test_explicit_fields_override_the_preset(tmp_path):
    cfg = load_trial_config(_yaml(tmp_path, "nerf:\n  size: large\n  mlp_width: 32\n  grid_levels: 3\n")).nerf
    assert (cfg.mlp_width, cfg.grid_levels) == (32, 3)
    rest = {k: v for k, v in NERF_PRESETS["large"].items() if k not in ("mlp_width", "grid_levels")}
    assert {k: getattr(cfg, k) for k in rest} == rest


def test_grid_resolutions_must_be_ordered():
    message = _error(None, ["nerf.grid_base_resolution=64", "nerf.grid_max_resolution=32"])
    assert message.startswith("--set: nerf: ") and "grid_max_resolution must be >= grid_base_resolution" in message


def test_speedups_follow_the_environment_and_explicit_values_win(monkeypatch):
    """`DF_SWEEP_SPEEDUPS=off` (what `pytest --speedups off` sets) turns every speed switch off by default; a value
    in the config still wins, and the resolved values are what a run records."""
    switches = list(SpeedConfig.model_fields)
    monkeypatch.setenv("DF_SWEEP_SPEEDUPS", "off")
    assert not any(getattr(TrialConfig().speed, name) for name in switches)
    assert TrialConfig.model_validate({"speed": {switches[0]: True}}).speed.model_dump()[switches[0]] is True
    assert flatten(TrialConfig())[f"speed.{switches[0]}"] is False
    monkeypatch.setenv("DF_SWEEP_SPEEDUPS", "on")
    assert all(getattr(TrialConfig().speed, name) for name in switches)


# -- the CLI turns config errors into one line, exit 2 ------------------------------------------------------------


@pytest.mark.parametrize(
    "args, named",
    [
        (["run", "--prompt", ""], "prompt"),
        (["run", "--set", "nope=1"], "nope"),
        (["run", "--set", "sds.guidence_scale=3"], "sds.guidence_scale"),
        (["run", "--set", "steps"], "--set steps"),
    ],
)
def test_cli_config_error_is_one_line_exit_2(args, named, tmp_path):
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # failed before doing anything


def test_cli_missing_config_file(tmp_path):
    result = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path / 'missing.yaml'}: no such file"
