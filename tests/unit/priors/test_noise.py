"""The shipped scheduler configs of the published checkpoints give their noise schedules, checked against the
β schedules written out here from their definitions, without diffusers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError
from dreamfusion.priors.diffusers_if import DeepFloydIFPrior
from dreamfusion.priors.diffusers_sd import StableDiffusionPrior
from dreamfusion.priors.noise import alphas_cumprod, checkpoint_config, shipped_config, shipped_models

T = 1000


def scaled_linear() -> np.ndarray:
    """Stable Diffusion: β linear in sqrt(β) from 0.00085 to 0.012."""
    return np.cumprod(1 - np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2)


def squared_cosine() -> np.ndarray:
    """DeepFloyd IF (Nichol & Dhariwal 2021): ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), β_i = 1 − ᾱ((i+1)/T)/ᾱ(i/T)
    capped at 0.999."""
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = [min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)]
    return np.cumprod(1 - np.array(betas))


@pytest.mark.parametrize(
    "model, reference, prediction",
    [
        ("stabilityai/stable-diffusion-2-1-base", scaled_linear, "epsilon"),
        ("DeepFloyd/IF-I-XL-v1.0", squared_cosine, "epsilon"),
    ],
)
def test_shipped_configs_give_the_published_schedules(model, reference, prediction):
    config = shipped_config(model)
    assert config is not None and config["prediction_type"] == prediction and config["num_train_timesteps"] == T
    ab = alphas_cumprod(config)
    assert ab.shape == (T,) and ab.dtype == torch.float32
    assert np.allclose(ab.double().numpy(), reference(), rtol=2e-5, atol=1e-9)


def test_the_shipped_models_are_the_priors_defaults():
    assert shipped_models() == sorted([StableDiffusionPrior.default_model, DeepFloydIFPrior.default_model])
    for cls in (StableDiffusionPrior, DeepFloydIFPrior):
        expected = alphas_cumprod(shipped_config(cls.default_model) or {})
        assert torch.equal(cls.noise_schedule(PriorConfig(kind=cls.name)), expected)


def test_an_unshipped_hub_id_is_a_one_line_error_naming_what_is_known():
    with pytest.raises(ConfigError) as err:
        checkpoint_config("stabilityai/stable-diffusion-2-1")
    message = str(err.value)
    assert message.startswith("prior.model: the noise schedule of 'stabilityai/stable-diffusion-2-1' is not shipped")
    assert "DeepFloyd/IF-I-XL-v1.0" in message and "\n" not in message


def test_a_local_directory_without_a_scheduler_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match=r"scheduler_config.json: not a readable scheduler config"):
        StableDiffusionPrior.noise_schedule(PriorConfig(kind="stable-diffusion", model=str(tmp_path)))
