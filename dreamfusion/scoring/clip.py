"""CLIP as a scorer: any transformers `CLIPModel` checkpoint, a hub id or a local directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion import registry
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.priors.base import Prior, freeze
from dreamfusion.scoring.metrics import Scorer

#: The checkpoint `scoring.model: auto` falls back to for the diffusers priors (the model DreamFusion reports with).
DEFAULT_CLIP = "openai/clip-vit-base-patch32"

#: Normalisation of the OpenAI CLIP image encoders, used when a checkpoint ships no image processor config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@registry.register
class CLIPScorer(Scorer):
    """A transformers CLIP model, fed straight from render tensors (no PIL round trip, so no uint8 quantisation)."""

    name = "clip"
    summary = f"a transformers CLIP checkpoint (`scoring.model: ID_OR_PATH`; default {DEFAULT_CLIP})"

    @classmethod
    def load(cls, model: str | None, device: torch.device, prior: Prior) -> CLIPScorer:
        return cls(model or DEFAULT_CLIP, device)

    def __init__(self, model: str, device: str | torch.device = "cpu") -> None:
        from transformers import AutoTokenizer, CLIPModel

        self.device = torch.device(device)
        try:
            self.model: Any = freeze(CLIPModel.from_pretrained(model), self.device)
            self.tokenizer: Any = AutoTokenizer.from_pretrained(model)
        except Exception as exc:  # hub, file-system and format errors all mean the same thing to the user
            raise ConfigError(f"scoring.model: cannot load CLIP model {model!r}: {first_line(exc)}") from None
        self.prepare(model, int(self.model.config.vision_config.image_size), _preprocessor_config(model))

    def prepare(self, name: str, image_size: int, preprocessor: dict[str, Any]) -> None:
        """What scoring keeps beside the model: its name, its input size and pixel normalisation (from its
        preprocessor_config.json, the OpenAI constants where it has none), and an empty text cache."""
        self.model_name = name
        self.image_size = image_size
        mean, std = preprocessor.get("image_mean", OPENAI_CLIP_MEAN), preprocessor.get("image_std", OPENAI_CLIP_STD)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._text: dict[str, Tensor] = {}  # prompt → [D] unit text embedding

    def describe(self) -> str:
        return f"clip:{self.model_name}"

    @torch.no_grad()
    def similarity(self, images: Tensor, prompts: list[str]) -> Tensor:
        image = F.normalize(self.image_features(self.preprocess(images)), dim=-1)  # [N, D]
        text = self.text_features(prompts)  # [P, D]
        return (100.0 * image @ text.T).float().cpu()  # [N, P]

    def preprocess(self, images: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] → [N, 3, S, S] normalised pixel values, as CLIPImageProcessor would produce.

        Shortest side to S (bicubic, antialiased), centre crop, clamp (bicubic overshoots, PIL would clip), then
        mean/std; square renders skip the crop.
        """
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        scale = self.image_size / min(h, w)
        size = (max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale)))
        x = F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
        top, left = (size[0] - self.image_size) // 2, (size[1] - self.image_size) // 2
        x = x[..., top : top + self.image_size, left : left + self.image_size].clamp(0, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def image_features(self, pixel_values: Tensor) -> Tensor:
        """[N, 3, S, S] → [N, D] projected, unnormalised image embeddings."""
        return _as_tensor(self.model.get_image_features(pixel_values=pixel_values))

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> Tensor:
        """[P, D] unit text embeddings; only prompts not seen before go through the text encoder."""
        new = [p for p in dict.fromkeys(prompts) if p not in self._text]
        if new:
            self._text.update(zip(new, F.normalize(self.encode_prompts(new), dim=-1)))
        return torch.stack([self._text[p] for p in prompts])

    def encode_prompts(self, prompts: list[str]) -> Tensor:
        """[P, D] projected, unnormalised text embeddings, as one batch padded to its longest prompt."""
        tokens = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
            return_tensors="pt",
        ).to(self.device)
        return _as_tensor(self.model.get_text_features(**tokens))


def _as_tensor(features: Any) -> Tensor:
    """transformers 5 returns an output object whose pooler_output is the projected embedding; 4.x a tensor."""
    return features if isinstance(features, Tensor) else features.pooler_output


def _preprocessor_config(model: str) -> dict[str, Any]:
    """The checkpoint's preprocessor_config.json, {} when it has none."""
    from transformers.utils import cached_file

    path = cached_file(
        model,
        "preprocessor_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    config: dict[str, Any] = json.loads(Path(path).read_text()) if path else {}
    return config
