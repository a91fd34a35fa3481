"""Ramps: threestudio's `[start_step, start, end, end_step]` as a value of a float key, validated by the schema, kept
as written in dumps and params, and set to the value of each step."""

from __future__ import annotations

import math

import pytest

from dreamfusion.config.files import flatten, load_trial_config
from dreamfusion.config.ramps import Ramp, parse
from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError
from dreamfusion.tracking.params import logged_params, typed


def threestudio_c(value: list, step: int) -> float:
    """threestudio's `C(value, epoch, global_step)` for an integer end_step, written out from its definition."""
    if len(value) == 3:
        value = [0, *value]
    start_step, start_value, end_value, end_step = value
    return start_value + (end_value - start_value) * max(min(1.0, (step - start_step) / (end_step - start_step)), 0.0)


@pytest.mark.parametrize("written", [[10, 0.0, 1.0, 20], [100.0, 7.5, 50], [5, 2.0, -3.0, 6]])
@pytest.mark.parametrize("step", [0, 4, 5, 10, 11, 15, 19, 20, 21, 50, 1000])
def test_a_linear_ramp_is_threestudios(written, step):
    assert parse(written).at(step) == pytest.approx(threestudio_c(written, step), abs=1e-12)


def test_a_cosine_ramp_eases_between_the_same_end_points():
    ramp = parse({"ramp": [10, 2.0, 4.0, 30], "shape": "cosine"})
    assert ramp.at(0) == ramp.at(10) == 2.0
    assert ramp.at(30) == ramp.at(99) == 4.0
    for step in (12, 20, 25):
        frac = (step - 10) / 20
        assert ramp.at(step) == pytest.approx(2.0 + 2.0 * (1 - math.cos(math.pi * frac)) / 2, abs=1e-12)
    assert ramp.at(20) == pytest.approx(3.0)  # halfway in steps is halfway in value
    assert ramp.at(12) < parse([10, 2.0, 4.0, 30]).at(12)  # slower than linear at the start


def test_the_three_point_form_starts_at_step_0():
    assert parse([1.0, 2.0, 10]) == Ramp(start_step=0, start=1.0, end=2.0, end_step=10)


def test_a_number_is_no_ramp():
    assert parse(0.5) is None


@pytest.mark.parametrize(
    "written, message",
    [
        ([1.0, 2.0], "a ramp is"),
        ([0, 1.0, 2.0, 3, 4], "a ramp is"),
        ([1.5, 0.0, 1.0, 10], "whole steps"),
        ([0, True, 1.0, 10], "finite numbers"),
        ([0, "a", 1.0, 10], "finite numbers"),
        ([10, 0.0, 1.0, 10], "start_step < end_step"),
        ([-1, 0.0, 1.0, 10], "start_step < end_step"),
        ({"ramp": [0, 0.0, 1.0, 10], "shape": "step"}, "linear or cosine"),
        ({"ramp": [0, 0.0, 1.0, 10], "curve": "cosine"}, "only ramp and shape"),
    ],
)
def test_bad_ramps_say_what_a_ramp_is(written, message):
    with pytest.raises(ValueError, match=message):
        parse(written)


def _cfg(overrides: list[str]) -> TrialConfig:
    return load_trial_config(None, overrides)


def test_a_ramped_key_holds_the_value_of_each_step_and_dumps_as_written():
    cfg = _cfg(["reg.orientation=[10, 0.0, 1.0, 20]", "sds.guidance_scale={ramp: [100.0, 7.5, 50], shape: cosine}"])
    assert cfg.reg.orientation == 0.0 and cfg.sds.guidance_scale == 100.0  # the start values, before any step
    assert cfg.apply_ramps(15) == {"reg.orientation": 0.5, "sds.guidance_scale": pytest.approx(80.935, abs=1e-3)}
    assert cfg.reg.orientation == 0.5
    dumped = cfg.model_dump(mode="json")
    assert dumped["reg"]["orientation"] == [10, 0.0, 1.0, 20]
    assert dumped["sds"]["guidance_scale"] == {"ramp": [0, 100.0, 7.5, 50], "shape": "cosine"}
    again = TrialConfig.model_validate(dumped)
    assert again.ramps == cfg.ramps and again.reg.orientation == 0.0
    assert cfg.model_copy(deep=True).ramps == cfg.ramps


def test_a_ramp_is_one_level_of_its_param_in_a_report():
    params = logged_params(_cfg(["reg.orientation=[10, 0.0, 1.0, 20]"]))
    assert params["reg.orientation"] == "[10, 0.0, 1.0, 20]"
    assert typed("reg.orientation", params["reg.orientation"]) == "[10, 0.0, 1.0, 20]"
    assert flatten(_cfg(["reg.orientation=0.5"]))["reg.orientation"] == 0.5


def test_the_optimiser_and_the_renderer_read_ramped_keys_at_every_step():
    cfg = _cfg(["optim.lr_grid=[0, 0.03, 0.003, 10]", "render.ambient=[0.0, 1.0, 4]", "camera.fov=[0, 30.0, 60.0, 2]"])
    assert cfg.apply_ramps(1) == {"optim.lr_grid": pytest.approx(0.0273), "render.ambient": 0.25, "camera.fov": 45.0}


@pytest.mark.parametrize(
    "override, message",
    [
        ("seed=[0, 1, 2, 10]", "seed: cannot ramp (a ramp needs a float key)"),
        ("eval.every=[0, 1, 2, 3]", "eval.every: cannot ramp (a ramp needs a float key)"),
        ("export.threshold=[0, 1.0, 2.0, 10]", "export.threshold: cannot ramp (read once, not at every step)"),
        ("prior.batch_wait_ms=[0, 1.0, 2.0, 10]", "prior.batch_wait_ms: cannot ramp (read once"),
        ("sds.timesteps.t_max=[0, 0.98, 0.5, 50]", "sds.timesteps.t_max: cannot ramp (the timestep schedule fixes"),
        ("reg.orientation=[10, 0.0, 1.0, 5]", "reg.orientation: a ramp needs 0 <= start_step < end_step"),
        ("sds.guidance_scale=[0, 1.0, -1.0, 5]", "sds.guidance_scale: the ramp's end -1.0: Input should be greater"),
        ("sds.guidance_scale=[0, -1.0, 1.0, 5]", "sds.guidance_scale: Input should be greater"),
        ("render.ambient=[0, 0.5, 2.0, 5]", "render.ambient: the ramp's end 2.0"),
    ],
)
def test_a_bad_ramp_is_one_line_naming_its_key(override, message):
    with pytest.raises(ConfigError) as err:
        _cfg([override])
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_lists_of_keys_that_hold_lists_are_not_ramps():
    cfg = _cfg(["camera.elevation=[0, 10]", "plugins=[]"])
    assert cfg.camera.elevation == (0.0, 10.0) and cfg.ramps == {}


def test_ramps_survive_an_assignment_and_do_not_leak_from_a_config_that_failed():
    cfg = _cfg(["reg.orientation=[0, 0.0, 1.0, 5]"])
    cfg.steps = 7  # a validated assignment to a top-level key
    assert cfg.steps == 7 and list(cfg.ramps) == ["reg.orientation"]
    with pytest.raises(ConfigError):
        _cfg(["reg.opacity_entropy=[0, 0.0, 1.0, 5]", "steps=0"])
    assert _cfg([]).ramps == {}
