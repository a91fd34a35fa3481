"""The trial config: one typed schema that is the YAML file, the `--set a.b=c` overrides and the MLflow params.

Every field carries a docstring because the README's spec reference and `df-sweep validate` read them; a sweep's
search space addresses the same fields by their dotted path (`sds.timesteps.schedule`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A user mistake in a config or spec: the message is one line naming the file, the key and what was expected."""


class Schema(BaseModel):
    """Base for every config block: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


# The NeRF size presets. Parameter counts per preset are in the README table and checked by tests.
NERF_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(grid_levels=2, grid_base_resolution=8, grid_max_resolution=16, grid_features=2, mlp_width=16, mlp_depth=1),
    "small": dict(grid_levels=3, grid_base_resolution=8, grid_max_resolution=32, grid_features=4, mlp_width=32, mlp_depth=1),
    "medium": dict(grid_levels=4, grid_base_resolution=16, grid_max_resolution=64, grid_features=4, mlp_width=64, mlp_depth=2),
    "large": dict(grid_levels=5, grid_base_resolution=16, grid_max_resolution=128, grid_features=8, mlp_width=64, mlp_depth=2),
}


class NerfConfig(Schema):
    size: Literal["tiny", "small", "medium", "large"] = "small"
    """Preset that fills every size field not given explicitly."""
    grid_levels: int = Field(0, ge=1, le=8)
    """Number of levels of the dense multi-resolution feature grid."""
    grid_base_resolution: int = Field(0, ge=2, le=512)
    """Voxels per side of the coarsest level."""
    grid_max_resolution: int = Field(0, ge=2, le=512)
    """Voxels per side of the finest level; levels are spaced geometrically in between."""
    grid_features: int = Field(0, ge=1, le=32)
    """Features per voxel per level."""
    mlp_width: int = Field(0, ge=4, le=512)
    """Hidden width of the decoder MLP."""
    mlp_depth: int = Field(0, ge=0, le=8)
    """Hidden layers of the decoder MLP."""
    encoding: Literal["dense_grid", "hash_grid"] = "dense_grid"
    """`dense_grid` is pure torch (fastest measured on CPU); `hash_grid` needs tiny-cuda-nn on a CUDA GPU."""
    blob_density: float = Field(10.0, ge=0)
    """Density added at the centre by the initial blob (Magic3D-style), falling to 0 at `blob_radius`."""
    blob_radius: float = Field(0.5, gt=0)
    """Radius of the initial density blob, in scene units (the scene is the unit ball)."""

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        size = data.get("size", "small")
        preset = NERF_PRESETS.get(size)
        if preset is None:  # let the Literal report the bad preset name
            return data
        return {**preset, **data}

    @model_validator(mode="after")
    def _check_levels(self) -> NerfConfig:
        if self.grid_max_resolution < self.grid_base_resolution:
            raise ValueError("grid_max_resolution must be >= grid_base_resolution")
        return self


class ShadingMix(Schema):
    albedo: float = Field(0.2, ge=0)
    """Probability of an albedo-only (unlit) render in a training step."""
    lambertian: float = Field(0.5, ge=0)
    """Probability of a lit, coloured render (random point light)."""
    textureless: float = Field(0.3, ge=0)
    """Probability of a lit, white-albedo render: only geometry can satisfy the prior."""

    @model_validator(mode="after")
    def _not_all_zero(self) -> ShadingMix:
        if self.albedo + self.lambertian + self.textureless <= 0:
            raise ValueError("at least one shading probability must be > 0")
        return self


class RenderConfig(Schema):
    resolution: int = Field(32, ge=8, le=1024)
    """Rendered image side in pixels; the prior resizes to its own input size."""
    samples_per_ray: int = Field(48, ge=4, le=1024)
    """Stratified samples per ray inside the unit ball."""
    views_per_step: int = Field(2, ge=1, le=64)
    """Random cameras rendered per optimisation step (the SDS batch)."""
    shading: ShadingMix = ShadingMix()
    """Mix of shading modes sampled per training step."""
    background: Literal["learned", "white", "black", "random"] = "white"
    """`learned`: a small MLP of the view direction (DreamFusion); `random`: a random solid colour per step."""
    ambient: float = Field(0.45, ge=0, le=1)
    """Ambient light in lambertian and textureless shading."""
    diffuse: float = Field(0.55, ge=0, le=1)
    """Diffuse light strength in lambertian and textureless shading."""


class CameraConfig(Schema):
    elevation: tuple[float, float] = (-10.0, 45.0)
    """Range of camera elevation in degrees."""
    azimuth: tuple[float, float] = (-180.0, 180.0)
    """Range of camera azimuth in degrees; 0 is the front."""
    distance: tuple[float, float] = (2.2, 2.8)
    """Range of camera distance from the origin, in scene units."""
    fov: float = Field(40.0, gt=1, lt=170)
    """Vertical field of view in degrees."""
    view_dependent_prompt: bool = True
    """Append ", front view" / ", side view" / ", back view" / ", overhead view" to the prompt per camera."""

    @field_validator("elevation", "azimuth", "distance")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"range must be [low, high] with low <= high, got {list(v)}")
        return v


class TimestepConfig(Schema):
    schedule: Literal["uniform", "anneal", "sqrt_anneal", "dreamtime", "stratified"] = "anneal"
    """How t is drawn per step: see `dreamfusion/timesteps.py` and the README."""
    t_min: float = Field(0.02, ge=0, le=1)
    """Smallest t as a fraction of the prior's T training steps."""
    t_max: float = Field(0.98, ge=0, le=1)
    """Largest t as a fraction of T (the start value for annealed schedules)."""
    anneal_to: float = Field(0.5, ge=0, le=1)
    """`anneal`: t_max decays linearly to this value."""
    anneal_start: float = Field(0.0, ge=0, le=1)
    """`anneal`: fraction of the run at which the decay starts."""
    anneal_end: float = Field(0.5, ge=0, le=1)
    """`anneal`: fraction of the run at which t_max reaches `anneal_to`."""
    strata: int = Field(8, ge=1, le=1000)
    """`stratified`: number of equal strata of [t_min, t_max], each visited once per cycle."""
    dreamtime_m1: float = Field(800, ge=0)
    """`dreamtime`: upper end of the plateau of the prior weight, in steps of T=1000."""
    dreamtime_m2: float = Field(500, ge=0)
    """`dreamtime`: lower end of the plateau."""
    dreamtime_s1: float = Field(300, gt=0)
    """`dreamtime`: width of the Gaussian tail above m1."""
    dreamtime_s2: float = Field(100, gt=0)
    """`dreamtime`: width of the Gaussian tail below m2."""

    @model_validator(mode="after")
    def _check_range(self) -> TimestepConfig:
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be < t_max ({self.t_max})")
        if self.anneal_start > self.anneal_end:
            raise ValueError("anneal_start must be <= anneal_end")
        if self.dreamtime_m2 > self.dreamtime_m1:
            raise ValueError("dreamtime_m2 must be <= dreamtime_m1")
        return self


class SDSConfig(Schema):
    guidance_scale: float = Field(20.0, ge=0)
    """Classifier-free guidance strength, read in the convention below."""
    guidance_convention: Literal["diffusers", "paper"] = "diffusers"
    """`diffusers`: ε_u + s(ε_c − ε_u); `paper` (DreamFusion): (1 + ω)ε_c − ωε_u, so s = ω + 1."""
    weighting: Literal["sds", "uniform", "fantasia3d"] = "sds"
    """w(t): `sds` = 1 − ᾱ_t (DreamFusion σ_t²); `uniform` = 1; `fantasia3d` = sqrt(ᾱ_t)(1 − ᾱ_t)."""
    timesteps: TimestepConfig = TimestepConfig()
    """Timestep sampling schedule."""
    baseline: bool = True
    """Subtract the injected noise ε (the variance-reducing baseline); off gives w(t)·ε̂."""
    grad_clip: float | None = Field(None, gt=0)
    """Clamp each element of the SDS gradient to [-grad_clip, grad_clip]; null disables."""
    jacobian: bool = False
    """Ablation: backpropagate through the UNet (the full diffusion-loss gradient) instead of SDS."""


class OptimConfig(Schema):
    lr_grid: float = Field(0.03, gt=0)
    """Adam learning rate of the feature grid."""
    lr_mlp: float = Field(0.01, gt=0)
    """Adam learning rate of the decoder MLP."""
    lr_background: float = Field(0.01, gt=0)
    """Adam learning rate of the background MLP."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    eps: float = Field(1e-15, gt=0)
    """Adam epsilon (small, as grid encodings want)."""


class RegConfig(Schema):
    orientation: float = Field(0.01, ge=0)
    """Weight of DreamFusion's orientation loss: penalises normals facing away from the camera."""
    opacity_entropy: float = Field(0.001, ge=0)
    """Weight of the binary entropy of per-ray opacity: pushes rays to be empty or opaque."""
    density_tv: float = Field(0.0, ge=0)
    """Weight of total variation on the finest density-feature grid level (removes floaters)."""


class EvalConfig(Schema):
    every: int = Field(100, ge=1)
    """Evaluate (render eval views, score) every N steps, and at the last step."""
    views: int = Field(8, ge=1, le=64)
    """Eval views on a ring at 15° elevation."""
    turntable_frames: int = Field(24, ge=2, le=240)
    """Frames of the final turntable GIF."""
    prompt_set: list[str] | None = None
    """Prompts R-precision retrieves among; null uses the scorer's default set."""


class PriorConfig(Schema):
    kind: Literal["analytic", "toyworld", "stable-diffusion", "deepfloyd-if"] = "toyworld"
    """`toyworld`: the embedded small diffusion model of a toy world (CPU); `analytic`: its known-answer twin;
    `stable-diffusion` / `deepfloyd-if`: a diffusers pipeline (GPU)."""
    model: str | None = None
    """Hub id or local path for diffusers priors; null uses the kind's default hub id."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """`auto`: float16 on CUDA, float32 on CPU."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`prior: toyworld` or `prior: stabilityai/stable-diffusion-2-1-base` in YAML."""
        if isinstance(data, str):
            kinds = ("analytic", "toyworld", "stable-diffusion", "deepfloyd-if")
            if data in kinds:
                return {"kind": data}
            return {"kind": "deepfloyd-if" if "if-i" in data.lower() else "stable-diffusion", "model": data}
        return data


class ScoringConfig(Schema):
    model: str = "auto"
    """`auto` pairs the prior with its scorer; `analytic` scores by the analytic prior's image set; otherwise a
    transformers CLIP hub id or local path (e.g. openai/clip-vit-base-patch32)."""


class TrialConfig(Schema):
    prompt: str = "a red cube"
    """The text prompt."""
    seed: int = Field(0, ge=0)
    """Seeds the field init, cameras, noise, timesteps and shading choices."""
    steps: int = Field(400, ge=1)
    """Optimisation steps."""
    device: str = "auto"
    """`auto` (CUDA if available), `cpu`, `cuda`, `cuda:1`."""
    checkpoint_every: int = Field(100, ge=1)
    """Steps between checkpoints (field, optimiser, step and RNG state)."""
    prior: PriorConfig = PriorConfig()
    """The frozen text-to-image prior."""
    scoring: ScoringConfig = ScoringConfig()
    """The model behind clip_score and clip_r_precision."""
    nerf: NerfConfig = NerfConfig()
    """The field and its size."""
    render: RenderConfig = RenderConfig()
    """Volume rendering and shading."""
    camera: CameraConfig = CameraConfig()
    """Random training cameras."""
    sds: SDSConfig = SDSConfig()
    """Score distillation."""
    optim: OptimConfig = OptimConfig()
    """Optimiser."""
    reg: RegConfig = RegConfig()
    """Regularisers."""
    eval: EvalConfig = EvalConfig()
    """Evaluation and final renders."""

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be empty")
        return v.strip()


# ---------------------------------------------------------------------------------------------------------------
# Loading, overrides and flattening


def describe_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line per pydantic error, in the form `file: key.path: what was expected`."""
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    key = ".".join(p for p in (prefix, loc) if p) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    extra = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{extra}"


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Safe-load a YAML mapping, turning every failure into a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b=c` → ("a.b", yaml value of c): `--set sds.guidance_scale=50` gives a float, not a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. sds.guidance_scale=50")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate mappings; a shorthand string value is kept as is."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if isinstance(child, str) and part == "prior":  # `prior: toyworld` shorthand, then `--set prior.dtype=...`
            child = PriorConfig.model_validate(child).model_dump(exclude_defaults=True)
        if not isinstance(child, dict):
            child = {}
        node[part] = child
        node = child
    node[parts[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = _deep_copy(data)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(out, key, value)
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def build_trial_config(data: dict[str, Any], source: str, prefix: str = "") -> TrialConfig:
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_error(err, source, prefix)) from None


def load_trial_config(path: str | Path | None, overrides: list[str] = ()) -> TrialConfig:
    """The config of `df-sweep run`: an optional YAML file, then `--set` overrides, validated as one."""
    data = read_yaml(path) if path else {}
    source = str(path) if path else "--set"
    return build_trial_config(apply_overrides(data, list(overrides)), source)


def flatten(cfg: BaseModel | dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted-key view of a config: the MLflow params and the keys a sweep's search space addresses."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        set_dotted(nested, key, value)
    return nested


def to_yaml(cfg: TrialConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def reference(model: type[BaseModel] = TrialConfig, indent: int = 0) -> list[str]:
    """The schema as commented YAML (defaults and every field's docstring): `df-sweep config` and the README."""
    lines: list[str] = []
    pad = "  " * indent
    defaults = model()
    for name, info in model.model_fields.items():
        value = getattr(defaults, name)
        doc = " ".join((info.description or "").split())
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{'  # ' + doc if doc else ''}")
            lines += reference(type(value), indent + 1)
            continue
        rendered = json.dumps(value, ensure_ascii=False)  # JSON scalars and lists are valid YAML
        lines.append(f"{pad}{name}: {rendered}{'  # ' + doc if doc else ''}")
    return lines
