"""Config of what is rendered and how: the NeRF and its size presets, the renderer and its shading mix, the
training cameras."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dreamfusion.config.base import Schema

# The NeRF size presets. Parameter counts per preset are in docs/guide/spec.md ("NeRF size presets") and checked
# by tests.
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
    albedo_warmup: int = Field(0, ge=0)
    """Steps 0 … N−1 render albedo only, whatever `shading` says (threestudio's `ambient_only_steps`: 2001)."""


class CameraConfig(Schema):
    elevation: tuple[float, float] = (-10.0, 45.0)
    """Range of camera elevation in degrees."""
    elevation_sampling: Literal["sphere", "angle", "mixed"] = "sphere"
    """`sphere`: uniform on the sphere's band (the top is not oversampled); `angle`: uniform in degrees; `mixed`:
    each step's views all one or the other, half the steps each (threestudio's random-camera sampler)."""
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
