"""The toy world: a deterministic world generator, shipped weights that load offline and reproduce the model card,
and an SDS run with the shipped prior that moves a render's colour towards the prompt's colour."""

from __future__ import annotations

import json

import pytest
import torch

from dreamfusion.config.schema import PriorConfig, TrialConfig
from dreamfusion.errors import ConfigError
from dreamfusion.priors.base import load_prior
from dreamfusion.toyworld import world
from dreamfusion.toyworld.analytic import AnalyticPrior
from dreamfusion.toyworld.assets import WEIGHTS, shipped_sha256
from dreamfusion.toyworld.data import generate
from dreamfusion.toyworld.evaluate import (
    FIXED_SET_SEED,
    FIXED_SET_VIEWS,
    heldout_renders,
    retrieval_r1,
)
from dreamfusion.toyworld.prior import ToyWorldPrior, load_toyworld_prior
from dreamfusion.toyworld.scorer import load_toyworld_scorer
from dreamfusion.trial.loop import run_trial

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def prior():
    return load_toyworld_prior("cpu", torch.float32)


@pytest.fixture(scope="module")
def scorer():
    return load_toyworld_scorer("cpu")


# -- the world ----------------------------------------------------------------------------------------------------


def test_world_generator_is_deterministic():
    a = generate(seed=3, colour_views=1, shape_views=2, log=None)
    b = generate(seed=3, colour_views=1, shape_views=2, log=None)
    c = generate(seed=4, colour_views=1, shape_views=2, log=None)
    assert len(a) == 36 + 6 * 2
    assert torch.equal(a.images, b.images) and torch.equal(a.view_index, b.view_index)
    assert not torch.equal(a.images, c.images)


def test_sample_views_is_deterministic():
    views = [world.sample_views("a red cube", 3, 16, torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*views)


# -- the shipped weights ------------------------------------------------------------------------------------------


def test_weights_ship_small_and_in_safetensors():
    files = [p for p in WEIGHTS.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    for part in ("unet", "scheduler", "text_encoder", "tokenizer", "clip"):
        assert (WEIGHTS / part).is_dir()


def test_the_recorded_sha256_is_the_shipped_weights_as_a_trial_loads_them():
    """`prior_sha256.txt` (what `df-sweep report` and the documentation site compare runs and results pages with) is
    the fingerprint a trial of the default config tags its runs with, computed from the weights now shipped."""
    loaded = load_prior(PriorConfig(kind="toyworld"), "cpu")
    assert shipped_sha256() == loaded.fingerprint()


def test_clip_reproduces_model_card_on_fixed_set(scorer):
    expected = json.loads((WEIGHTS / "scores.json").read_text())["fixed_set"]
    assert (expected["seed"], expected["views_per_prompt"]) == (FIXED_SET_SEED, FIXED_SET_VIEWS)
    colour, shape = heldout_renders(FIXED_SET_SEED, FIXED_SET_VIEWS)
    # one view's hit may flip on float noise across machines and thread counts; more would be a real change
    assert retrieval_r1(scorer, colour, world.colour_prompts()) == pytest.approx(expected["colour_r1"], abs=1 / 72)
    assert retrieval_r1(scorer, shape, world.shape_prompts()) == pytest.approx(expected["geometry_r1"], abs=1 / 12)


def test_scorer_maps_geometry_to_shape_prompts(scorer):
    assert scorer.geometry_query("a red cube", []) == ("a cube", world.shape_prompts())
    assert scorer.default_prompt_set("a red cube") == world.colour_prompts()


def test_prior_interface(prior):
    assert prior.name.startswith("toyworld")
    emb = prior.text_embeddings(["a blue cone, side view", ""])
    assert emb.shape[0] == 2 and emb.dtype == torch.float32
    z = prior.to_model_space(torch.rand(2, 3, 64, 64))
    assert z.shape == (2, 3, 32, 32) and z.min() >= -1 and z.max() <= 1
    eps = prior.predict_noise(z, torch.tensor([10, 900]), emb)
    assert eps.shape == z.shape and torch.isfinite(eps).all()
    with pytest.raises(ConfigError, match="toy world"):
        prior.text_embedding("a photo of a dog")


# -- SDS with the shipped prior -----------------------------------------------------------------------------------

SDS = dict(
    prompt="a blue cube",
    device="cpu",
    checkpoint_every=1000,
    prior={"kind": "toyworld"},
    nerf={"size": "tiny"},
    render={"samples_per_ray": 32},
    eval={"views": 2, "turntable_frames": 2, "every": 1000},
)


def test_sds_moves_colour_towards_prompt(prior, scorer, tmp_path):
    """gt_colour_error is the distance of the mean foreground albedo to the prompt's true colour."""
    start = run_trial(TrialConfig.model_validate({**SDS, "steps": 1}), tmp_path / "a", prior=prior, scorer=scorer)
    end = run_trial(TrialConfig.model_validate({**SDS, "steps": 80}), tmp_path / "b", prior=prior, scorer=scorer)
    assert end.metrics["gt_colour_error"] < 0.6 * start.metrics["gt_colour_error"]


def test_both_toy_priors_report_the_linear_noise_schedule_without_loading():
    """The trained prior's from its shipped scheduler config, the analytic prior's from the toy world's constants:
    both the linear-β DDPM schedule (1e-4 → 0.02 over 1000 steps), written out here in float64."""
    expected = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    for cls in (ToyWorldPrior, AnalyticPrior):
        ab = cls.noise_schedule(PriorConfig(kind=cls.name))
        assert ab.shape == (1000,) and torch.allclose(ab.double(), expected, rtol=1e-5, atol=1e-8)
