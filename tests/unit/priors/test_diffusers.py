"""The diffusers adapters on tiny random pipelines loaded from disk exactly as the real hub checkpoints are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import pytest
import torch
from tiny_pipelines import CLIP_MAX_LENGTH, TEXT_DIM, make_tiny_if, make_tiny_sd, with_prediction_type

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError
from dreamfusion.priors.base import Prior, load_prior

#: kind → (builder, model-space shape of one image, text tokens): SD latents of 16 px, IF pixels at 16 px.
CASES = {
    "stable-diffusion": (make_tiny_sd, (4, 8, 8), CLIP_MAX_LENGTH),
    "deepfloyd-if": (make_tiny_if, (3, 16, 16), 77),  # IF pads T5 input to 77 whatever the tokenizer says
}


class Case(NamedTuple):
    prior: Prior
    kind: str
    path: Path
    shape: tuple[int, int, int]
    tokens: int


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory) -> Case:
    """Each adapter loaded once through the factory, because building and loading is most of the test time."""
    make, shape, tokens = CASES[request.param]
    path = make(tmp_path_factory.mktemp(request.param))
    prior = load_prior(PriorConfig(kind=request.param, model=str(path)), "cpu")
    return Case(prior, request.param, path, shape, tokens)


def _rgb(batch: int = 2, size: int = 24, requires_grad: bool = False) -> torch.Tensor:
    """Renders at a size the prior must resize from (neither model works at 24 px)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, size, size, generator=g).requires_grad_(requires_grad)  # [B, 3, 24, 24]


def test_loads_frozen_float32_on_cpu(case):
    prior = case.prior
    assert prior.name == case.kind and prior.model == str(case.path)
    assert prior.describe().startswith(f"{case.kind}:{case.path}") and "epsilon" in prior.describe()
    assert prior.device == torch.device("cpu") and prior.dtype == torch.float32
    assert prior.alphas_cumprod.dtype == torch.float32 and prior.num_train_timesteps == 1000
    assert all(not p.requires_grad for p in _parameters(prior))


def test_shapes(case):
    prior, shape = case.prior, case.shape
    emb = prior.encode_text(["a red cube", ""])
    assert emb.shape == (2, case.tokens, TEXT_DIM) and emb.dtype == torch.float32
    z = prior.to_model_space(_rgb())
    assert z.shape == (2, *shape) and z.dtype == torch.float32
    eps = prior.predict_noise(z, torch.tensor([10, 900]), emb)
    assert eps.shape == z.shape and eps.dtype == torch.float32


def test_prompt_and_unconditional_embeddings_differ_and_are_cached(case):
    prior = case.prior
    cond = prior.text_embedding("a red cube, front view")
    assert prior.text_embedding("a red cube, front view") is cond
    assert not torch.allclose(cond, prior.text_embedding(""))
    assert prior.text_embeddings(["", "a red cube, front view"]).shape[0] == 2


def test_gradient_reaches_rgb_but_no_prior_parameter(case):
    """The Jacobian ablation's path: through the denoiser and (SD) the VAE encoder, into the render only."""
    prior = case.prior
    rgb = _rgb(requires_grad=True)
    z = prior.to_model_space(rgb)
    eps = prior.predict_noise(z, torch.tensor([500, 500]), prior.text_embeddings(["a red cube", "a red cube"]))
    eps.square().sum().backward()
    assert rgb.grad is not None and rgb.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in _parameters(prior))


def test_from_model_space_is_an_image_in_unit_range(case):
    prior, shape = case.prior, case.shape
    img = prior.from_model_space(torch.randn(2, *shape) * 3)
    assert img.shape[:2] == (2, 3) and img.dtype == torch.float32
    assert img.min() >= 0 and img.max() <= 1


def test_sds_step_gives_a_finite_nonzero_gradient_on_rgb(case):
    """One SDS update as the trainer does it: ε̂ without autograd, (ε̂ − ε) injected as the gradient of z."""
    prior = case.prior
    torch.manual_seed(0)
    rgb = _rgb(requires_grad=True)
    z = prior.to_model_space(rgb)  # [B, C, h, w]
    t = torch.tensor([200, 700])
    ab = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    eps = torch.randn_like(z)
    z_t = ab.sqrt() * z + (1 - ab).sqrt() * eps
    with torch.no_grad():
        eps_hat = prior.predict_noise(z_t, t, prior.text_embeddings(["a red cube", "a red cube"]))
    loss = 0.5 * ((z - (z - (eps_hat - eps)).detach()) ** 2).sum()
    loss.backward()
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    assert all(p.grad is None for p in _parameters(prior))


def test_float16_denoiser_still_talks_float32(case):
    """float16 is what `dtype: auto` picks on CUDA; SDS must see float32 in and out regardless."""
    prior = load_prior(PriorConfig(kind=case.kind, model=str(case.path), dtype="float16"), "cpu")
    rgb = _rgb(requires_grad=True)
    z = prior.to_model_space(rgb)
    eps = prior.predict_noise(z, torch.tensor([100, 800]), prior.text_embeddings(["a red cube", ""]))
    assert prior.dtype == torch.float16 and z.dtype == eps.dtype == torch.float32
    eps.sum().backward()
    assert torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0


# -- noise schedule and prediction type --------------------------------------------------------------------------


def test_noise_schedule_is_known_without_the_weights(case):
    """The class reads the checkpoint's scheduler config alone and gets the loaded prior's ᾱ; the tiny pipelines
    carry the published checkpoints' scheduler configs, so the default checkpoint's shipped copy agrees too."""
    cls = type(case.prior)
    local = cls.noise_schedule(PriorConfig(kind=case.kind, model=str(case.path)))
    assert local.dtype == torch.float32 and torch.equal(local, case.prior.alphas_cumprod)
    assert torch.equal(cls.noise_schedule(PriorConfig(kind=case.kind)), local)


def test_v_prediction_checkpoint_gives_epsilon(case, tmp_path):
    """The same weights read as a v-prediction model: ε̂ = α_t·v + σ_t·z_t, v being the UNet's output (what the
    ε-prediction prior returns as is). That is ε exactly, since z_t = α_t·x + σ_t·ε and v = α_t·ε − σ_t·x."""
    path = with_prediction_type(case.path, tmp_path / "v", "v_prediction")
    v_prior = load_prior(PriorConfig(kind=case.kind, model=str(path)), "cpu")
    assert v_prior.prediction_type == "v_prediction" and "v_prediction" in v_prior.describe()
    g = torch.Generator().manual_seed(1)
    z_t = torch.randn(3, *case.shape, generator=g)
    t = torch.tensor([20, 500, 980])
    emb = case.prior.text_embeddings(["a red cube", "", "a blue ball"])
    v = case.prior.predict_noise(z_t, t, emb)  # [3, C, h, w] the UNet's output
    ab = case.prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    expected = ab.sqrt() * v.double() + (1 - ab).sqrt() * z_t.double()
    eps = v_prior.predict_noise(z_t, t, emb)
    assert torch.allclose(eps.double(), expected, atol=1e-5)
    assert not torch.allclose(eps, v, atol=1e-2)  # the conversion did something


def test_other_prediction_types_are_refused_before_any_weight_loads(case, tmp_path):
    """A folder holding nothing but a scheduler that predicts x0: one line naming the model and what it predicts,
    not a complaint about missing weights."""
    path = tmp_path / "x0-model"
    (path / "scheduler").mkdir(parents=True)
    config = json.loads((case.path / "scheduler" / "scheduler_config.json").read_text())
    (path / "scheduler" / "scheduler_config.json").write_text(json.dumps({**config, "prediction_type": "sample"}))
    with pytest.raises(ConfigError) as err:
        load_prior(PriorConfig(kind=case.kind, model=str(path)), "cpu")
    message = str(err.value)
    assert message.startswith(f"prior.model: {str(path)!r} predicts 'sample'; SDS needs ε") and "\n" not in message
    assert "epsilon, v_prediction" in message


def test_stable_diffusion_latents_are_the_posterior_mean_or_a_sample_from_the_trial_generator(tmp_path_factory):
    path = make_tiny_sd(tmp_path_factory.mktemp("sd-latents"))
    mean_prior = load_prior(PriorConfig(kind="stable-diffusion", model=str(path)), "cpu")
    sample_prior = load_prior(PriorConfig(kind="stable-diffusion", model=str(path), latents="sample"), "cpu")
    rgb = _rgb(size=16)  # the tiny VAE's own size: nothing to resize, so the posterior below is the same
    mean = mean_prior.to_model_space(rgb, torch.Generator().manual_seed(0))
    assert torch.equal(mean, mean_prior.to_model_space(rgb))  # the mean draws nothing
    a = sample_prior.to_model_space(rgb, torch.Generator().manual_seed(0))
    b = sample_prior.to_model_space(rgb, torch.Generator().manual_seed(0))
    c = sample_prior.to_model_space(rgb, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.allclose(a, mean, atol=1e-3)
    posterior = sample_prior.vae.encode(rgb * 2 - 1).latent_dist
    spread = (a / sample_prior.vae.config.scaling_factor - posterior.mean) / posterior.std
    assert abs(float(spread.mean())) < 0.3 and 0.7 < float(spread.std()) < 1.3  # a draw of N(mean, std²)


@pytest.mark.parametrize("kind", list(CASES))
def test_missing_local_path_is_a_config_error(kind, tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="prior.model") as err:
        load_prior(PriorConfig(kind=kind, model=str(missing)), "cpu")
    assert str(missing) in str(err.value) and "\n" not in str(err.value)


def test_local_directory_without_weights_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="prior.model: cannot load .*local directory"):
        load_prior(PriorConfig(kind="stable-diffusion", model=str(tmp_path)), "cpu")


def _parameters(prior: Prior) -> list[torch.nn.Parameter]:
    modules = [m for m in vars(prior).values() if isinstance(m, torch.nn.Module)]
    assert modules, "the adapter holds no modules"
    return [p for m in modules for p in m.parameters()]
