"""Cameras on a sphere around the object, looking at the origin, with the view label used for prompt suffixes.

World frame: z is up; azimuth 0° looks at the object's front from +x; elevation is the angle above the xy-plane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamfusion.config.schema import CameraConfig

VIEW_SUFFIXES = {"front": ", front view", "side": ", side view", "back": ", back view", "overhead": ", overhead view"}


@dataclass
class Cameras:
    c2w: Tensor  # [B, 4, 4] camera-to-world, OpenGL convention (camera looks down −z, y up)
    fov: float  # vertical field of view, degrees
    elevation: Tensor  # [B] degrees
    azimuth: Tensor  # [B] degrees in [−180, 180)

    @property
    def position(self) -> Tensor:
        return self.c2w[:, :3, 3]  # [B, 3]

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def to(self, device: torch.device | str) -> Cameras:
        return Cameras(self.c2w.to(device), self.fov, self.elevation, self.azimuth)


def view_label(elevation: float, azimuth: float) -> str:
    """DreamFusion's split: overhead above 60°, else front/back within ±45° of 0°/180°, else side."""
    if elevation > 60:
        return "overhead"
    a = abs((azimuth + 180) % 360 - 180)
    if a <= 45:
        return "front"
    if a >= 135:
        return "back"
    return "side"


def view_prompt(prompt: str, elevation: float, azimuth: float, view_dependent: bool) -> str:
    return prompt + VIEW_SUFFIXES[view_label(elevation, azimuth)] if view_dependent else prompt


def look_at(position: Tensor) -> Tensor:
    """[B, 3] camera positions → [B, 4, 4] c2w looking at the origin with z up."""
    forward = -position / position.norm(dim=-1, keepdim=True)  # camera −z axis, towards the origin
    up = torch.tensor([0.0, 0.0, 1.0], device=position.device).expand_as(forward)
    right = torch.linalg.cross(forward, up, dim=-1)
    # at the poles forward ∥ up: fall back to world y as the up hint
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    alt = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], device=position.device).expand_as(forward), dim=-1)
    right = torch.where(degenerate, alt, right)
    right = right / right.norm(dim=-1, keepdim=True)
    true_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.eye(4, device=position.device).repeat(position.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, -forward, position
    return c2w


def spherical(elevation: Tensor, azimuth: Tensor, distance: Tensor) -> Tensor:
    """Degrees and scene units → [B, 3] positions."""
    el, az = torch.deg2rad(elevation), torch.deg2rad(azimuth)
    return torch.stack([distance * el.cos() * az.cos(), distance * el.cos() * az.sin(), distance * el.sin()], -1)


def make_cameras(elevation: Tensor, azimuth: Tensor, distance: Tensor, fov: float) -> Cameras:
    return Cameras(look_at(spherical(elevation, azimuth, distance)), fov, elevation, azimuth)


def _uniform(lo_hi: tuple[float, float], n: int, generator: torch.Generator) -> Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def sample_elevation(cfg: CameraConfig, n: int, generator: torch.Generator) -> Tensor:
    """[n] degrees. `sphere`: uniform on the sphere's band (uniform in sin(elevation)), so the top is not
    oversampled; `angle`: uniform in degrees, which favours the poles; `mixed`: one or the other for the whole
    batch with probability 1/2 each (threestudio), one draw of the generator deciding."""
    mode = cfg.elevation_sampling
    if mode == "angle" or (mode == "mixed" and float(torch.rand((), generator=generator)) < 0.5):
        return _uniform(cfg.elevation, n, generator)
    lo, hi = (math.sin(math.radians(e)) for e in cfg.elevation)
    return torch.rad2deg(torch.asin(lo + (hi - lo) * torch.rand(n, generator=generator)))


def sample_cameras(cfg: CameraConfig, n: int, generator: torch.Generator) -> Cameras:
    """Random training cameras: elevation as `camera.elevation_sampling` says, azimuth and distance uniform."""
    elevation = sample_elevation(cfg, n, generator)
    azimuth = _uniform(cfg.azimuth, n, generator)
    distance = _uniform(cfg.distance, n, generator)
    return make_cameras(elevation, azimuth, distance, cfg.fov)


def ring_cameras(n: int, elevation: float, distance: float, fov: float, offset: float = 0.0) -> Cameras:
    """n cameras evenly spaced in azimuth: eval views and turntables."""
    azimuth = offset + torch.arange(n, dtype=torch.float32) * 360.0 / n
    azimuth = (azimuth + 180) % 360 - 180
    return make_cameras(torch.full((n,), elevation), azimuth, torch.full((n,), distance), fov)


def rays(cams: Cameras, resolution: int) -> tuple[Tensor, Tensor]:
    """Origins and unit directions of every pixel: [B, H·W, 3] each, pixel centres, row-major from the top."""
    device = cams.c2w.device
    focal = 0.5 * resolution / math.tan(math.radians(cams.fov) / 2)
    ij = torch.arange(resolution, device=device, dtype=torch.float32) + 0.5
    v, u = torch.meshgrid(ij, ij, indexing="ij")
    dirs_cam = torch.stack([(u - resolution / 2) / focal, -(v - resolution / 2) / focal, -torch.ones_like(u)], -1)
    dirs = torch.einsum("bij,pj->bpi", cams.c2w[:, :3, :3], dirs_cam.view(-1, 3))  # [B, HW, 3]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = cams.position[:, None, :].expand_as(dirs)
    return origins, dirs


def sample_lights(cams: Cameras, generator: torch.Generator) -> Tensor:
    """[B, 3] point lights near each camera (DreamFusion samples the light around the camera position)."""
    pos = cams.position
    dist = pos.norm(dim=-1, keepdim=True)
    jitter = 0.4 * torch.randn(pos.shape, generator=generator).to(pos.device)
    direction = pos / dist + jitter
    return direction / direction.norm(dim=-1, keepdim=True) * dist * 1.5
