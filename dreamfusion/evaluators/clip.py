"""CLIP score and CLIP R-precision of the eval ring, colour and textureless (DreamFusion §4), by the trial's scorer."""

from __future__ import annotations

from dreamfusion import registry
from dreamfusion.evaluators.base import Evaluator, EvalViews, Metric
from dreamfusion.scoring.metrics import score_views


@registry.register
class ClipMetrics(Evaluator):
    name = "clip"
    summary = "CLIP score and R-precision of colour and textureless eval renders (DreamFusion §4)"
    metrics = {
        "clip_score": Metric("max", "mean 100·cos(image, prompt) over the eval views", scored=True),
        "clip_r_precision": Metric(
            "max", "fraction of colour eval views that retrieve their prompt (R@1)", scored=True
        ),
        "clip_r_precision_geometry": Metric("max", "R@1 of the textureless (geometry-only) eval views", scored=True),
    }

    def evaluate(self, views: EvalViews) -> dict[str, float]:
        return score_views(self.scorer, views.colour.rgb, views.geometry.rgb, self.cfg.prompt, self.cfg.eval.prompt_set)
