"""The toy world: a few shapes in a few colours, rendered by the project's own renderer and camera distribution.

Because the world is drawn with the same volume renderer, shading and cameras that SDS trials use, a NeRF can
match its images exactly; and because the 3D ground truth is known, silhouette IoU and mean colour are exact,
CLIP-independent scores.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from dreamfusion.config.schema import CameraConfig
from dreamfusion.nerf.cameras import Cameras, make_cameras, sample_cameras, sample_lights
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

#: The front marker of the spotted objects: a colour no object has (at least 0.71 from every colour above in RGB).
SPOT_COLOUR = (0.0, 0.0, 0.0)
#: Surface points whose outward normal lies within this angle of the spot's direction can be spotted …
SPOT_HALF_ANGLE = 35.0
#: … inside this box around the shape's middle (|y| sideways, |z − centre| upwards, in the spot's own frame): a
#: patch on one face (the cube's front face, a cap on the sphere), not a band round the object.
SPOT_HALF_WIDTH, SPOT_HALF_HEIGHT = 0.3, 0.25
#: Height of each shape's middle, where its spot sits (the cone and the pyramid narrow upwards).
SPOT_CENTRE_Z = {"cone": -0.2, "pyramid": -0.2}

#: Half-width (degrees of azimuth) of the head-on views a front-biased world draws its biased share from.
FRONT_HALF_WIDTH = 15.0

#: The word of the caption that leaves the colour of a coloured render unspecified ("a coloured cube").
ANY_COLOUR = "coloured"
#: The tail of a spotted object's caption ("a red cube with a spot").
SPOT_WORDS = ("with", "a", "spot")

_VIEW_SUFFIX = re.compile(r",\s*(front|side|back|overhead) view$")


def colour_prompts() -> list[str]:
    """The 36 "a <colour> <shape>" prompts, shape-major: the set R-precision retrieves among."""
    return [f"a {c} {s}" for s in SHAPES for c in COLOURS]


def shape_prompts() -> list[str]:
    """The 6 white, textureless geometry captions "a <shape>"."""
    return [f"a {s}" for s in SHAPES]


def spot_prompts() -> list[str]:
    """The 36 objects with a front: "a <colour> <shape> with a spot" (a black spot on the front face)."""
    return [f"{p} {' '.join(SPOT_WORDS)}" for p in colour_prompts()]


def coloured_prompts() -> list[str]:
    """The 6 colour-unspecified captions "a coloured <shape>": a lit render in any one of the six colours."""
    return [f"a {ANY_COLOUR} {s}" for s in SHAPES]


def all_prompts() -> list[str]:
    """Every caption the world's models know (without view suffixes)."""
    return colour_prompts() + spot_prompts() + coloured_prompts() + shape_prompts()


@dataclass(frozen=True)
class Caption:
    shape: str
    colour: str | None  # a COLOURS name; None for shape-only (textureless) and colour-unspecified captions
    spot: bool = False  # "... with a spot": the object has a front, marked by a black spot
    any_colour: bool = False  # "a coloured cube": lit, in one of the six colours, which one is left open

    @property
    def textureless(self) -> bool:
        """The white geometry caption "a cube"."""
        return self.colour is None and not self.any_colour

    @property
    def prompt(self) -> str:
        colour = ANY_COLOUR if self.any_colour else self.colour
        words = ["a", *([colour] if colour else []), self.shape, *(SPOT_WORDS if self.spot else ())]
        return " ".join(words)


def strip_view(prompt: str) -> str:
    """'A red cube, front view' → 'a red cube': the caption without its view suffix, normalised."""
    return _VIEW_SUFFIX.sub("", prompt.strip().lower())


def view_of(prompt: str) -> str | None:
    """'a red cube, back view' → 'back'; None without a view suffix."""
    found = _VIEW_SUFFIX.search(prompt.strip().lower())
    return None if found is None else found.group(1)


def parse_prompt(prompt: str) -> Caption | None:
    """'a red cube, front view' → Caption('cube', 'red'); anything outside the world → None."""
    words = strip_view(prompt).split()
    spot = tuple(words[3:]) == SPOT_WORDS
    if spot:
        words = words[:3]
    if len(words) == 3 and words[0] == "a" and words[2] in SHAPES:
        if words[1] in COLOURS:
            return Caption(words[2], words[1], spot=spot)
        if words[1] == ANY_COLOUR and not spot:
            return Caption(words[2], None, any_colour=True)
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


def prompt_family(prompt: str) -> list[str]:
    """The prompts a render of a world prompt is retrieved among: its own family (colour, spotted, colour-
    unspecified or shape-only)."""
    caption = parse_prompt(prompt)
    if caption is None or caption.textureless:
        return shape_prompts()
    if caption.any_colour:
        return coloured_prompts()
    return spot_prompts() if caption.spot else colour_prompts()


class Vocabulary:
    """The prompts the toy world's models can condition on: a registry `Needs` for its priors and scorers."""

    label = f"the toy world's {len(all_prompts())} prompts"

    def knows(self, prompt: str) -> bool:
        return parse_prompt(prompt) is not None

    def describe(self) -> str:
        return (
            f"'a <{'|'.join(COLOURS)}> <{'|'.join(SHAPES)}>' (optionally followed by ' with a spot'), "
            f"'a {ANY_COLOUR} <shape>' or 'a <shape>', optionally with ', front view' etc.; such as 'a red cube'"
        )


VOCABULARY = Vocabulary()


def spot_region(shape: str, x: Tensor, azimuths: tuple[float, ...] = (0.0,), h: float = 1e-2) -> Tensor:
    """[N] bool: the points of x [N, 3] inside a spot, one spot facing each azimuth (degrees; 0 is the front, +x).

    A point is spotted when the outward normal of the shape there (the SDF's gradient, by central differences)
    lies within SPOT_HALF_ANGLE of the spot's direction and the point lies inside the patch box around the shape's
    middle. The test holds off the surface too, so the albedo is constant across the density's soft shell.
    """
    sdf = SHAPES[shape]
    offsets = torch.eye(3, dtype=x.dtype, device=x.device) * h  # [3, 3]
    grad = torch.stack([sdf(x + o) - sdf(x - o) for o in offsets], -1)  # [N, 3]
    normal = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos_max, z0 = math.cos(math.radians(SPOT_HALF_ANGLE)), SPOT_CENTRE_Z.get(shape, 0.0)
    inside = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for azimuth in azimuths:
        c, s = math.cos(math.radians(azimuth)), math.sin(math.radians(azimuth))
        facing = normal[:, 0] * c + normal[:, 1] * s  # cosine between the normal and the spot's direction
        sideways = -x[:, 0] * s + x[:, 1] * c
        box = (sideways.abs() < SPOT_HALF_WIDTH) & ((x[:, 2] - z0).abs() < SPOT_HALF_HEIGHT)
        inside |= (facing > cos_max) & box & (x[:, 0] * c + x[:, 1] * s > 0)
    return inside


class ShapeField:
    """Analytic field of one world object: VolSDF density (1/β)·sigmoid(−sdf/β), a constant albedo, and a black
    spot facing each of `spots` (azimuths in degrees; the spotted objects have one, at 0°: their front)."""

    def __init__(
        self, shape: str, colour: tuple[float, float, float], beta: float = 0.015, spots: tuple[float, ...] = ()
    ) -> None:
        self.shape, self.sdf, self.colour, self.beta, self.spots = (
            shape,
            SHAPES[shape],
            torch.tensor(colour),
            beta,
            spots,
        )

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        sigma = torch.sigmoid(-self.sdf(x) / self.beta) / self.beta
        albedo = self.colour.to(x).expand(x.shape[0], 3)
        if self.spots:
            spotted = spot_region(self.shape, x, self.spots)[:, None]  # [N, 1]
            albedo = torch.where(spotted, torch.tensor(SPOT_COLOUR).to(x), albedo)
        return sigma, albedo


def caption_field(caption: Caption) -> ShapeField:
    """The true object of a caption: white for a shape-only caption, spotted at the front for "... with a spot"."""
    if caption.any_colour:
        raise ValueError(f"{caption.prompt!r} leaves the colour open: render one of its colours instead")
    colour = WHITE if caption.colour is None else COLOURS[caption.colour]
    return ShapeField(caption.shape, colour, spots=(0.0,) if caption.spot else ())


def white_background(dirs: Tensor) -> Tensor:
    return torch.ones_like(dirs)


def render_caption(
    caption: Caption, cams: Cameras, resolution: int, light_positions: Tensor | None, samples: int = 96, shading=None
) -> Tensor:
    """[B, 3, H, W] ground-truth renders: lambertian in colour, textureless for shape-only captions (or `shading`)."""
    shading = shading or ("textureless" if caption.textureless else "lambertian")
    with torch.no_grad():
        out = render(
            caption_field(caption),
            white_background,
            cams,
            resolution,
            samples,
            Lighting(shading, light_positions),
            normal_step=1 / 128,
            need_normals=shading != "albedo",
        )
    return out.rgb.clamp(0, 1)


def world_cameras(n: int, generator: torch.Generator, front_bias: float = 0.0, camera=CameraConfig()) -> Cameras:
    """The trials' random cameras, except that a share `front_bias` of them look at the object head-on, their
    azimuth uniform within FRONT_HALF_WIDTH of 0: the photographs' bias towards an object's canonical front view,
    the suspected cause of the Janus problem. 0 is the trials' own uniform azimuth (`azimuth_density`)."""
    cams = sample_cameras(camera, n, generator)
    if front_bias <= 0:
        return cams  # the same draws as a trial's, so an unbiased world renders what it always rendered
    front = torch.rand(n, generator=generator) < front_bias
    head_on = (2 * torch.rand(n, generator=generator) - 1) * FRONT_HALF_WIDTH
    azimuth = torch.where(front, head_on, cams.azimuth)
    return make_cameras(cams.elevation, azimuth, cams.position.norm(dim=-1), camera.fov)


def azimuth_density(azimuth: Tensor, front_bias: float) -> Tensor:
    """Density per degree of `world_cameras`' azimuth at `azimuth` [N] (degrees): b/(2w) inside the head-on
    window, plus (1 − b)/360 everywhere."""
    inside = (azimuth.abs() <= FRONT_HALF_WIDTH).to(azimuth.dtype)
    return front_bias * inside / (2 * FRONT_HALF_WIDTH) + (1 - front_bias) / 360


def sample_views(prompt: str, n: int, resolution: int, generator: torch.Generator, front_bias: float = 0.0) -> Tensor:
    """[n, 3, H, W] renders of a world prompt from the trials' random camera (biased towards the front by
    `front_bias`) and light distribution."""
    caption = parse_prompt(prompt)
    if caption is None:
        raise ValueError(f"{prompt!r} is not a toy-world prompt")
    cams = world_cameras(n, generator, front_bias)
    return render_caption(caption, cams, resolution, sample_lights(cams, generator))
