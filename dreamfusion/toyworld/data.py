"""The toy world's training data: captioned renders from the trials' cameras, deterministic from a seed, cached.

Every prompt of the world ("a red cube", …, and the textureless "a cube", …) is rendered from random cameras and
lights drawn exactly as a trial draws them. Colour prompts are also rendered albedo-only (unlit) for a fraction of
views, as the trials' shading mix does, so the prior has seen every shading a SDS step can show it. Each image keeps
the DreamFusion view label of its camera, so a caption can carry the matching ", front view" suffix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.config.schema import CameraConfig
from dreamfusion.nerf.cameras import (
    VIEW_SUFFIXES,
    Cameras,
    sample_cameras,
    sample_lights,
    view_label,
)
from dreamfusion.nerf.render import Lighting, render
from dreamfusion.toyworld import world

VIEWS = tuple(VIEW_SUFFIXES)  # ("front", "side", "back", "overhead")


@dataclass
class WorldData:
    """A captioned image set; images are uint8 to keep the cache small."""

    images: Tensor  # [N, 3, H, W] uint8
    prompts: list[str]  # the world's prompts, in `all_prompts()` order
    prompt_index: Tensor  # [N] long, index into `prompts`
    view_index: Tensor  # [N] long, index into VIEWS

    def __len__(self) -> int:
        return self.images.shape[0]

    def float_images(self, index: Tensor | slice = slice(None)) -> Tensor:
        return self.images[index].float() / 255  # [n, 3, H, W] in [0, 1]

    def captions(self, index: Tensor, suffix_mask: Tensor) -> list[str]:
        """Caption of each image; those where `suffix_mask` is set carry their camera's view suffix."""
        out = []
        for i, with_suffix in zip(index.tolist(), suffix_mask.tolist()):
            prompt = self.prompts[int(self.prompt_index[i])]
            out.append(prompt + VIEW_SUFFIXES[VIEWS[int(self.view_index[i])]] if with_suffix else prompt)
        return out

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "images": self.images,
                "prompts": self.prompts,
                "prompt_index": self.prompt_index,
                "view_index": self.view_index,
            },
            path,
        )

    @classmethod
    def load(cls, path: Path) -> WorldData:
        return cls(**torch.load(path, weights_only=False))


def all_prompts() -> list[str]:
    """The 36 colour prompts, then the 6 shape-only prompts."""
    return world.colour_prompts() + world.shape_prompts()


def render_views(
    prompt: str,
    n: int,
    resolution: int,
    generator: torch.Generator,
    albedo_fraction: float = 0.0,
    camera: CameraConfig = CameraConfig(),
) -> tuple[Tensor, list[str]]:
    """[n, 3, H, W] renders of a world prompt in [0, 1] and the view label of each camera.

    A shape-only prompt is always textureless; a colour prompt is lambertian, except the first
    round(n·albedo_fraction) views, which are albedo-only.
    """
    caption = world.parse_prompt(prompt)
    if caption is None:
        raise ValueError(f"{prompt!r} is not a toy-world prompt")
    cams = sample_cameras(camera, n, generator)
    lights = sample_lights(cams, generator)
    labels = [view_label(float(e), float(a)) for e, a in zip(cams.elevation, cams.azimuth)]
    n_albedo = round(n * albedo_fraction) if caption.colour is not None else 0
    images = world.render_caption(caption, cams, resolution, lights)  # [n, 3, H, W]
    if n_albedo and caption.colour is not None:
        field = world.ShapeField(caption.shape, world.COLOURS[caption.colour])
        with torch.no_grad():
            out = render(
                field,
                world.white_background,
                _subset(cams, n_albedo),
                resolution,
                96,
                Lighting("albedo", None),
                normal_step=1 / 128,
            )
        images[:n_albedo] = out.rgb.clamp(0, 1)
    return images, labels


def _subset(cams: Cameras, n: int) -> Cameras:
    return Cameras(cams.c2w[:n], cams.fov, cams.elevation[:n], cams.azimuth[:n])


def generate(
    seed: int,
    colour_views: int,
    shape_views: int,
    resolution: int = 32,
    albedo_fraction: float = 0.25,
    chunk: int = 50,
    log=print,
) -> WorldData:
    """Renders of every world prompt: `colour_views` per colour prompt, `shape_views` per shape-only prompt."""
    g = torch.Generator().manual_seed(seed)
    prompts = all_prompts()
    images, prompt_index, view_index = [], [], []
    started = time.perf_counter()
    for k, prompt in enumerate(prompts):
        caption = world.parse_prompt(prompt)
        n = shape_views if caption is None or caption.colour is None else colour_views
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            imgs, labels = render_views(prompt, m, resolution, g, albedo_fraction)
            images.append((imgs * 255).round().to(torch.uint8))
            prompt_index += [k] * m
            view_index += [VIEWS.index(v) for v in labels]
        if log and (k + 1) % 6 == 0:
            log(f"  data: {k + 1}/{len(prompts)} prompts rendered [{time.perf_counter() - started:.0f}s]")
    return WorldData(torch.cat(images), prompts, torch.tensor(prompt_index), torch.tensor(view_index))


def load_or_generate(
    path: Path, seed: int, colour_views: int, shape_views: int, resolution: int = 32, log=print
) -> WorldData:
    """The cached set at `path` if it exists, else a fresh one written there."""
    if path.exists():
        return WorldData.load(path)
    data = generate(seed, colour_views, shape_views, resolution, log=log)
    data.save(path)
    return data
