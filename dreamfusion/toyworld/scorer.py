"""The toy-world CLIP as a scorer: the tiny CLIP trained beside the toy prior, shipped in the package."""

from __future__ import annotations

from pathlib import Path

import torch

from dreamfusion import registry
from dreamfusion.priors.base import Prior
from dreamfusion.scoring.clip import CLIPScorer
from dreamfusion.scoring.metrics import Scorer
from dreamfusion.toyworld import world
from dreamfusion.toyworld.assets import WEIGHTS, check_weights


@registry.register
class ToyWorldScorer(CLIPScorer):
    """A prompt is retrieved among its own family (the 36 colour prompts, the 36 spotted ones, the 6 coloured or
    the 6 shape-only ones), textureless renders among the 6 shape-only prompts ("a red cube" → "a cube")."""

    name = "toyworld"
    summary = "the toy world's own small CLIP (R-precision among the prompt's family, e.g. the 36 colour prompts)"
    needs = registry.Needs(vocabulary=world.VOCABULARY)

    @classmethod
    def load(cls, model: str | None, device: torch.device, prior: Prior) -> ToyWorldScorer:
        return cls(WEIGHTS, device)

    def __init__(self, weights: Path, device: str | torch.device = "cpu") -> None:
        check_weights(weights, "clip")
        super().__init__(str(weights / "clip"), device)

    def describe(self) -> str:
        return "toyworld-clip"

    def geometry_query(self, prompt: str, prompt_set: list[str]) -> tuple[str, list[str]]:
        return world.geometry_query(prompt, prompt_set)

    def default_prompt_set(self, prompt: str) -> list[str]:
        return world.prompt_family(prompt)


def load_toyworld_scorer(device: torch.device | str = "cpu", weights: Path = WEIGHTS) -> Scorer:
    return ToyWorldScorer(Path(weights), device)
