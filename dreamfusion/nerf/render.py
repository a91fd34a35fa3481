"""Volume rendering of a field inside the unit ball, with DreamFusion's three shading modes.

- albedo: the field's colour, unlit;
- lambertian: albedo · (ambient + diffuse · max(0, n·l)) with a point light l;
- textureless: the same light on a white albedo, so only geometry shows (DreamFusion's geometry renders).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.nerf.cameras import Cameras, rays
from dreamfusion.nerf.field import finite_difference_normals, safe_normalize
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.timing import phase

FieldFn = Callable[[Tensor], tuple[Tensor, Tensor]]  # points [N, 3] → σ [N], albedo [N, 3]
GradientFn = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]  # points [N, 3] → σ [N], albedo [N, 3], ∇σ [N, 3]
BackgroundFn = Callable[[Tensor], Tensor]  # directions [N, 3] → colour [N, 3]

SHADING_MODES = ("albedo", "lambertian", "textureless")


@dataclass
class Lighting:
    shading: str  # one of SHADING_MODES
    light_position: Tensor | None  # [B, 3] point light per view; None for albedo
    ambient: float = 0.45
    diffuse: float = 0.55


@dataclass
class RenderOutput:
    rgb: Tensor  # [B, 3, H, W] in [0, 1]
    opacity: Tensor  # [B, 1, H, W] accumulated weight
    normal: Tensor | None  # [B, 3, H, W] weight-averaged world normals, None when not computed
    orientation: Tensor  # [] DreamFusion orientation penalty Σ w·max(0, n·d)², mean over rays
    opacity_entropy: Tensor  # [] binary entropy of opacity, mean over rays


def ray_sphere(origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    """Near/far distances of each ray through the unit ball; rays that miss get near = far (zero length)."""
    b = (origins * dirs).sum(-1)
    c = (origins * origins).sum(-1) - 1.0
    disc = b * b - c
    root = disc.clamp_min(0).sqrt()
    near = (-b - root).clamp_min(0)
    far = torch.where(disc > 0, (-b + root).clamp_min(0), near)  # a ray leaving the ball behind it has far < 0
    return near, far


def sample_along(near: Tensor, far: Tensor, n: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Stratified depths [R, S] (jittered by `generator`, bin centres without one) and their spacing [R, 1]."""
    bins = torch.arange(n, device=near.device, dtype=near.dtype)
    if generator is None:
        u = torch.full((near.shape[0], n), 0.5, device=near.device)
    else:
        u = torch.rand(near.shape[0], n, generator=generator).to(near.device)
    delta = ((far - near) / n)[:, None]
    return near[:, None] + delta * (bins + u), delta


def shade(albedo: Tensor, normals: Tensor | None, points: Tensor, light: Lighting, view: Tensor) -> Tensor:
    """Colour at each sample: albedo [R, S, 3], normals [R, S, 3], points [R, S, 3], view index of each ray [R]."""
    if light.shading == "albedo":
        return albedo
    assert light.light_position is not None and normals is not None, "lit shading needs a light and normals"
    to_light = safe_normalize(light.light_position[view][:, None, :] - points)  # [R, S, 3]
    lit = light.ambient + light.diffuse * (normals * to_light).sum(-1, keepdim=True).clamp_min(0)  # [R, S, 1]
    if light.shading == "textureless":
        return lit.expand_as(albedo)
    return albedo * lit


def composite(sigma: Tensor, delta: Tensor) -> Tensor:
    """Weights w_i = T_i(1 − exp(−σ_i δ_i)), T_i the transmittance before sample i: [R, S]."""
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], -1), -1)[:, :-1]
    return alpha * trans


def render(
    field: FieldFn,
    background: BackgroundFn,
    cams: Cameras,
    resolution: int,
    samples: int,
    light: Lighting,
    generator: torch.Generator | None = None,
    bg_color: Tensor | None = None,
    normal_step: float = 1 / 64,
    need_normals: bool = True,
    occupancy: OccupancyGrid | None = None,
    gradient: GradientFn | None = None,
) -> RenderOutput:
    """`gradient`: the field with its exact ∇σ, read instead of `field` where normals are wanted, which then come
    from it rather than from finite differences of step `normal_step`."""
    normals = light.shading != "albedo" or need_normals
    march = march_rays(field, cams, resolution, samples, generator, occupancy, gradient if normals else None)
    return shade_march(
        march, background, light, bg_color, visible_normals(field, march, normal_step) if normals else None
    )


def render_shadings(
    field: FieldFn,
    background: BackgroundFn,
    cams: Cameras,
    resolution: int,
    samples: int,
    lights: Sequence[Lighting],
    bg_color: Tensor | None = None,
    normal_step: float = 1 / 64,
    occupancy: OccupancyGrid | None = None,
    gradient: GradientFn | None = None,
) -> list[RenderOutput]:
    """The same cameras in several shadings from one pass through the field (no jitter): each output is exactly
    `render(..., light, need_normals=True)`, for a third of the field reads when three shadings are wanted."""
    march = march_rays(field, cams, resolution, samples, None, occupancy, gradient)
    normals = visible_normals(field, march, normal_step)
    return [shade_march(march, background, light, bg_color, normals) for light in lights]


@dataclass
class March:
    """The samples of every ray and what the field said there; R rays of B views, S samples each."""

    views: int  # B
    resolution: int
    dirs: Tensor  # [R, 3] unit ray directions
    points: Tensor  # [R, S, 3]
    sigma: Tensor  # [R·S] density
    albedo: Tensor  # [R·S, 3]
    weights: Tensor  # [R, S] compositing weights
    gradient: Tensor | None  # [R·S, 3] ∇σ when the march read a field's exact gradient


def march_rays(
    field: FieldFn,
    cams: Cameras,
    resolution: int,
    samples: int,
    generator: torch.Generator | None,
    occupancy: OccupancyGrid | None,
    gradient: GradientFn | None = None,
) -> March:
    """Stratified samples along every pixel's ray, the field at the occupied ones (with ∇σ when `gradient` is
    given), and the compositing weights."""
    with phase("render/rays"):
        origins, dirs = (x.reshape(-1, 3) for x in rays(cams, resolution))  # [R, 3], R = B·H·W
        near, far = ray_sphere(origins, dirs)
        depth, delta = sample_along(near, far, samples, generator)  # [R, S], [R, 1]
        points = (origins[:, None] + dirs[:, None] * depth[..., None]).clamp(-1, 1)  # [R, S, 3]
    with phase("render/field"):
        sigma, albedo, grad = _sparse_field(field, points.reshape(-1, 3), occupancy, gradient)
    with phase("render/composite"):
        w = composite(sigma.view(depth.shape), delta)  # [R, S]
    return March(len(cams), resolution, dirs, points, sigma, albedo, w, grad)


def visible_normals(field: FieldFn, march: March, h: float, threshold: float = 1e-4) -> Tensor:
    """[R, S, 3] normals −∇σ/|∇σ| of the samples that reach the image (weight > threshold), zero elsewhere: from
    the march's exact gradient when it has one, else by finite differences (three field reads per sample).

    Most samples of a ray lie in empty space, and zero-weight samples reach neither the image nor the orientation
    penalty: computing normals only where the ray deposits weight was the largest saving in a CPU step.
    """
    with phase("render/normals"):
        active = torch.nonzero(march.weights.detach().flatten() > threshold).squeeze(1)  # [M]
        flat = march.points.reshape(-1, 3)
        if active.numel() == 0:
            return flat.new_zeros(march.points.shape)
        if march.gradient is not None:
            seen = safe_normalize(-march.gradient[active])
        else:
            seen = finite_difference_normals(lambda x: field(x)[0], flat[active], march.sigma[active], h)
        normals = flat.new_zeros(flat.shape).index_copy(0, active, seen)
    return normals.view(march.points.shape)


def shade_march(
    march: March, background: BackgroundFn, light: Lighting, bg_color: Tensor | None, normals: Tensor | None
) -> RenderOutput:
    """Shade the samples of a march and composite them over the background into images."""
    with phase("render/shade"):
        b, r, w, dirs = march.views, march.resolution, march.weights, march.dirs
        view = torch.arange(b, device=dirs.device).repeat_interleave(r * r)  # [R]
        colour = shade(march.albedo.view(march.points.shape), normals, march.points, light, view)
        acc = w.sum(-1, keepdim=True)  # [R, 1]
        bg = background(dirs) if bg_color is None else bg_color.to(dirs).expand_as(dirs)
        rgb = (w[..., None] * colour).sum(1) + (1 - acc) * bg  # [R, 3]
        return RenderOutput(
            rgb=_to_image(rgb, b, r),
            opacity=_to_image(acc, b, r),
            normal=None if normals is None else _to_image((w[..., None] * normals).sum(1), b, r),
            orientation=_orientation(w, normals, dirs),
            opacity_entropy=_binary_entropy(acc),
        )


def _sparse_field(
    field: FieldFn, x: Tensor, occupancy: OccupancyGrid | None, gradient: GradientFn | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """σ [N], albedo [N, 3] and, read from `gradient`, ∇σ [N, 3] (else None), with the field evaluated only in
    occupied cells (zero elsewhere)."""
    read: Callable[[Tensor], tuple[Tensor, ...]] = field if gradient is None else gradient
    if occupancy is None:
        outputs = read(x)
    else:
        active = torch.nonzero(occupancy.query(x)).squeeze(1)  # [M]
        outputs = tuple(x.new_zeros(x.shape[:1] + o.shape[1:]).index_copy(0, active, o) for o in read(x[active]))
    sigma, albedo, *grad = outputs
    return sigma, albedo, grad[0] if grad else None


def _orientation(w: Tensor, normals: Tensor | None, dirs: Tensor) -> Tensor:
    if normals is None:
        return torch.zeros((), device=w.device)
    facing_away = (normals * dirs[:, None, :]).sum(-1).clamp_min(0)  # [R, S]
    return (w.detach() * facing_away**2).sum(-1).mean()


def _binary_entropy(acc: Tensor) -> Tensor:
    a = acc.clamp(1e-5, 1 - 1e-5)
    return (-(a * a.log() + (1 - a) * (1 - a).log())).mean()


def _to_image(x: Tensor, b: int, resolution: int) -> Tensor:
    # [B·H·W, C] → [B, C, H, W]
    return x.view(b, resolution, resolution, -1).permute(0, 3, 1, 2).contiguous()


def resize(images: Tensor, size: int) -> Tensor:
    """[B, C, H, W] → [B, C, size, size], antialiased when shrinking."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=images.shape[-1] > size
    )
