"""The toy-world CLIP as a scorer: the tiny CLIP trained beside the toy prior, shipped in the package, run by the
plain-torch port (`clip.py`, `tokenizer.py`) that gives transformers' numbers without importing transformers."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.priors.base import Prior, freeze
from dreamfusion.scoring.clip import CLIPScorer
from dreamfusion.scoring.metrics import Scorer
from dreamfusion.toyworld import world
from dreamfusion.toyworld.assets import WEIGHTS, check_weights
from dreamfusion.toyworld.clip import load_clip
from dreamfusion.toyworld.tokenizer import ToyTokenizer


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
        folder = weights / "clip"
        self.device = torch.device(device)
        self.model = freeze(load_clip(folder), self.device)
        self.tokenizer = ToyTokenizer.from_folder(folder)
        preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
        self.prepare(str(folder), self.model.vision_model.image_size, preprocessor)

    @torch.no_grad()
    def image_features(self, pixel_values: Tensor) -> Tensor:
        return self.model.image_features(pixel_values)

    def encode_prompts(self, prompts: list[str]) -> Tensor:
        ids, padding = self.tokenizer(prompts, pad_to_max=False)
        return self.model.text_features(ids.to(self.device), padding.to(self.device))

    def describe(self) -> str:
        return "toyworld-clip"

    def geometry_query(self, prompt: str, prompt_set: list[str]) -> tuple[str, list[str]]:
        return world.geometry_query(prompt, prompt_set)

    def default_prompt_set(self, prompt: str) -> list[str]:
        return world.prompt_family(prompt)


def load_toyworld_scorer(device: torch.device | str = "cpu", weights: Path = WEIGHTS) -> Scorer:
    return ToyWorldScorer(Path(weights), device)
