"""The trial config: one typed schema that is the YAML file, the `--set a.b=c` overrides and the MLflow params.

Every field carries a docstring because `df-sweep config` and `df-sweep validate` read them; a sweep's search space
addresses the same fields by their dotted path (`sds.timesteps.schedule`). Fields that pick a component (a prior,
a schedule, a loss, ...) accept any name the registry knows, so a registered plugin is valid config at once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from dreamfusion import registry


class Schema(BaseModel):
    """Base for every config block: unknown keys are errors, assignments are validated, floats are finite."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


def _registered(kind: str):
    def check(name: str) -> str:
        registry.find(kind, name)  # a ConfigError (a ValueError) that names the known components
        return name

    return check


def _marks(kind: str) -> Any:
    """The field metadata `df-sweep config` reads to list the registered names of a component field."""
    return Field(json_schema_extra={"component": kind})


# The types of the fields that name a registered component.
PriorName = Annotated[str, AfterValidator(_registered("prior")), _marks("prior")]
ScheduleName = Annotated[str, AfterValidator(_registered("schedule")), _marks("schedule")]
WeightingName = Annotated[str, AfterValidator(_registered("weighting")), _marks("weighting")]
LossName = Annotated[str, AfterValidator(_registered("loss")), _marks("loss")]
EvaluatorName = Annotated[str, AfterValidator(_registered("evaluator")), _marks("evaluator")]


# The NeRF size presets. Parameter counts per preset are in the README table and checked by tests.
NERF_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(
        grid_levels=2, grid_base_resolution=8, grid_max_resolution=16, grid_features=2, mlp_width=16, mlp_depth=1
    ),
    "small": dict(
        grid_levels=3, grid_base_resolution=8, grid_max_resolution=32, grid_features=4, mlp_width=32, mlp_depth=1
    ),
    "medium": dict(
        grid_levels=4, grid_base_resolution=16, grid_max_resolution=64, grid_features=4, mlp_width=64, mlp_depth=2
    ),
    "large": dict(
        grid_levels=5, grid_base_resolution=16, grid_max_resolution=128, grid_features=8, mlp_width=64, mlp_depth=2
    ),
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
    schedule: ScheduleName = "anneal"
    """How t is drawn per step: a registered schedule (`df-sweep config` lists them; `dreamfusion/sds/schedules.py`)."""
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
    weighting: WeightingName = "sds"
    """w(t): `sds` = 1 − ᾱ_t (DreamFusion σ_t²); `uniform` = 1; `fantasia3d` = sqrt(ᾱ_t)(1 − ᾱ_t)."""
    loss: LossName = "sds"
    """The score-distillation residual: `sds` is DreamFusion's w(t)(ε̂ − ε) (`dreamfusion/sds/loss.py`)."""
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
    evaluators: list[EvaluatorName] | None = Field(None, json_schema_extra={"component": "evaluator"})
    """Metric producers run at each eval; null runs every registered evaluator that applies to the trial (the
    CLIP metrics always, the toy world's exact ground truth for toy-world prompts)."""


class PriorConfig(Schema):
    kind: PriorName = "toyworld"
    """`toyworld`: the embedded small diffusion model of a toy world (CPU); `analytic`: its known-answer twin;
    `stable-diffusion` / `deepfloyd-if`: a diffusers pipeline (GPU); or any registered prior."""
    model: str | None = None
    """Hub id or local path for diffusers priors; null uses the kind's default hub id."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """`auto`: float16 on CUDA, float32 on CPU."""
    front_bias: float = Field(0.0, ge=0, lt=1)
    """`analytic`: share of its world's views that look at the object head-on (|azimuth| ≤ 15°), the rest uniform:
    the photographs' bias towards an object's front (the suspected cause of the Janus problem)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """`prior: toyworld` or `prior: stabilityai/stable-diffusion-2-1-base` in YAML: a registered name, or a
        checkpoint that the prior which claims it most specifically loads."""
        if not isinstance(data, str):
            return data
        if data in registry.names("prior"):
            return {"kind": data}
        claims = {cls.name: cls.claims(data) for cls in registry.components("prior")}
        best = max(claims, key=lambda name: claims[name])
        if claims[best] == 0:
            raise ValueError(
                f"{data!r} is neither a registered prior ({', '.join(claims)}) nor a checkpoint one of them loads"
            )
        return {"kind": best, "model": data}


class ScoringConfig(Schema):
    model: str = "auto"
    """`auto` pairs the prior with its own scorer; a registered scorer's name (`analytic` scores by the analytic
    prior's image set); otherwise a transformers CLIP hub id or local path (e.g. openai/clip-vit-base-patch32)."""


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
    """Steps between checkpoints (field, optimiser, step and RNG state); a multiple of `eval.every`, because a
    checkpoint is saved with the evaluation that a sweep's scheduler reads beside it."""
    plugins: list[str] = []
    """Modules to import before the config is read, so the components they register can be named in it."""
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

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data: Any) -> Any:
        """Before any field is read: a plugin's component names are valid values of the fields below."""
        plugins = data.get("plugins") if isinstance(data, dict) else None
        if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
            registry.load_plugins(plugins)
        return data

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _checkpoints_at_evals(self) -> TrialConfig:
        if self.checkpoint_every % self.eval.every:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of eval.every "
                f"({self.eval.every}): checkpoints are saved at evaluations"
            )
        return self
