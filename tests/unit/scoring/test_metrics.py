"""Scoring: the metric arithmetic on known tables, and CLIPScorer on a tiny random CLIP loaded like a real one."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from dreamfusion import registry
from dreamfusion.config.schema import ScoringConfig
from dreamfusion.errors import ConfigError
from dreamfusion.priors.diffusers_sd import StableDiffusionPrior
from dreamfusion.scoring.clip import CLIPScorer
from dreamfusion.scoring.metrics import (
    DEFAULT_PROMPT_SET,
    Scorer,
    check_pairing,
    clip_score,
    load_scorer,
    r_precision,
    score_views,
    scorer_class,
)
from dreamfusion.toyworld.analytic import AnalyticPrior
from dreamfusion.toyworld.prior import ToyWorldPrior
from dreamfusion.toyworld.scorer import ToyWorldScorer

WORDS = ["a", "red", "blue", "green", "cube", "sphere", "torus", "cone"]
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]


def _write_tokenizer_files(folder) -> None:
    """A CLIP byte-level BPE vocab with whole-word tokens for WORDS, built by left-to-right merges."""
    vocab = ["<|startoftext|>", "<|endoftext|>"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab += letters + [f"{c}</w>" for c in letters]
    merges = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.append(pieces[0])
    vocab = list(dict.fromkeys(vocab))
    merges = list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIP checkpoint folder: weights, tokenizer and image processor config, as on the hub."""
    vocab_dir = tmp_path_factory.mktemp("vocab")
    _write_tokenizer_files(vocab_dir)
    tokenizer = CLIPTokenizer.from_pretrained(vocab_dir)
    assert tokenizer.convert_ids_to_tokens(tokenizer("a red cube").input_ids) == [
        "<|startoftext|>",
        "a</w>",
        "red</w>",
        "cube</w>",
        "<|endoftext|>",
    ]
    special = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=16, **small, **special),
        vision_config=dict(image_size=32, patch_size=8, **small),
        projection_dim=16,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    CLIPModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({"image_mean": MEAN, "image_std": STD}))
    return path


@pytest.fixture(scope="module")
def scorer(clip_dir) -> Scorer:
    return CLIPScorer.load(str(clip_dir), torch.device("cpu"), prior=None)


def _images(n: int = 3, size: int = 40) -> Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))  # [N, 3, H, W]


# ---------------------------------------------------------------------------------------------------------------
# CLIPScorer


def test_similarity_shape(scorer):
    assert isinstance(scorer, CLIPScorer)
    sim = scorer.similarity(_images(), ["a red cube", "a blue sphere"])
    assert sim.shape == (3, 2) and sim.dtype == torch.float32


def test_clip_score_is_100_cos_of_the_raw_model(scorer, clip_dir):
    images = _images()
    pixels = scorer.preprocess(images)  # [N, 3, 32, 32]
    raw = CLIPModel.from_pretrained(clip_dir).eval()
    tokens = CLIPTokenizer.from_pretrained(clip_dir)(["a green torus"], return_tensors="pt")
    with torch.no_grad():
        img = raw.get_image_features(pixel_values=pixels)
        txt = raw.get_text_features(**tokens)
    img = img if isinstance(img, Tensor) else img.pooler_output  # [N, 16]
    txt = txt if isinstance(txt, Tensor) else txt.pooler_output  # [1, 16]
    expected = (100 * F.cosine_similarity(img, txt, dim=-1)).mean().item()
    assert clip_score(scorer, images, "a green torus") == pytest.approx(expected, abs=1e-4)


def test_preprocess_uses_the_checkpoint_normalisation(scorer):
    grey = torch.full((2, 3, 48, 64), 0.5)  # non-square: resized and centre-cropped
    pixels = scorer.preprocess(grey)
    expected = ((0.5 - torch.tensor(MEAN)) / torch.tensor(STD)).view(1, 3, 1, 1).expand(2, 3, 32, 32)
    torch.testing.assert_close(pixels, expected)


def test_scoring_is_deterministic(scorer):
    prompts = ["a red cube", "a blue sphere", "a cone"]
    first = scorer.similarity(_images(), prompts)
    second = scorer.similarity(_images(), prompts)  # second call reads the cached text features
    assert torch.equal(first, second)


def test_missing_model_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="scoring.model") as info:
        CLIPScorer.load(str(tmp_path / "no-such-clip"), torch.device("cpu"), prior=None)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# Metrics, on a scorer whose similarity is a fixed table: these test the metric arithmetic, not any model.


class TableScorer(Scorer):
    """Similarity of view i to prompt p is table[p][i]; unknown prompts score -1 everywhere."""

    name = "table"

    @classmethod
    def load(cls, model, device, prior):
        raise NotImplementedError("made directly by the tests")

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.asked: list[list[str]] = []

    def similarity(self, images: Tensor, prompts: list[str]) -> Tensor:
        self.asked.append(list(prompts))
        columns = [self.table.get(p, [-1.0] * len(images)) for p in prompts]
        return torch.tensor(columns, dtype=torch.float32).T  # [N, P]


VIEWS = torch.zeros(4, 3, 8, 8)


def test_r_precision_all_correct():
    s = TableScorer({"a cube": [9, 9, 9, 9], "a cone": [1, 2, 3, 4], "a torus": [0, 0, 0, 0]})
    assert r_precision(s, VIEWS, "a cube", ["a cube", "a cone", "a torus"]) == 1.0


def test_r_precision_half_and_ties_are_misses():
    s = TableScorer({"a cube": [5, 5, 5, 5], "a cone": [1, 9, 5, 2]})
    # view 0 and 3 hit, view 1 loses, view 2 ties → miss
    assert r_precision(s, VIEWS, "a cube", ["a cone", "a cube"]) == 0.5


def test_r_precision_needs_the_true_prompt_above_every_other_not_just_the_worst():
    s = TableScorer({"a cube": [5, 5, 5, 5], "a cone": [9, 1, 1, 6], "a torus": [0, 0, 7, 0]})
    # view 0: beats the torus, loses to the cone; view 2: beats the cone, loses to the torus; views 1, 3: hits
    assert r_precision(s, VIEWS, "a cube", ["a cube", "a cone", "a torus"]) == 0.25


def test_r_precision_adds_a_missing_prompt_and_drops_duplicates():
    s = TableScorer({"a cube": [5, 5, 5, 5], "a cone": [1, 1, 1, 1]})
    assert r_precision(s, VIEWS, "a cube", ["a cone", "a cone"]) == 1.0
    assert s.asked == [["a cone", "a cube"]]


def test_r_precision_of_a_one_prompt_set_is_one():
    """With no distractor nothing can outscore the true prompt: every view is a hit (and nothing divides by 0)."""
    s = TableScorer({"a cube": [-3, 0, 2, 5]})
    assert r_precision(s, VIEWS, "a cube", ["a cube"]) == 1.0
    assert r_precision(s, VIEWS, "a cube", []) == 1.0  # the prompt is added to an empty set


def test_clip_score_is_the_mean_similarity():
    s = TableScorer({"a cube": [1, 2, 3, 6]})
    assert clip_score(s, VIEWS, "a cube") == 3.0


def test_geometry_query_and_prompt_set_defaults():
    s = TableScorer({})
    assert s.geometry_query("a red cube", ["a red cube", "a cone"]) == ("a red cube", ["a red cube", "a cone"])
    assert s.default_prompt_set("a red cube") == [*DEFAULT_PROMPT_SET, "a red cube"]
    assert s.default_prompt_set(DEFAULT_PROMPT_SET[0]) == list(DEFAULT_PROMPT_SET)


def test_score_views_ranks_textureless_renders_with_the_geometry_query():
    class ShapeOnly(TableScorer):
        def similarity(self, images, prompts):
            sim = super().similarity(images, prompts)
            return sim if images.mean() == 0 else -sim  # textureless renders are all ones: the table flips

        def geometry_query(self, prompt, prompt_set):
            return "a cube", ["a cube", "a cone"]

    s = ShapeOnly({"a red cube": [3, 3, 3, 3], "a cube": [-2, -2, -2, -2], "a cone": [2, 4, 4, -5]})
    metrics = score_views(s, VIEWS, torch.ones_like(VIEWS), "a red cube", ["a red cube", "a cone"])
    assert metrics == {"clip_score": 3.0, "clip_r_precision": 0.5, "clip_r_precision_geometry": 0.75}
    assert s.asked[-1] == ["a cube", "a cone"]


def test_score_views_passes_the_prompt_set_to_the_geometry_query():
    """The default geometry query ranks textureless renders among the same prompt set as the colour renders."""
    s = TableScorer({"a red cube": [3, 3, 3, 3], "a cone": [1, 4, 1, 4], "a torus": [4, 1, 1, 1]})
    metrics = score_views(s, VIEWS, torch.ones_like(VIEWS), "a red cube", ["a cone", "a torus"])
    # view 0 loses to the torus, views 1 and 3 to the cone: only view 2 is a hit, for colour and geometry alike
    assert metrics == {"clip_score": 3.0, "clip_r_precision": 0.25, "clip_r_precision_geometry": 0.25}
    assert s.asked[-1] == ["a cone", "a torus", "a red cube"]


# ---------------------------------------------------------------------------------------------------------------
# Factory dispatch


def test_load_scorer_loads_the_named_clip_checkpoint(clip_dir):
    prior = AnalyticPrior(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), ["a red cube"], "cpu")
    loaded = load_scorer(ScoringConfig(model=str(clip_dir)), torch.device("cpu"), prior)
    assert isinstance(loaded, CLIPScorer)
    assert loaded.describe() == f"clip:{clip_dir}"


def test_analytic_scoring_needs_the_analytic_prior():
    analytic, _ = scorer_class(ScoringConfig(model="analytic"), StableDiffusionPrior)
    check_pairing(analytic, AnalyticPrior)
    with pytest.raises(ConfigError, match="scoring.model: analytic .* with prior stable-diffusion"):
        check_pairing(analytic, StableDiffusionPrior)


def test_auto_pairs_each_prior_with_the_scorer_it_declares():
    assert scorer_class(ScoringConfig(), ToyWorldPrior) == (ToyWorldScorer, None)
    assert scorer_class(ScoringConfig(), AnalyticPrior) == (registry.find("scorer", "analytic"), None)
    assert scorer_class(ScoringConfig(), StableDiffusionPrior) == (CLIPScorer, None)


def test_a_model_that_is_not_a_registered_scorer_is_a_clip_checkpoint():
    assert scorer_class(ScoringConfig(model="org/some-clip"), ToyWorldPrior) == (CLIPScorer, "org/some-clip")
    assert scorer_class(ScoringConfig(model="toyworld"), StableDiffusionPrior) == (ToyWorldScorer, None)
