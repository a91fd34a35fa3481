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
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import ScoringConfig
from dreamfusion.errors import ConfigError

if TYPE_CHECKING:
    from dreamfusion.priors.base import Prior

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


class Scorer(registry.Component, abc.ABC):
    """Maps renders and prompts to a similarity table; everything else about scoring lives in the free functions."""

    kind = "scorer"

    @classmethod
    @abc.abstractmethod
    def load(cls, model: str | None, device: torch.device, prior: Prior) -> Scorer:
        """The scorer, for the trial's loaded prior; `model` is what `scoring.model` names when it is not a
        registered scorer (a CLIP checkpoint, say), else None."""

    def describe(self) -> str:
        """Logged next to the metrics (the run's `df.scorer` tag): which model produced the scores."""
        return self.name

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


def load_scorer(cfg: ScoringConfig, device: torch.device, prior: Prior) -> Scorer:
    """The scorer `scoring.model` names, loaded for the trial's prior."""
    cls, model = scorer_class(cfg, type(prior))
    check_pairing(cls, type(prior))
    return cls.load(model, device, prior)


def scorer_class(cfg: ScoringConfig, prior: type[Prior]) -> tuple[type[Scorer], str | None]:
    """(scorer class, checkpoint) that `scoring.model` names: `auto` is the scorer the prior pairs with, a
    registered name is that scorer, anything else is a checkpoint for the `clip` scorer."""
    if cfg.model == "auto":
        return registry.find("scorer", prior.scorer), None
    if cfg.model in registry.names("scorer"):
        return registry.find("scorer", cfg.model), None
    return registry.find("scorer", "clip"), cfg.model


def check_pairing(scorer: type[Scorer], prior: type[Prior]) -> None:
    """A scorer that reads its prior's own data works with that prior (or a subclass of it) only."""
    wanted = scorer.needs.prior
    if wanted is not None and not issubclass(prior, registry.find("prior", wanted)):
        raise ConfigError(
            f"scoring.model: {scorer.name} scores with the {wanted} prior's own data; expected "
            f"auto or a CLIP model with prior {prior.name}"
        )
