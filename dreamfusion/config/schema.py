"""The trial config: one typed schema that is the YAML file, the `--set a.b=c` overrides and the MLflow params.

Every field carries a docstring because `df-sweep config` and `df-sweep validate` read them; a sweep's search space
addresses the same fields by their dotted path (`sds.timesteps.schedule`). The blocks of the scene (`scene.py`) and
of score distillation (`sds.py`) are defined beside this module and importable from it.
"""

from __future__ import annotations

import copy
import os
import re
from contextvars import ContextVar
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_serializer, model_validator

from dreamfusion import registry
from dreamfusion.config import ramps
from dreamfusion.config.base import EvaluatorName, PriorName, Schema, Selecting
from dreamfusion.config.scene import NERF_PRESETS, CameraConfig, NerfConfig, RenderConfig, ShadingMix
from dreamfusion.config.sds import SDSConfig, TimestepConfig
from dreamfusion.errors import ConfigError, shorten

__all__ = [
    "NERF_PRESETS",
    "CameraConfig",
    "EvalConfig",
    "ExportConfig",
    "NerfConfig",
    "OptimConfig",
    "PriorConfig",
    "RegConfig",
    "RenderConfig",
    "SDSConfig",
    "Schema",
    "ScoringConfig",
    "ShadingMix",
    "TimestepConfig",
    "TrialConfig",
]


#: The ramps `TrialConfig._take_ramps` found in the config being validated, for its `_keep_ramps`.
_TAKEN: ContextVar[dict[str, ramps.Ramp] | None] = ContextVar("taken_ramps", default=None)

#: The devices `device` accepts: what `torch.device` takes and a trial can run on (`auto` picks CUDA or the CPU).
DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")


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
    sparsity: float = Field(0.0, ge=0)
    """Weight of the mean of sqrt(opacity² + 0.01) over pixels: pushes rays to be empty (threestudio's
    `lambda_sparsity`, 1 in its dreamfusion configs)."""


class EvalConfig(Selecting):
    """Evaluation, and the options of the registered evaluators."""

    selects = {"evaluators": "evaluator"}

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


#: The values `DF_SWEEP_SPEEDUPS` takes, each meaning on (True) or off; any other is refused, not read as on.
SPEEDUPS_VALUES = {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False}


def _speedups_default() -> bool:
    """`DF_SWEEP_SPEEDUPS=off` in the environment turns every speed-up off by default (tests run both ways)."""
    value = os.environ.get("DF_SWEEP_SPEEDUPS", "on")
    if value.lower() not in SPEEDUPS_VALUES:
        raise ConfigError(f"DF_SWEEP_SPEEDUPS={value}: expected one of {', '.join(SPEEDUPS_VALUES)}")
    return SPEEDUPS_VALUES[value.lower()]


def _speedup(on: Any, off: Any) -> Any:
    """A speed switch: `on` by default, `off` with `DF_SWEEP_SPEEDUPS=off`; the off value is kept on the field so
    that benchmarks can turn every switch off by name (`SpeedConfig.off`)."""
    return Field(default_factory=lambda: on if _speedups_default() else off, json_schema_extra={"off": off})


class SpeedConfig(Schema):
    """Ways to make a trial cheaper; each can be switched off to measure what it buys (`benchmarks/sds_step.py`,
    `benchmarks/trial_cost.py`), and `DF_SWEEP_SPEEDUPS=off` makes every one default to off. Some leave the maths
    alone bit for bit; the others round in another order or compute the same quantity another way, a trade whose
    effect on quality is measured, paired, by `trial_cost.py` (docs/results/trial-cost.md)."""

    @classmethod
    def off(cls, names: list[str] | None = None) -> dict[str, Any]:
        """The off value of the named switches (all by default), as `speed.<name>` overrides."""
        fields = cls.model_fields
        return {f"speed.{n}": fields[n].json_schema_extra["off"] for n in names or fields}  # type: ignore[index]

    shared_eval_pass: bool = _speedup(True, False)
    """Render an evaluation's colour, geometry and albedo views from one pass through the field: bit for bit the
    same images as three separate renders."""
    fused_grid: bool = _speedup(True, False)
    """Read every level of the dense grid in one gather of each point's 8 corners instead of one `grid_sample` per
    level, with a cheaper backward: the same trilinear maths, rounded in another order."""
    analytic_normals: bool = _speedup(True, False)
    """Normals from the field's closed-form gradient (a trilinear grid's derivative read from the same 8 corners,
    carried through the decoder) instead of finite differences, which cost three more field reads per visible
    sample: a trade of maths, measured by `benchmarks/trial_cost.py`."""
    shared_trunk: bool = _speedup(True, False)
    """Guidance asks the prior for ε̂ of the same noisy image under two texts: a prior that can (the toy prior)
    computes the part of its UNet before the text first enters once and widens the batch there, a third of the
    guided batch's cost. The same maths; bit for bit the same ε̂ at two or more views per step on the machines
    tested (`tests/unit/toyworld/test_plain_models.py`), rounded otherwise at one."""


class ExportConfig(Schema):
    """What a trial leaves to take away, each switchable off (`df-sweep export` makes more from a logged trial)."""

    weights: bool = True
    """Write the final field's weights (`final/field.pt`, no optimiser state): what `export` and `init_from` read."""
    mesh: bool = True
    """Write the final surface by marching cubes (`final/mesh.<mesh_format>`, vertex colours from the albedo)."""
    mesh_format: Literal["glb", "obj", "ply"] = "glb"
    """glb (binary glTF: Blender, three.js, the MLflow UI's download), obj or ply."""
    mesh_resolution: int = Field(64, ge=16, le=512)
    """Marching-cubes grid points per side over [-1, 1]³ (also the grid of the toy world's mesh scores)."""
    threshold: float = Field(5.0, gt=0)
    """Density of the mesh's surface: where the initial blob is half opaque head-on (`dreamfusion/export/mesh.py`)."""
    mesh_max_mb: float = Field(5.0, gt=0)
    """Size cap of the mesh file: a larger mesh is extracted again on a coarser grid until it fits."""
    video: bool = True
    """Write an mp4 turntable (`final/turntable.mp4`, H.264) in lit colour."""
    video_frames: int | None = Field(None, ge=2, le=720)
    """Frames of the mp4 (one full turn); null: the GIF's frames (`eval.turntable_frames`), rendered once for both."""
    video_resolution: int | None = Field(None, ge=16, le=2048, multiple_of=2)
    """Side of the mp4's frames in pixels (even); null: the GIF's, shown enlarged. 48 frames at 128 px cost about
    800 training renders at 32 px: a trial's own mp4 stays small, `df-sweep export` makes the large one."""
    video_fps: int = Field(12, ge=1, le=120)
    """Frames per second of the mp4."""
    video_max_mb: float = Field(2.0, gt=0)
    """Size cap of the mp4: a larger one is encoded again at a lower quality until it fits."""


class PriorConfig(Selecting):
    """The prior, and the options of the registered priors."""

    selects = {"kind": "prior"}

    kind: PriorName = "toyworld"
    """`toyworld`: the embedded small diffusion model of a toy world (CPU); `analytic`: its known-answer twin;
    `stable-diffusion` / `deepfloyd-if`: a diffusers pipeline (GPU); or any registered prior."""
    model: str | None = None
    """Hub id or local path for diffusers priors, or a full-size architecture with random weights and no download
    (`random:sd-2.1-base`, `random:if-i-xl`: for speed and memory, with `scoring.model: none`); null uses the
    kind's default hub id."""
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    """`auto`: float16 on CUDA, float32 on CPU."""
    placement: Literal["local", "shared"] = "local"
    """In a sweep: `local` loads the whole prior in each trial worker; `shared` runs one prior service per node (per
    GPU) that holds the text encoder and denoiser once and batches the ε̂ requests of every trial there, while each
    trial keeps only the image codec (SD's VAE). `df-sweep run` always loads it locally."""
    max_batch: int = Field(8, ge=1)
    """`shared`: most trials' requests stacked into one denoiser call; 1 runs each request alone, as a local prior
    would (identical results), larger values trade a little kernel-level float difference for throughput."""
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    """`shared`: how long the service waits, after a request arrives, for others to batch with it."""

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


class ScoringConfig(Selecting):
    """The scorer, and the options of the registered scorers."""

    selects = {"model": "scorer"}

    model: str = "auto"
    """`auto` pairs the prior with its own scorer; a registered scorer's name (`analytic` scores by the analytic
    prior's image set); otherwise a transformers CLIP hub id or local path (e.g. openai/clip-vit-base-patch32)."""


class TrialConfig(Schema):
    prompt: str = "a red cube"
    """The text prompt."""
    seed: int = Field(0, ge=0)
    """Seeds the field init, cameras, noise, timesteps and shading choices."""
    steps: int = Field(100, ge=1)
    """Optimisation steps. 100: the toy world's default trial reaches the final `gt_iou` of 400 steps at under a
    third of the CPU time (`benchmarks/trial_cost.py`)."""
    device: str = "auto"
    """`auto` (CUDA if available), `cpu`, `cuda`, `cuda:1`, or `mps` (Apple silicon): the torch devices a trial can
    run on."""
    checkpoint_every: int = Field(100, ge=1)
    """Steps between checkpoints (field, optimiser, step and RNG state); a multiple of `eval.every`, because a
    checkpoint is saved with the evaluation that a sweep's scheduler reads beside it."""
    plugins: list[str] = []
    """Modules to import before the config is read, so the components they register can be named in it."""
    init_from: str | None = Field(None, min_length=1)
    """Start from another trial's field (an MLflow run id, a trial or checkpoint directory, a weights file) with a fresh
    optimiser, step 0 and this trial's seed; a larger `nerf` grows the source into it (`dreamfusion/nerf/grow.py`)."""
    prior: PriorConfig = Field(default_factory=PriorConfig)
    """The frozen text-to-image prior."""
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    """The model behind clip_score and clip_r_precision."""
    nerf: NerfConfig = Field(default_factory=NerfConfig)
    """The field and its size."""
    render: RenderConfig = Field(default_factory=RenderConfig)
    """Volume rendering and shading."""
    camera: CameraConfig = Field(default_factory=CameraConfig)
    """Random training cameras."""
    sds: SDSConfig = Field(default_factory=SDSConfig)
    """Score distillation."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """Optimiser."""
    reg: RegConfig = Field(default_factory=RegConfig)
    """Regularisers."""
    eval: EvalConfig = Field(default_factory=EvalConfig)
    """Evaluation and final renders."""
    speed: SpeedConfig = Field(default_factory=SpeedConfig)
    """Speed-ups of the same computation (`DF_SWEEP_SPEEDUPS=off` turns them all off by default)."""
    export: ExportConfig = Field(default_factory=ExportConfig)
    """The final artifacts to take away: weights, mesh, mp4."""

    #: Keys written as ramps (`config/ramps.py`), by dotted key: their fields hold the value of the current step.
    _ramps: dict[str, ramps.Ramp] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _take_ramps(cls, data: Any) -> Any:
        """A key written as a ramp is validated with its start value, then (`_keep_ramps`) with its end value: a
        ramp between two valid values stays valid. The ramps found pass to `_keep_ramps` through `_TAKEN`, not
        around the handler of a wrap validator, inside which an error the defaults raise would be reworded."""
        found = None
        if isinstance(data, dict):
            data = copy.deepcopy(data)
            found = ramps.take(data, lambda key: ramps.refusal(cls, key))
        _TAKEN.set(found)  # always: what a validation that failed left there is not read by the next
        return data

    @model_validator(mode="after")
    def _keep_ramps(self) -> TrialConfig:
        found = _TAKEN.get()
        _TAKEN.set(None)
        if found:  # none on an assignment to a top-level key: the ramps stay
            for key, ramp in found.items():
                ramps.check_end(self, key, ramp)
            self._ramps = found
        return self

    @model_serializer(mode="wrap")
    def _ramps_as_written(self, handler: Any) -> Any:
        dumped = handler(self)
        return ramps.inline(dumped, self._ramps) if isinstance(dumped, dict) else dumped

    @property
    def ramps(self) -> dict[str, ramps.Ramp]:
        return dict(self._ramps)

    def apply_ramps(self, step: int) -> dict[str, float]:
        """Every ramped key set to its value at `step` (0-based, the step about to run); returns those values."""
        return ramps.apply(self, self._ramps, step)

    @model_validator(mode="before")
    @classmethod
    def _import_plugins(cls, data: Any) -> Any:
        """Before any field is read: a plugin's component names are valid values of the fields below."""
        plugins = data.get("plugins") if isinstance(data, dict) else None
        if isinstance(plugins, list) and all(isinstance(p, str) for p in plugins):
            registry.load_plugins(plugins)
        return data

    @field_validator("device")
    @classmethod
    def _torch_device(cls, v: str) -> str:
        """Refused here rather than when the trial starts: `torch.device("tpu")` fails only once a prior loads."""
        if not DEVICE.fullmatch(v):
            raise ValueError(f"expected auto, cpu, cuda, cuda:N or mps, got {shorten(v)}")
        return v

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be empty")
        return v.strip()

    @model_validator(mode="after")
    def _served_prior_has_no_autograd(self) -> TrialConfig:
        if self.sds.jacobian and self.prior.placement == "shared":
            raise ValueError(
                "sds.jacobian backpropagates through the denoiser, which a shared prior runs in another process; "
                "expected prior.placement: local"
            )
        return self

    @model_validator(mode="after")
    def _checkpoints_at_evals(self) -> TrialConfig:
        if self.checkpoint_every % self.eval.every:
            raise ValueError(
                f"checkpoint_every ({self.checkpoint_every}) must be a multiple of eval.every "
                f"({self.eval.every}): checkpoints are saved at evaluations"
            )
        return self
