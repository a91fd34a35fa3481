"""A trained field seen at any resolution in every way a paper shows it: albedo, shaded (lambertian), textureless,
depth and normals, from a ring of cameras at the trial's own distance and field of view, lit from above each camera
(the eval renders' lights, so an export matches what the trial was scored on).

Each view is rendered on its own and the field read in chunks, so memory grows with one view's samples (a 512² view
at 128 samples per ray is 33 M samples), not with the decoder's activations of all of them at once."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dreamfusion.config.schema import TrialConfig
from dreamfusion.export.mesh import sample_field
from dreamfusion.nerf.cameras import Cameras, ring_cameras
from dreamfusion.nerf.field import finest_voxel
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.nerf.render import Lighting, RenderOutput, render

MODES = ("albedo", "shaded", "textureless", "depth", "normals")
#: The elevation of the eval ring and of turntables, in degrees.
RING_ELEVATION = 15.0


@dataclass
class Scene:
    """A field with what renders it as its trial did: background, occupancy grid, renderer and camera settings."""

    field: nn.Module  # points [N, 3] → σ [N], albedo [N, 3]
    background: nn.Module
    occupancy: OccupancyGrid
    cfg: TrialConfig

    @property
    def device(self) -> torch.device:
        return self.occupancy.occupied.device

    def ring(self, n: int, offset: float = 0.0) -> Cameras:
        """n cameras around the object at the eval elevation, the middle of the training distances, the trial's fov."""
        c = self.cfg.camera
        return ring_cameras(n, RING_ELEVATION, sum(c.distance) / 2, c.fov, offset).to(self.device)

    def render(self, cams: Cameras, mode: str, resolution: int | None = None, samples: int | None = None) -> Tensor:
        """[B, 3, H, W] in [0, 1], one view at a time; resolution and samples default to the trial's."""
        if mode not in MODES:
            raise ValueError(f"unknown render mode {mode!r}; expected one of {', '.join(MODES)}")
        resolution = resolution or self.cfg.render.resolution
        samples = samples or self.cfg.render.samples_per_ray
        views = [self._render_one(cams_slice(cams, i, i + 1), mode, resolution, samples) for i in range(len(cams))]
        return torch.cat(views).clamp(0, 1)

    @torch.no_grad()
    def _render_one(self, cam: Cameras, mode: str, resolution: int, samples: int) -> Tensor:
        if mode == "depth":
            return self._depth(cam, resolution, samples)
        shading = {"albedo": "albedo", "shaded": "lambertian", "textureless": "textureless", "normals": "albedo"}[mode]
        r = self.cfg.render
        light = Lighting(shading, lights_above(cam), r.ambient, r.diffuse)
        # the trial's own background (the eval renders' white when it trained on random ones)
        bg = torch.ones(3, device=self.device) if r.background == "random" else None
        out = self._trace(self._chunked, cam, light, resolution, samples, bg, mode)
        if mode != "normals":
            return out.rgb
        assert out.normal is not None
        # Σw·(n + 1)/2 over the ray, then a white background: normals as colours, composited like any colour
        return (out.normal + out.opacity) / 2 + (1 - out.opacity)

    def _depth(self, cam: Cameras, resolution: int, samples: int) -> Tensor:
        """Expected distance from the camera, near bright and far dark over the unit ball, black background: the
        renderer composites a field whose "albedo" is each sample's distance to the camera."""
        origin = cam.position[0]

        def distance_field(x: Tensor) -> tuple[Tensor, Tensor]:
            sigma, _ = self._chunked(x)
            return sigma, (x - origin).norm(dim=-1, keepdim=True).expand(-1, 3)

        black = torch.zeros(3, device=self.device)
        out = self._trace(distance_field, cam, Lighting("albedo", None), resolution, samples, black, "depth")
        depth = out.rgb / out.opacity.clamp_min(1e-6)  # [1, 3, H, W], three equal channels
        near = origin.norm() - 1
        return torch.where(out.opacity > 0.5, 1 - (depth - near) / 2, torch.zeros_like(depth))

    def _chunked(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return sample_field(self.field, x)

    def _trace(
        self, field, cam: Cameras, light: Lighting, resolution: int, samples: int, bg: Tensor | None, mode: str
    ) -> RenderOutput:
        return render(
            field,
            self.background,
            cam,
            resolution,
            samples,
            light,
            None,
            bg,
            normal_step=finest_voxel(self.cfg.nerf) / 2,
            need_normals=mode == "normals",
            occupancy=self.occupancy,
        )


def cams_slice(cams: Cameras, start: int, stop: int) -> Cameras:
    return Cameras(cams.c2w[start:stop], cams.fov, cams.elevation[start:stop], cams.azimuth[start:stop])


def lights_above(cams: Cameras) -> Tensor:
    """[B, 3] fixed point lights behind and above each camera, so that renders are deterministic."""
    return cams.position * 1.5 + torch.tensor([0.0, 0.0, 1.0], device=cams.c2w.device)
