"""Exact detectors of SDS's known failure modes in the toy world, as evaluators: the Janus problem (the front
feature seen from behind), over-saturation (against the true colour), and which colour a colour-unspecified
prompt became (diversity across seeds is the entropy of that choice over a sweep, `analysis/phenomena.py`).

Each reads albedo (unlit) renders of the trial's field from the eval ring and the world's ground truth of the
same views, so no learned model judges them. They run once, at the end of a trial (`final`): the phenomena are
properties of the result. The torus's genus (over-smoothing closes its hole) is the mesh evaluator's
`mesh_genus`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import Evaluator, EvalViews, Metric
from dreamfusion.nerf.cameras import Cameras, make_cameras
from dreamfusion.nerf.render import Lighting, RenderOutput
from dreamfusion.toyworld import world
from dreamfusion.toyworld.ground_truth import nearest_colour, render_truth, spot_mask

#: A view sees "a front" when its spot pixels reach this share of the true spot's pixels seen head-on.
FRONT_AREA = 0.25
#: Views this far (degrees of azimuth) or further from the view that sees the most spot are the back half.
BACK_ANGLE = 135.0


def albedo_views(views: EvalViews, cams: Cameras | None = None) -> RenderOutput:
    """Unlit renders of the trial's field from the eval ring (or `cams`): the colour it learned, unshaded."""
    with torch.no_grad():
        return views.render(views.cameras if cams is None else cams, Lighting("albedo", None), False)


def truth_views(caption: world.Caption, cams: Cameras, resolution: int) -> RenderOutput:
    """Unlit renders of the caption's true object (white when its colour is open: only its outline is used)."""
    field = world.ShapeField(caption.shape, world.WHITE) if caption.any_colour else world.caption_field(caption)
    return render_truth(field, cams, resolution)


def angular_gap(a: Tensor, b: float) -> Tensor:
    """|a − b| in degrees, wrapped to [0, 180]."""
    return ((a - b + 180) % 360 - 180).abs()


def janus_reading(spot_pixels: Tensor, azimuth: Tensor, true_front_pixels: float) -> dict[str, float]:
    """The Janus metrics of one ring of views, from each view's spot pixel count [V] and azimuth [V] (degrees).

    The object's front is the view that sees the most spot, not azimuth 0: without view-dependent prompts nothing
    tells SDS where the front is, so one spot at any azimuth is one front. Janus is a second front: a view at
    least BACK_ANGLE from the front that sees FRONT_AREA of the true spot or more.
    """
    area = spot_pixels.float() / max(true_front_pixels, 1.0)  # [V] spot seen, in units of the true front spot
    front = int(area.argmax())
    back = angular_gap(azimuth, float(azimuth[front])) >= BACK_ANGLE
    back_area = float(area[back].max()) if back.any() else 0.0
    return {
        "gt_janus": float(back_area >= FRONT_AREA),
        "gt_janus_area": back_area,
        "gt_spot_area": float(area[front]),
        "gt_front_azimuth": float(azimuth[front]),
    }


def head_on(cams: Cameras, azimuth: float = 0.0) -> Cameras:
    """One camera like the ring's first, moved to `azimuth`: where the true spot is seen whole."""
    distance = cams.position[:1].norm(dim=-1).cpu()
    return make_cameras(cams.elevation[:1].cpu(), torch.tensor([azimuth]), distance, cams.fov).to(cams.c2w.device)


@registry.register
class Janus(Evaluator):
    name = "janus"
    summary = "toy-world spotted objects only: whether the front's spot is also seen from behind (Janus), exactly"
    metrics = {
        "gt_janus": Metric(
            "min", "1 if a view ≥ 135° from the front sees ≥ 0.25 of the true spot (a second front)", True
        ),
        "gt_janus_area": Metric("min", "most spot seen from the back half, in units of the true front spot", True),
        "gt_spot_area": Metric("max", "spot seen from the front view, in units of the true front spot", True),
        "gt_front_azimuth": Metric(
            "max", "azimuth of the view that sees the most spot (the object's front)", final_only=True, ranked=False
        ),
    }

    @classmethod
    def applies(cls, cfg: TrialConfig) -> bool:
        caption = world.parse_prompt(cfg.prompt)
        return caption is not None and caption.spot

    def evaluate(self, views: EvalViews) -> dict[str, float]:
        return {}

    def final(self, views: EvalViews) -> dict[str, float]:
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None or not caption.spot:
            return {}
        pixels = spot_mask(albedo_views(views)).sum(dim=(1, 2, 3))  # [V]
        truth = spot_mask(truth_views(caption, head_on(views.cameras), views.resolution)).sum()
        return janus_reading(pixels.cpu(), views.cameras.azimuth.cpu(), float(truth))


def saturation(rgb: Tensor) -> Tensor:
    """HSV saturation (max − min) / max of colours along dim −3: [V, 3, H, W] → [V, H, W]; 0 for black."""
    top, bottom = rgb.max(dim=-3).values, rgb.min(dim=-3).values
    return torch.where(top > 0, (top - bottom) / top.clamp_min(1e-8), torch.zeros_like(top))


def mean_saturation(out: RenderOutput) -> float:
    """Mean saturation of the opaque pixels that are not the spot's (nan when there are none)."""
    keep = ((out.opacity > 0.5) & ~spot_mask(out))[:, 0]  # [V, H, W]
    return float(saturation(out.rgb)[keep].mean()) if keep.any() else math.nan


@registry.register
class Saturation(Evaluator):
    name = "saturation"
    summary = "toy-world colour prompts only: the albedo's saturation against the true object's from the same views"
    metrics = {
        "gt_saturation": Metric(
            "max", "mean HSV saturation of the opaque albedo pixels (spot excluded)", final_only=True, ranked=False
        ),
        "gt_saturation_excess": Metric(
            "min",
            "gt_saturation − the true object's, from the same views: > 0 is over-saturated",
            final_only=True,
            ranked=False,
        ),
    }

    @classmethod
    def applies(cls, cfg: TrialConfig) -> bool:
        caption = world.parse_prompt(cfg.prompt)
        return caption is not None and caption.colour is not None

    def evaluate(self, views: EvalViews) -> dict[str, float]:
        return {}

    def final(self, views: EvalViews) -> dict[str, float]:
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None or caption.colour is None:
            return {}
        found = mean_saturation(albedo_views(views))
        truth = mean_saturation(truth_views(caption, views.cameras, views.resolution))
        if math.isnan(found):
            return {}
        return {"gt_saturation": found, "gt_saturation_excess": found - truth}


def foreground_colour(out: RenderOutput) -> Tensor | None:
    """Mean albedo [3] of the opaque pixels that are not the spot's; None when nothing is opaque."""
    keep = (out.opacity > 0.5) & ~spot_mask(out)  # [V, 1, H, W]
    if not keep.any():
        return None
    return (out.rgb * keep).sum(dim=(0, 2, 3)) / keep.sum()


@registry.register
class ColourChoice(Evaluator):
    name = "colour_choice"
    summary = "toy-world coloured prompts: which of the six colours the object became (diversity over seeds)"
    metrics = {
        "gt_colour_index": Metric(
            "max",
            "which world colour (levels) the albedo is nearest to",
            final_only=True,
            ranked=False,
            levels=tuple(world.COLOURS),
        ),
        "gt_colour_open": Metric(
            "max",
            "1 if the prompt leaves the colour to SDS ('a coloured cube'), 0 if it names one",
            final_only=True,
            ranked=False,
        ),
    }

    @classmethod
    def applies(cls, cfg: TrialConfig) -> bool:
        caption = world.parse_prompt(cfg.prompt)
        return caption is not None and not caption.textureless

    def evaluate(self, views: EvalViews) -> dict[str, float]:
        return {}

    def final(self, views: EvalViews) -> dict[str, float]:
        """The colour chosen, and whether the prompt left it open: the trials whose choices measure diversity,
        told apart here so that a report need not parse the caption."""
        colour = foreground_colour(albedo_views(views))
        if colour is None:
            return {}
        caption = world.parse_prompt(self.cfg.prompt)
        left_open = caption is not None and caption.any_colour
        return {"gt_colour_index": float(nearest_colour(colour)), "gt_colour_open": float(left_open)}
