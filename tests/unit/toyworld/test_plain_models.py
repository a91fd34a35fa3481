"""The toy world's plain-torch models against the diffusers and transformers models they port: on the shipped
weights, the same token ids, text states, ε̂ and CLIP features bit for bit; and loading the prior and its scorer,
as a trial does, imports neither library."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dreamfusion.config.schema import SpeedConfig
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.cameras import VIEW_SUFFIXES
from dreamfusion.priors.noise import CONFIG_PATH, alphas_cumprod, read_config
from dreamfusion.toyworld import world
from dreamfusion.toyworld.assets import WEIGHTS
from dreamfusion.toyworld.clip import load_clip, load_text_encoder
from dreamfusion.toyworld.prior import load_toyworld_prior
from dreamfusion.toyworld.tokenizer import ToyTokenizer
from dreamfusion.toyworld.unet import ToyUNet, load_unet

torch.set_num_threads(1)

#: Every caption the toy vocabulary accepts, with and without each view suffix, the unconditional "", and the
#: spellings the prior normalises (case, spacing around the comma).
PROMPTS = [p + s for p in world.all_prompts() for s in ("", *VIEW_SUFFIXES.values())] + [
    "",
    "A Red  Cube ,front view",
    "  a purple cylinder,overhead view ",
]


@pytest.fixture(scope="module")
def diffusers_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(WEIGHTS / "unet", low_cpu_mem_usage=False).eval()


@pytest.fixture(scope="module")
def plain_unet():
    return load_unet(WEIGHTS / "unet").eval()


def hf_tokenizer(part: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(WEIGHTS / part)


@pytest.mark.parametrize("part", ["tokenizer", "clip"])
def test_token_ids_are_the_clip_tokenizers_on_every_world_prompt(part):
    ours, theirs = ToyTokenizer.from_folder(WEIGHTS / part), hf_tokenizer(part)
    expected = theirs(PROMPTS, padding="max_length", max_length=16, truncation=True, return_tensors="pt")
    ids, mask = ours(PROMPTS)
    assert torch.equal(ids, expected.input_ids) and torch.equal(mask, expected.attention_mask)
    batch = ["a red cube", "a purple cylinder, overhead view", ""]  # padded to its longest, as the scorer asks
    expected = theirs(batch, padding=True, truncation=True, max_length=16, return_tensors="pt")
    ids, mask = ours(batch, pad_to_max=False)
    assert torch.equal(ids, expected.input_ids) and torch.equal(mask, expected.attention_mask)


def test_text_states_are_clip_text_models():
    from transformers import CLIPTextModel

    theirs = CLIPTextModel.from_pretrained(WEIGHTS / "text_encoder").eval()
    ours = load_text_encoder(WEIGHTS / "text_encoder")
    ids, _ = ToyTokenizer.from_folder(WEIGHTS / "tokenizer")(PROMPTS)
    with torch.no_grad():
        for batch in (ids[:1], ids[-3:-2], ids[:5], ids):  # one prompt at a time is how the prior asks
            assert torch.equal(ours(batch), theirs(input_ids=batch).last_hidden_state)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_unet_is_diffusers_bit_for_bit(diffusers_unet, plain_unet, batch):
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, 3, 32, 32, generator=g)  # [B, 3, 32, 32]
    ids, _ = ToyTokenizer.from_folder(WEIGHTS / "tokenizer")(PROMPTS[3 : 3 + batch])
    context = load_text_encoder(WEIGHTS / "text_encoder")(ids).detach()  # [B, 16, 64]
    with torch.no_grad():
        for t in (torch.randint(0, 1000, (batch,), generator=g), torch.tensor(999)):
            expected = diffusers_unet(x, t, encoder_hidden_states=context).sample
            assert torch.equal(plain_unet(x, t, context), expected)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_the_shared_trunk_is_the_same_maths(plain_unet, batch):
    """x_t [B] under text states [2B] is the UNet of the two copies [2B]: bit for bit at two views or more (the
    default is two), to rounding at one."""
    g = torch.Generator().manual_seed(batch)
    x, t = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 1000, (batch,), generator=g)
    context = torch.randn(2 * batch, 16, 64, generator=g)
    with torch.no_grad():
        shared, copies = plain_unet(x, t, context), plain_unet(torch.cat([x, x]), torch.cat([t, t]), context)
    assert torch.equal(shared, copies) if batch > 1 else torch.allclose(shared, copies, atol=1e-5)


@pytest.mark.parametrize("shared", [True, False])
def test_the_prior_shares_its_trunk_when_the_trials_switch_says(shared):
    prior = load_toyworld_prior()
    prior.use_speed(SpeedConfig(shared_trunk=shared))
    z, t = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([500, 20])
    emb = prior.text_embeddings(["a red cube", "a red cube", "", ""])
    seen = []
    prior.unet.conv_in.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    with torch.no_grad():
        eps = prior.predict_noise_repeated(z, t, emb)
        expected = prior.predict_noise(torch.cat([z, z]), torch.cat([t, t]), emb)
    assert seen[0] == (2 if shared else 4) and torch.equal(eps, expected)


def test_scorer_clip_features_are_clip_models():
    from transformers import CLIPModel

    theirs, ours = CLIPModel.from_pretrained(WEIGHTS / "clip").eval(), load_clip(WEIGHTS / "clip")
    tokenizer = ToyTokenizer.from_folder(WEIGHTS / "clip")
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        for prompts in (["a red cube"], world.colour_prompts(), ["a cube", "a blue torus with a spot, back view"]):
            ids, padding = tokenizer(prompts, pad_to_max=False)
            expected = theirs.get_text_features(input_ids=ids, attention_mask=padding).pooler_output
            assert torch.equal(ours.text_features(ids, padding), expected)
        for batch in (images[:1], images):
            assert torch.equal(ours.image_features(batch), theirs.get_image_features(pixel_values=batch).pooler_output)


def test_noise_schedule_is_the_diffusers_scheduler_table():
    from diffusers import DDPMScheduler

    config = read_config(WEIGHTS / CONFIG_PATH)
    assert torch.equal(alphas_cumprod(config), DDPMScheduler.from_config(config).alphas_cumprod)


def test_a_unet_config_the_port_does_not_compute_is_refused(plain_unet):
    with pytest.raises(ConfigError, match="use_linear_projection"):
        ToyUNet({**plain_unet.config, "use_linear_projection": True})
    with pytest.raises(ConfigError, match="UNetMidBlock2DSimpleCrossAttn"):
        ToyUNet({**plain_unet.config, "mid_block_type": "UNetMidBlock2DSimpleCrossAttn"})


def test_loading_the_toy_prior_and_scorer_imports_neither_diffusers_nor_transformers():
    """A trial worker's loads (through the registry, as `load_prior` and `load_scorer` do), in a fresh process."""
    code = (
        "import sys\n"
        "from dreamfusion.config.schema import PriorConfig, ScoringConfig\n"
        "from dreamfusion.priors.base import load_prior\n"
        "from dreamfusion.scoring.metrics import load_scorer\n"
        "prior = load_prior(PriorConfig(kind='toyworld'), 'cpu')\n"
        "load_scorer(ScoringConfig(), prior.device, prior)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
