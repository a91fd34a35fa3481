"""`scoring.model: none`: a trial without CLIP metrics, for priors no CLIP could judge (random weights) or runs
that only measure speed and memory. Evaluators that need a scorer do not run; a sweep ranks by another metric."""

from __future__ import annotations

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.priors.base import Prior
from dreamfusion.scoring.metrics import Scorer

NO_SCORER = "none"


@registry.register
class NoScorer(Scorer):
    name = NO_SCORER
    summary = "no CLIP metrics (random-weight priors, speed runs); a sweep then ranks by another evaluator's metric"

    @classmethod
    def load(cls, model: str | None, device: torch.device, prior: Prior) -> NoScorer:
        return cls()

    def similarity(self, images: Tensor, prompts: list[str]) -> Tensor:
        raise RuntimeError(f"scoring.model is {NO_SCORER}: no evaluator that needs a scorer should have run")
