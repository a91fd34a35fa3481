"""The toy world: a few shapes in a few colours, rendered by the project's own renderer and camera distribution.

Because the world is drawn with the same volume renderer, shading and cameras that SDS trials use, a NeRF can
match its images exactly; and because the 3D ground truth is known, silhouette IoU and mean colour are exact,
CLIP-independent scores.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamfusion.config.schema import CameraConfig
from dreamfusion.nerf.cameras import Cameras, sample_cameras, sample_lights
from dreamfusion.nerf.render import Lighting, render

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "green": (0.12, 0.68, 0.16),
    "blue": (0.12, 0.26, 0.90),
    "yellow": (0.95, 0.84, 0.10),
    "purple": (0.56, 0.16, 0.76),
    "orange": (1.00, 0.50, 0.05),
}


def _sdf_sphere(p: Tensor) -> Tensor:
    return p.norm(dim=-1) - 0.55


def _sdf_cube(p: Tensor) -> Tensor:
    q = p.abs() - 0.42
    return q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)


def _sdf_cylinder(p: Tensor) -> Tensor:
    d = torch.stack([p[..., :2].norm(dim=-1) - 0.42, p[..., 2].abs() - 0.5], -1)
    return d.clamp_min(0).norm(dim=-1) + d.max(dim=-1).values.clamp_max(0)


def _sdf_cone(p: Tensor) -> Tensor:
    """Upright cone, base radius 0.55 at z = −0.5, apex at z = 0.6 (exact 2D distance in the (r, z) plane)."""
    r, z = p[..., :2].norm(dim=-1), p[..., 2]
    h, rb, zb = 1.1, 0.55, -0.5
    # distance to the slanted side segment from (rb, zb) to (0, zb + h)
    a = torch.stack([r - rb, z - zb], -1)
    e = torch.tensor([-rb, h], device=p.device)
    s = ((a * e).sum(-1) / (e * e).sum()).clamp(0, 1)
    side = (a - s[..., None] * e).norm(dim=-1)
    base = torch.where(r <= rb, (z - zb).abs(), torch.hypot(r - rb, z - zb))
    inside = (z > zb) & (r < rb * (1 - (z - zb) / h))
    dist = torch.minimum(side, base)
    return torch.where(inside, -dist, dist)


def _sdf_torus(p: Tensor) -> Tensor:
    q = torch.stack([p[..., :2].norm(dim=-1) - 0.48, p[..., 2]], -1)
    return q.norm(dim=-1) - 0.2


def _sdf_pyramid(p: Tensor) -> Tensor:
    """Square pyramid as the intersection of its base plane and four slanted planes (a bound, not exact)."""
    base = -0.5 - p[..., 2]
    n = torch.tensor([1.1, 0.55])
    n = n / n.norm()
    sides = [n[0] * s * p[..., i] + n[1] * (p[..., 2] - 0.6) for i in (0, 1) for s in (1, -1)]
    return torch.stack([base, *sides], -1).max(dim=-1).values


SHAPES = {
    "cube": _sdf_cube,
    "sphere": _sdf_sphere,
    "cone": _sdf_cone,
    "cylinder": _sdf_cylinder,
    "torus": _sdf_torus,
    "pyramid": _sdf_pyramid,
}

WHITE = (1.0, 1.0, 1.0)
_VIEW_SUFFIX = re.compile(r",\s*(front|side|back|overhead) view$")


def colour_prompts() -> list[str]:
    return [f"a {c} {s}" for s in SHAPES for c in COLOURS]


def shape_prompts() -> list[str]:
    return [f"a {s}" for s in SHAPES]


@dataclass(frozen=True)
class Caption:
    shape: str
    colour: str | None  # None for shape-only (textureless) captions


def strip_view(prompt: str) -> str:
    """'A red cube, front view' → 'a red cube': the caption without its view suffix, normalised."""
    return _VIEW_SUFFIX.sub("", prompt.strip().lower())


def parse_prompt(prompt: str) -> Caption | None:
    """'a red cube, front view' → Caption('cube', 'red'); anything outside the world → None."""
    words = strip_view(prompt).split()
    if len(words) == 3 and words[0] == "a" and words[1] in COLOURS and words[2] in SHAPES:
        return Caption(words[2], words[1])
    if len(words) == 2 and words[0] == "a" and words[1] in SHAPES:
        return Caption(words[1], None)
    return None


def shape_caption(prompt: str) -> str | None:
    caption = parse_prompt(prompt)
    return None if caption is None else f"a {caption.shape}"


def geometry_query(prompt: str, prompt_set: list[str]) -> tuple[str, list[str]]:
    """What a textureless render of a world prompt is ranked against: its shape among the shape-only captions
    (colour cannot show in a white render); a prompt outside the world keeps its own set."""
    shape = shape_caption(prompt)
    return (shape, shape_prompts()) if shape else (prompt, prompt_set)


class Vocabulary:
    """The prompts the toy world's models can condition on: a registry `Needs` for its priors and scorers."""

    label = "the toy world's 42 prompts"

    def knows(self, prompt: str) -> bool:
        return parse_prompt(prompt) is not None

    def describe(self) -> str:
        return (
            f"'a <{'|'.join(COLOURS)}> <{'|'.join(SHAPES)}>' or 'a <shape>' (optionally with ', front view' "
            f"etc.), such as 'a red cube'"
        )


VOCABULARY = Vocabulary()


class ShapeField:
    """Analytic field of one world object: VolSDF density (1/β)·sigmoid(−sdf/β) and a constant albedo."""

    def __init__(self, shape: str, colour: tuple[float, float, float], beta: float = 0.015) -> None:
        self.sdf, self.colour, self.beta = SHAPES[shape], torch.tensor(colour), beta

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sigma = torch.sigmoid(-self.sdf(x) / self.beta) / self.beta
        return sigma, self.colour.to(x).expand(x.shape[0], 3)


def white_background(dirs: Tensor) -> Tensor:
    return torch.ones_like(dirs)


def render_caption(
    caption: Caption, cams: Cameras, resolution: int, light_positions: Tensor, samples: int = 96
) -> Tensor:
    """[B, 3, H, W] ground-truth renders: lambertian in colour, textureless for shape-only captions."""
    colour = WHITE if caption.colour is None else COLOURS[caption.colour]
    light = Lighting("textureless" if caption.colour is None else "lambertian", light_positions)
    with torch.no_grad():
        out = render(
            ShapeField(caption.shape, colour), white_background, cams, resolution, samples, light, normal_step=1 / 128
        )
    return out.rgb.clamp(0, 1)


def sample_views(
    prompt: str, n: int, resolution: int, generator: torch.Generator, camera: CameraConfig = CameraConfig()
) -> Tensor:
    """[n, 3, H, W] renders of a world prompt from the trials' own random camera and light distribution."""
    caption = parse_prompt(prompt)
    if caption is None:
        raise ValueError(f"{prompt!r} is not a toy-world prompt")
    cams = sample_cameras(camera, n, generator)
    return render_caption(caption, cams, resolution, sample_lights(cams, generator))
