"""The toy world's training data: captioned renders from the trials' cameras, deterministic from a seed, cached.

Every prompt of the world ("a red cube", "a red cube with a spot", …, and the textureless "a cube", …) is rendered
from random cameras and lights drawn as a trial draws them, except that a fraction `front_bias` of the views of an
object with a front look at its front (photographs of such objects favour it; it is what makes the Janus problem
appear). Objects without a front are seen from all round, as a trial sees them, unless `bias_all` says otherwise.
Colour prompts are also rendered albedo-only (unlit) for a fraction of views, as the trials' shading mix does, so
the prior has seen every shading a SDS step can show it. Each image keeps the DreamFusion view label of its camera,
so a caption can carry the matching ", front view" suffix. The colour-unspecified captions ("a coloured cube")
have no renders of their own: they caption a share of the colour renders of their shape, six colours equally.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.nerf.cameras import VIEW_SUFFIXES, Cameras, sample_lights, view_label
from dreamfusion.toyworld import world

VIEWS = tuple(VIEW_SUFFIXES)  # ("front", "side", "back", "overhead")


@dataclass
class WorldData:
    """A captioned image set; images are uint8 to keep the cache small."""

    images: Tensor  # [N, 3, H, W] uint8
    prompts: list[str]  # the rendered prompts, in `rendered_prompts()` order
    prompt_index: Tensor  # [N] long, index into `prompts`
    view_index: Tensor  # [N] long, index into VIEWS

    def __len__(self) -> int:
        return self.images.shape[0]

    def float_images(self, index: Tensor | slice = slice(None)) -> Tensor:
        return self.images[index].float() / 255  # [n, 3, H, W] in [0, 1]

    def captions(self, index: Tensor, suffix_mask: Tensor, any_colour_mask: Tensor | None = None) -> list[str]:
        """Caption of each image; those where `suffix_mask` is set carry their camera's view suffix, and colour
        renders where `any_colour_mask` is set are captioned without their colour ("a coloured cube")."""
        out = []
        any_colour = any_colour_mask.tolist() if any_colour_mask is not None else [False] * len(index)
        for i, with_suffix, coloured in zip(index.tolist(), suffix_mask.tolist(), any_colour):
            prompt = self.prompts[int(self.prompt_index[i])]
            if coloured:
                prompt = colour_unspecified(prompt)
            out.append(prompt + VIEW_SUFFIXES[VIEWS[int(self.view_index[i])]] if with_suffix else prompt)
        return out

    def prompts_of(self, index: Tensor) -> list[str]:
        return [self.prompts[int(self.prompt_index[i])] for i in index.tolist()]

    def labels_of(self, index: Tensor) -> list[str]:
        return [VIEWS[int(self.view_index[i])] for i in index.tolist()]

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


def rendered_prompts() -> list[str]:
    """The prompts with renders of their own: the 36 colour prompts, the 36 spotted ones, the 6 shape-only ones."""
    return world.colour_prompts() + world.spot_prompts() + world.shape_prompts()


def colour_unspecified(prompt: str) -> str:
    """ "a red cube" → "a coloured cube"; the other forms have a colour that must show (or none), and stay."""
    caption = world.parse_prompt(prompt)
    if caption is None or caption.colour is None or caption.spot:
        return prompt
    return world.Caption(caption.shape, None, any_colour=True).prompt


def render_views(
    prompt: str,
    n: int,
    resolution: int,
    generator: torch.Generator,
    albedo_fraction: float = 0.0,
    front_bias: float = 0.0,
) -> tuple[Tensor, Cameras]:
    """[n, 3, H, W] renders of a world prompt in [0, 1] and the cameras they were rendered from.

    A shape-only prompt is always textureless; a colour prompt is lambertian, except the first
    round(n·albedo_fraction) views, which are albedo-only. `front_bias`: see `world.world_cameras`.
    """
    caption = world.parse_prompt(prompt)
    if caption is None:
        raise ValueError(f"{prompt!r} is not a toy-world prompt")
    cams = world.world_cameras(n, generator, front_bias)
    lights = sample_lights(cams, generator)
    n_albedo = 0 if caption.textureless else round(n * albedo_fraction)
    images = world.render_caption(caption, cams, resolution, lights)  # [n, 3, H, W]
    if n_albedo:
        images[:n_albedo] = world.render_caption(caption, _subset(cams, n_albedo), resolution, None, shading="albedo")
    return images, cams


def view_labels(cams: Cameras) -> list[str]:
    """The DreamFusion view label of each camera."""
    return [view_label(float(e), float(a)) for e, a in zip(cams.elevation, cams.azimuth)]


def _subset(cams: Cameras, n: int) -> Cameras:
    return Cameras(cams.c2w[:n], cams.fov, cams.elevation[:n], cams.azimuth[:n])


def generate(
    seed: int,
    colour_views: int,
    shape_views: int,
    spot_views: int = 0,
    resolution: int = 32,
    albedo_fraction: float = 0.25,
    front_bias: float = 0.0,
    bias_all: bool = False,
    chunk: int = 50,
    log=print,
) -> WorldData:
    """Renders of every rendered prompt: `colour_views` per colour prompt, `spot_views` per spotted prompt,
    `shape_views` per shape-only prompt, the spotted ones (with `bias_all`, every one) from cameras biased towards
    the front by `front_bias`."""
    g = torch.Generator().manual_seed(seed)
    prompts = rendered_prompts()
    images, prompt_index, view_index = [], [], []
    started = time.perf_counter()
    for k, prompt in enumerate(prompts):
        caption = world.parse_prompt(prompt)
        assert caption is not None
        n = shape_views if caption.textureless else spot_views if caption.spot else colour_views
        bias = front_bias if caption.spot or bias_all else 0.0
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            imgs, cams = render_views(prompt, m, resolution, g, albedo_fraction, bias)
            images.append((imgs * 255).round().to(torch.uint8))
            prompt_index += [k] * m
            view_index += [VIEWS.index(v) for v in view_labels(cams)]
        if log and (k + 1) % 6 == 0:
            log(f"  data: {k + 1}/{len(prompts)} prompts rendered [{time.perf_counter() - started:.0f}s]")
    return WorldData(torch.cat(images), prompts, torch.tensor(prompt_index), torch.tensor(view_index))


def load_or_generate(path: Path, log=print, **kwargs) -> WorldData:
    """The cached set at `path` if it exists, else a fresh one made by `generate(**kwargs)` and written there."""
    if path.exists():
        return WorldData.load(path)
    data = generate(**kwargs, log=log)
    data.save(path)
    return data
