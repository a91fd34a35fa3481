"""A trial's params read back as the trial schema types them: every key of a config round-trips through the text
MLflow stores, including the values a YAML reading gets wrong (`5e-05` stays text, `no` becomes false), and keys
the schema does not declare follow the documented literal rule."""

from __future__ import annotations

import pytest

from dreamfusion.config.files import flatten
from dreamfusion.config.schema import TrialConfig
from dreamfusion.tracking.params import logged_params, typed


def _as_read(value: object) -> object:
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"prompt": "no", "optim": {"lr_grid": 5e-05, "eps": 1e-15}, "seed": 3, "init_from": "None of these"},
        {"prompt": "1", "plugins": ["json"], "eval": {"prompt_set": ["on", "a red cube"]}, "sds": {"grad_clip": 1.0}},
    ],
)
def test_every_logged_param_reads_back_as_the_config_value(fields):
    cfg = TrialConfig.model_validate(fields)
    expected = {key: _as_read(value) for key, value in flatten(cfg).items()}
    assert {key: typed(key, text) for key, text in logged_params(cfg).items()} == expected


def test_the_types_are_the_schemas_not_the_texts():
    assert type(typed("optim.lr_grid", "5e-05")) is float
    assert typed("prompt", "no") == "no" and typed("prompt", "on") == "on" and typed("prompt", "1") == "1"
    assert type(typed("sds.guidance_scale", "20.0")) is float and type(typed("seed", "2")) is int
    assert typed("speed.fused_grid", "False") is False
    assert typed("camera.elevation", "[-10.0, 45.0]") == (-10.0, 45.0)
    assert typed("sds.grad_clip", "None") is None and typed("prompt", "None") == "None"


def test_a_value_its_schema_type_cannot_hold_is_kept_as_written():
    """A param logged under another schema (a key whose type changed since) is shown as it was, not dropped."""
    assert typed("seed", "0.5") == "0.5"
    assert typed("speed.fused_grid", "yes") == "yes"
    assert typed("camera.elevation", "['a', cut") == "['a', cut"


@pytest.mark.parametrize(
    "text, value",
    [("5e-05", 5e-05), ("3", 3), ("True", True), ("None", None), ("[1, 2]", (1, 2)), ("no", "no"), ("'x'", "'x'")],
)
def test_a_key_the_schema_does_not_declare_is_read_as_a_python_literal_or_kept(text, value):
    """Component and plugin options live on their classes: their text is what `str()` made of a JSON value."""
    assert typed("sds.timesteps.some_plugin_option", text) == value


def test_missing_values_are_left_alone():
    assert typed("seed", None) is None
