"""How a trial is judged: CLIP score and CLIP R-precision of its eval renders, behind one `Scorer` interface.

The metrics are free functions over any `Scorer`, so the same arithmetic scores a real CLIP model and the embedded
CPU priors' own scorers; a sweep then compares runs on numbers that were computed the same way.

Conventions (DreamFusion §4 and the CLIP-score literature):
- similarity is 100·cos(image, text) of the L2-normalised embeddings, *not* clamped at 0 and *not* multiplied by
  the model's learned `logit_scale`, so scores stay comparable across CLIP checkpoints;
- R-precision counts an eval view as a hit only when the true prompt scores strictly above every other prompt of
  the set: a tie is a miss, which keeps the metric deterministic and independent of the order of the set;
- the geometry variant scores textureless renders, so only shape can earn a hit.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.config import ConfigError

#: The hub id `scoring.model: auto` falls back to for the diffusers priors (the model DreamFusion reports with).
DEFAULT_CLIP = "openai/clip-vit-base-patch32"

#: Normalisation of the OpenAI CLIP image encoders, used when a checkpoint ships no image processor config.
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Distractors for R-precision when `eval.prompt_set` is null: short object-centric captions in the style of the
#: COCO captions DreamFusion retrieves among, so a hit means "recognisably this object", not "beats gibberish".
DEFAULT_PROMPT_SET: tuple[str, ...] = (
    "a red apple",
    "a wooden chair",
    "a yellow banana",
    "a blue car",
    "a white teapot",
    "a green frog",
    "a brown teddy bear",
    "a cup of coffee",
    "a slice of pizza",
    "a red fire hydrant",
    "a black cat",
    "a small dog",
    "a vase of flowers",
    "a pair of scissors",
    "a glass bottle",
    "a stack of books",
    "a wooden table",
    "a laptop computer",
    "a cell phone",
    "an orange",
    "a birthday cake",
    "a bowl of fruit",
    "a potted plant",
    "a toy airplane",
    "a red bicycle",
    "an umbrella",
    "a donut",
    "a hamburger",
    "a baseball glove",
    "a stop sign",
    "a wall clock",
    "a ceramic mug",
)


class Scorer(abc.ABC):
    """Maps renders and prompts to a similarity table; everything else about scoring lives in the free functions."""

    #: Logged next to the metrics, so a score is never read without knowing which model produced it.
    name: str

    @abc.abstractmethod
    def similarity(self, images: Tensor, prompts: list[str]) -> Tensor:
        """images [N, 3, H, W] in [0, 1], P prompts → [N, P] float32 on the CPU; higher means more alike."""

    def geometry_query(self, prompt: str, prompt_set: list[str]) -> tuple[str, list[str]]:
        """The (prompt, prompt set) textureless renders are ranked against.

        DreamFusion keeps the text as is; a toy-world scorer that cannot see colour in a white render overrides
        this to map "a red cube" → "a cube" among shape-only captions.
        """
        return prompt, prompt_set

    def default_prompt_set(self, prompt: str) -> list[str]:
        """The R-precision set used when the config gives none; a scorer with its own vocabulary overrides it."""
        return _with_prompt(prompt, list(DEFAULT_PROMPT_SET))


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def clip_score(scorer: Scorer, images: Tensor, prompt: str) -> float:
    """Mean over the eval views of their similarity to the prompt."""
    return float(scorer.similarity(images, [prompt])[:, 0].mean())


def r_precision(scorer: Scorer, images: Tensor, prompt: str, prompt_set: list[str]) -> float:
    """Fraction of eval views whose true prompt scores strictly highest in the set (ties are misses).

    The prompt is added to the set when absent and duplicates are dropped: a duplicate of the true prompt would
    tie with it and turn every view into a miss.
    """
    prompts = _with_prompt(prompt, prompt_set)
    sim = scorer.similarity(images, prompts)  # [N, P]
    true = prompts.index(prompt)
    others = torch.cat([sim[:, :true], sim[:, true + 1 :]], dim=1)  # [N, P-1]
    if others.shape[1] == 0:
        return 1.0
    hits = sim[:, true] > others.max(dim=1).values  # [N]
    return float(hits.float().mean())


def score_views(
    scorer: Scorer, color_images: Tensor, textureless_images: Tensor, prompt: str, prompt_set: list[str] | None = None
) -> dict[str, float]:
    """The three logged metrics of one evaluation; a null prompt set means the scorer's default."""
    prompt_set = scorer.default_prompt_set(prompt) if prompt_set is None else prompt_set
    geo_prompt, geo_set = scorer.geometry_query(prompt, prompt_set)
    return {
        "clip_score": clip_score(scorer, color_images, prompt),
        "clip_r_precision": r_precision(scorer, color_images, prompt, prompt_set),
        "clip_r_precision_geometry": r_precision(scorer, textureless_images, geo_prompt, geo_set),
    }


def _with_prompt(prompt: str, prompt_set: list[str]) -> list[str]:
    """The set, de-duplicated in order, with the prompt appended if it was missing."""
    prompts = list(dict.fromkeys(prompt_set))
    return prompts if prompt in prompts else [*prompts, prompt]


# ---------------------------------------------------------------------------------------------------------------
# CLIP


class CLIPScorer(Scorer):
    """A transformers CLIP model, fed straight from render tensors (no PIL round trip, so no uint8 quantisation)."""

    def __init__(self, model: str, device: str | torch.device = "cpu") -> None:
        from transformers import AutoTokenizer, CLIPModel

        self.name = f"clip:{model}"
        self.device = torch.device(device)
        try:
            self.model = CLIPModel.from_pretrained(model).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model)
        except Exception as exc:  # hub, file-system and format errors all mean the same thing to the user
            raise ConfigError(f"scoring.model: cannot load CLIP model {model!r}: {_first_line(exc)}") from None
        self.model.requires_grad_(False)
        self.image_size = int(self.model.config.vision_config.image_size)
        mean, std = _image_normalisation(model)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._text: dict[str, Tensor] = {}  # prompt → [D] unit text embedding

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
            tokens = self.tokenizer(
                new,
                padding=True,
                truncation=True,
                max_length=self.model.config.text_config.max_position_embeddings,
                return_tensors="pt",
            ).to(self.device)
            feats = _as_tensor(self.model.get_text_features(**tokens))  # [len(new), D]
            self._text.update(zip(new, F.normalize(feats, dim=-1)))
        return torch.stack([self._text[p] for p in prompts])


def _as_tensor(features: Tensor | object) -> Tensor:
    """transformers 5 returns an output object whose pooler_output is the projected embedding; 4.x a tensor."""
    return features if isinstance(features, Tensor) else features.pooler_output


def _image_normalisation(model: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from the checkpoint's preprocessor_config.json, or the OpenAI constants when it has none."""
    from transformers.utils import cached_file

    path = cached_file(
        model,
        "preprocessor_config.json",
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    config = json.loads(Path(path).read_text()) if path else {}
    return tuple(config.get("image_mean", OPENAI_CLIP_MEAN)), tuple(config.get("image_std", OPENAI_CLIP_STD))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------------------------------------
# Factory


def load_scorer(model: str, device: str | torch.device, prior: object | None = None) -> Scorer:
    """The scorer `scoring.model` names; `auto` pairs each embedded prior with its own scorer, anything else CLIP.

    The embedded priors' scorers are imported lazily: they live with their priors and pull in their weights.
    """
    if model == "analytic":
        return _analytic_scorer(prior)
    if model != "auto":
        return CLIPScorer(model, device)
    name = getattr(prior, "name", "")
    if name.startswith("analytic"):
        return _analytic_scorer(prior)
    if name.startswith("toyworld"):
        from dreamfusion.priors.toyworld import load_toyworld_scorer

        return load_toyworld_scorer(device)
    return CLIPScorer(DEFAULT_CLIP, device)


def _analytic_scorer(prior: object | None) -> Scorer:
    if not getattr(prior, "name", "").startswith("analytic"):
        raise ConfigError("scoring.model: 'analytic' needs the analytic prior's image set; set prior.kind: analytic")
    from dreamfusion.priors.analytic import AnalyticScorer

    return AnalyticScorer(prior)
