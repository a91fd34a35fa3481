"""The shipped full-size architectures (`prior.model: random:...`): built through the real adapters from the
published configs, checked on the meta device, where a 9 B-parameter prior costs no memory. The parameter counts
are the published sizes of the real checkpoints (SD 2.1: UNet 865,910,724, VAE 83,653,863, OpenCLIP-H text
340,387,840; DeepFloyd IF-I-XL: a 4.3 B UNet and T5-v1.1-XXL's 4.76 B encoder), so a wrong config fails here."""

from __future__ import annotations

import math

import pytest
import torch

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError
from dreamfusion.priors.base import load_prior
from dreamfusion.priors.hf import load_module

META = "meta"


def _params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.fixture(scope="module")
def sd():
    return load_prior(PriorConfig(kind="stable-diffusion", model="random:sd-2.1-base", dtype="float16"), META)


@pytest.fixture(scope="module")
def deepfloyd():
    return load_prior(PriorConfig(kind="deepfloyd-if", model="random:if-i-xl", dtype="float16"), META)


def test_the_shorthand_picks_the_adapter_of_each_architecture():
    assert PriorConfig.model_validate("random:sd-2.1-base").kind == "stable-diffusion"
    assert PriorConfig.model_validate("random:if-i-xl").kind == "deepfloyd-if"
    with pytest.raises(ValueError, match="neither a registered prior"):
        PriorConfig.model_validate("random:sd-9")


def test_an_architecture_of_the_other_adapter_is_a_config_error():
    with pytest.raises(ConfigError, match="prior.model: 'random:if-i-xl' is not an architecture stable-diffusion"):
        load_prior(PriorConfig(kind="stable-diffusion", model="random:if-i-xl"), META)


def test_sd_has_the_published_sizes_and_runs_fp16_behind_float32(sd):
    assert _params(sd.unet) == 865_910_724
    assert _params(sd.vae) == 83_653_863
    assert _params(sd.text_encoder) == 340_387_840
    assert sd.unet.dtype == sd.vae.dtype == sd.text_encoder.dtype == torch.float16
    assert sd.image_size == 512 and sd.num_train_timesteps == 1000
    emb = sd.encode_text(["a hamburger", ""])
    assert emb.shape == (2, 77, 1024) and emb.dtype == torch.float32
    z = sd.to_model_space(torch.rand(2, 3, 64, 64, device=META))  # 64 px render → 512 px → VAE encoder
    assert z.shape == (2, 4, 64, 64) and z.dtype == torch.float32
    eps = sd.predict_noise(z, torch.tensor([20, 980], device=META), emb)
    assert eps.shape == (2, 4, 64, 64) and eps.dtype == torch.float32


def test_deepfloyd_if_xl_has_the_published_sizes_and_shapes(deepfloyd):
    unet, text = _params(deepfloyd.unet), _params(deepfloyd.text_encoder)
    assert 4.25e9 < unet < 4.35e9 and 4.7e9 < text < 4.8e9
    assert deepfloyd.unet.dtype == torch.float16
    # T5's `wo` stays float32 in a float16 load, as from_pretrained keeps it
    assert {p.dtype for n, p in deepfloyd.text_encoder.named_parameters() if n.endswith("wo.weight")} == {torch.float32}
    z = deepfloyd.to_model_space(torch.rand(2, 3, 128, 128, device=META))
    assert z.shape == (2, 3, 64, 64) and z.dtype == torch.float32
    # encode_text's attention mask needs data (transformers checks it is all ones), which meta tensors lack: the
    # encoder's shapes are checked without it, the UNet's with an embedding of that shape
    tokens = deepfloyd.tokenizer(["a hamburger"], padding="max_length", max_length=77, return_tensors="pt")
    hidden = deepfloyd.text_encoder(tokens.input_ids.to(META)).last_hidden_state
    assert hidden.shape == (1, 77, 4096)
    eps = deepfloyd.predict_noise(z, torch.tensor([20, 980], device=META), torch.zeros(2, 77, 4096, device=META))
    assert eps.shape == (2, 3, 64, 64) and eps.dtype == torch.float32


def test_random_weights_are_seeded_and_leave_the_callers_rng_alone():
    """Every process that builds an architecture builds the same network: local and shared trials agree."""
    from diffusers import AutoencoderKL

    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = load_module(AutoencoderKL, "random:sd-2.1-base", "vae", torch.device("cpu"), torch.float32)
    b = load_module(AutoencoderKL, "random:sd-2.1-base", "vae", torch.device("cpu"), torch.float32)
    assert torch.equal(torch.get_rng_state(), before) and torch.get_default_dtype() == torch.float32
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not any(p.requires_grad for p in a.parameters())


def test_codec_and_denoiser_parts_hold_only_their_modules(sd):
    codec = load_prior(PriorConfig(kind="stable-diffusion", model="random:sd-2.1-base"), META, part="codec")
    denoiser = load_prior(PriorConfig(kind="deepfloyd-if", model="random:if-i-xl"), META, part="denoiser")
    assert codec.unet is None and codec.text_encoder is None and codec.vae is not None
    assert denoiser.unet is not None and denoiser.text_encoder is not None
    assert codec.image_size == sd.image_size and codec.alphas_cumprod.shape == sd.alphas_cumprod.shape == (1000,)
    assert "83.7M params of the codec" in codec.describe()


def test_random_architectures_know_their_published_noise_schedules_without_loading():
    """ᾱ_t from the shipped scheduler configs, against the published β schedules computed here: SD's scaled-linear
    β (√β linear from √0.00085 to √0.012) and IF's squared cosine (Nichol & Dhariwal 2021, β capped at 0.999)."""
    from dreamfusion.priors.diffusers_if import DeepFloydIFPrior
    from dreamfusion.priors.diffusers_sd import StableDiffusionPrior

    T = 1000
    sd_betas = torch.linspace(0.00085**0.5, 0.012**0.5, T, dtype=torch.float64) ** 2
    bar = [math.cos((i / T + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(T + 1)]
    if_betas = torch.tensor([min(1 - bar[i + 1] / bar[i], 0.999) for i in range(T)], dtype=torch.float64)
    for cls, model, betas in (
        (StableDiffusionPrior, "random:sd-2.1-base", sd_betas),
        (DeepFloydIFPrior, "random:if-i-xl", if_betas),
    ):
        found = cls.noise_schedule(PriorConfig(kind=cls.name, model=model))
        assert found.dtype == torch.float32 and found.shape == (T,)
        torch.testing.assert_close(found.double(), torch.cumprod(1 - betas, 0), rtol=1e-5, atol=1e-7)
