"""Config of score distillation: the timestep schedule and the SDS block (guidance, weighting, loss, non-finite
policy). The names of schedules, weightings and losses are registered components; their options are declared on
their classes and accepted here as keys of the block that names them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from dreamfusion import registry
from dreamfusion.config.base import LossName, ScheduleName, Selecting, WeightingName


class TimestepConfig(Selecting):
    """The timestep schedule, and the options of the registered schedules (`anneal_to`, `strata`, ...)."""

    selects = {"schedule": "schedule"}

    schedule: ScheduleName = "anneal"
    """How t is drawn per step: a registered schedule (`df-sweep config` lists them; `dreamfusion/sds/schedules.py`)."""
    t_min: float = Field(0.02, ge=0, le=1)
    """Smallest t as a fraction of the prior's T training steps."""
    t_max: float = Field(0.98, ge=0, le=1)
    """Largest t as a fraction of T (the start value for annealed schedules)."""
    per_view: bool = False
    """Draw t once per view of a step (threestudio) instead of once per step; deterministic schedules give every
    view the same t either way."""

    @model_validator(mode="after")
    def _check_range(self) -> TimestepConfig:
        if self.t_min >= self.t_max:
            raise ValueError(f"t_min ({self.t_min}) must be < t_max ({self.t_max})")
        return self


class SDSConfig(Selecting):
    """Score distillation, and the options of the registered losses and weightings (`negative_prompt`, ...)."""

    selects = {"loss": "loss", "weighting": "weighting"}

    guidance_scale: float = Field(20.0, ge=0)
    """Classifier-free guidance strength, read in the convention below."""
    guidance_convention: Literal["diffusers", "paper"] = "diffusers"
    """`diffusers`: ε_u + s(ε_c − ε_u); `paper` (DreamFusion): (1 + ω)ε_c − ωε_u, so s = ω + 1."""
    weighting: WeightingName = "sds"
    """w(t): `sds` = 1 − ᾱ_t (DreamFusion σ_t²); `uniform` = 1; `fantasia3d` = sqrt(ᾱ_t)(1 − ᾱ_t); `x0` =
    sqrt((1 − ᾱ_t)/ᾱ_t). Not given: the loss's authors' (`x0` for `ism` and `sdi`, `sds` for the others)."""
    loss: LossName = "sds"
    """The score-distillation gradient: `sds` is DreamFusion's w(t)(ε̂ − ε); `csd` Classifier Score Distillation
    w(t)·s(ε_c − ε_u); `nfsd` Noise-Free Score Distillation w(t)(δ_D + s(ε_c − ε_u)); `ism` Interval Score
    Matching w(t)(ε̂(x_t) − ε_∅(x_s)) and `sdi` Score Distillation via Inversion w(t)(ε̂(x_t) − κ), both with x_t
    from a DDIM inversion of the render; `vsd` Variational Score Distillation w(t)(ε̂ − ε̂_φ), ε̂_φ a
    camera-conditioned LoRA of the prior trained on the renders (`dreamfusion/sds/`)."""
    timesteps: TimestepConfig = Field(default_factory=TimestepConfig)
    """Timestep sampling schedule."""
    baseline: bool = True
    """Subtract the injected noise ε (the variance-reducing baseline); off gives w(t)·ε̂."""
    grad_clip: float | None = Field(None, gt=0)
    """Clamp each element of the SDS gradient to [-grad_clip, grad_clip]; null disables."""
    jacobian: bool = False
    """Ablation: backpropagate through the UNet (the full diffusion-loss gradient) instead of SDS."""
    nonfinite_tolerance: float = Field(0.01, ge=0, le=1)
    """Gradient elements whose ε̂ is non-finite (a stray fp16 NaN) are zeroed and counted (step metric
    `nonfinite`); the trial fails once that fraction is above this for `nonfinite_patience` steps in a row."""
    nonfinite_patience: int = Field(10, ge=1)
    """Consecutive steps above `nonfinite_tolerance` after which the trial fails as diverged."""

    @model_validator(mode="before")
    @classmethod
    def _authors_weighting(cls, data: Any) -> Any:
        """A loss weights its gradient as its authors did unless the config says otherwise: ISM's and SDI's x̂₀
        target is w(t) = sqrt((1 − ᾱ_t)/ᾱ_t), not DreamFusion's 1 − ᾱ_t."""
        if not isinstance(data, dict) or "weighting" in data:
            return data
        loss = data.get("loss", cls.model_fields["loss"].default)
        if isinstance(loss, str) and loss in registry.names("loss"):
            return {**data, "weighting": registry.find("loss", loss).default_weighting}
        return data
