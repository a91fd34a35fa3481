"""The trial config: its schema (`schema.py`) and how files, overrides and MLflow params become it (`files.py`)."""

from dreamfusion.config.files import (
    apply_overrides,
    build_trial_config,
    describe_error,
    flatten,
    load_trial_config,
    parse_override,
    read_yaml,
    reference,
    set_dotted,
    to_yaml,
    unflatten,
)
from dreamfusion.config.schema import (
    NERF_PRESETS,
    CameraConfig,
    EvalConfig,
    NerfConfig,
    OptimConfig,
    PriorConfig,
    RegConfig,
    RenderConfig,
    Schema,
    ScoringConfig,
    SDSConfig,
    ShadingMix,
    TimestepConfig,
    TrialConfig,
)
from dreamfusion.errors import ConfigError

__all__ = [
    "NERF_PRESETS", "CameraConfig", "ConfigError", "EvalConfig", "NerfConfig", "OptimConfig", "PriorConfig",
    "RegConfig", "RenderConfig", "SDSConfig", "Schema", "ScoringConfig", "ShadingMix", "TimestepConfig",
    "TrialConfig", "apply_overrides", "build_trial_config", "describe_error", "flatten", "load_trial_config",
    "parse_override", "read_yaml", "reference", "set_dotted", "to_yaml", "unflatten",
]
