"""Exact scores of toy-world trials against the world's 3D ground truth, CLIP-independent: silhouette IoU and
foreground colour error at each evaluation, and the true object's own R-precision (the ceiling, DreamFusion's
"GT images" row) at the end."""

from __future__ import annotations

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import Evaluator, EvalViews, Metric
from dreamfusion.nerf.cameras import Cameras
from dreamfusion.nerf.render import Lighting, RenderOutput, render
from dreamfusion.scoring.metrics import score_views
from dreamfusion.scoring.none import NO_SCORER
from dreamfusion.toyworld import world

#: Samples per ray of the ground-truth renders: enough that the analytic surface is crisp at 32 px.
TRUTH_SAMPLES = 96
#: A pixel shows the spot when it is opaque (> 0.5) and its albedo lies within this RGB distance of the spot's
#: black: every world colour is at least 0.71 from it and the white background 1.73, so only a spot passes; a
#: pixel half spot, half object colour (≥ 0.35 from black) or background does not.
SPOT_TOLERANCE = 0.3


@registry.register
class GroundTruth(Evaluator):
    name = "ground_truth"
    summary = "toy-world prompts only: silhouette IoU and colour error against the true object; its own R@1"
    metrics = {
        "gt_iou": Metric("max", "IoU of the rendered silhouette (opacity > 0.5) with the true object's"),
        "gt_colour_error": Metric("min", "distance of the mean foreground albedo from the true colour (RGB)"),
        "gt_clip_r_precision": Metric(
            "max", "R@1 of the true object's colour renders (the ceiling)", final_only=True, scored=True
        ),
        "gt_clip_r_precision_geometry": Metric(
            "max", "R@1 of the true object's textureless renders", final_only=True, scored=True
        ),
    }

    @classmethod
    def applies(cls, cfg: TrialConfig) -> bool:
        return super().applies(cfg) and world.parse_prompt(cfg.prompt) is not None

    def evaluate(self, views: EvalViews) -> dict[str, float]:
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None:
            return {}
        with torch.no_grad():
            truth = render_truth(world.ShapeField(caption.shape, world.WHITE), views.cameras, views.resolution)
            mask = views.colour.opacity > 0.5
            gt = truth.opacity > 0.5
            iou = (mask & gt).sum() / (mask | gt).sum().clamp_min(1)
            flat = views.render(views.cameras, Lighting("albedo", None), False)
            mean = masked_mean(flat.rgb, mask & ~spot_mask(flat) if caption.spot else mask)
            err = (mean - true_colour(caption, mean)).norm()
        return {"gt_iou": float(iou), "gt_colour_error": float(err)}

    def final(self, views: EvalViews) -> dict[str, float]:
        """R-precision of the true object's own renders from the eval views (colour prompts only)."""
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None or caption.colour is None or self.cfg.scoring.model == NO_SCORER:
            return {}  # shape-only: no colour renders; colour-unspecified: no one true object to render; no scorer
        cams, res = views.cameras, views.resolution
        colour = world.render_caption(caption, cams, res, views.lights)
        geometry = world.render_caption(world.Caption(caption.shape, None), cams, res, views.lights)
        scores = score_views(self.scorer, colour, geometry, self.cfg.prompt, self.cfg.eval.prompt_set)
        return {f"gt_{k}": v for k, v in scores.items() if k != "clip_score"}


def render_truth(field: world.ShapeField, cams: Cameras, resolution: int) -> RenderOutput:
    """Unlit renders of a true object from the trial's views, on white."""
    with torch.no_grad():
        return render(
            field, world.white_background, cams, resolution, TRUTH_SAMPLES, Lighting("albedo", None), need_normals=False
        )


def spot_mask(out: RenderOutput) -> Tensor:
    """[V, 1, H, W] bool: the opaque pixels of an albedo render whose colour is the spot's."""
    spot = torch.tensor(world.SPOT_COLOUR, device=out.rgb.device).view(1, 3, 1, 1)
    return (out.opacity > 0.5) & ((out.rgb - spot).norm(dim=1, keepdim=True) < SPOT_TOLERANCE)


def nearest_colour(rgb: Tensor) -> int:
    """Index in `world.COLOURS` of the world colour nearest to an RGB colour [3]."""
    palette = torch.tensor(list(world.COLOURS.values()), device=rgb.device)  # [6, 3]
    return int((palette - rgb).norm(dim=-1).argmin())


def true_colour(caption: world.Caption, found: Tensor) -> Tensor:
    """[3] the colour the object should have; for a colour-unspecified caption, the world colour nearest to the
    one `found` (any of the six is right)."""
    if caption.any_colour:
        return torch.tensor(list(world.COLOURS.values())[nearest_colour(found)], device=found.device)
    return torch.tensor(world.WHITE if caption.colour is None else world.COLOURS[caption.colour], device=found.device)


def masked_mean(rgb: Tensor, mask: Tensor) -> Tensor:
    """Mean colour [3] of the pixels where mask [B, 1, H, W] is set; white when the mask is empty."""
    m = mask.float()
    total = m.sum()
    if total == 0:
        return torch.ones(3, device=rgb.device)
    return (rgb * m).sum(dim=(0, 2, 3)) / total
