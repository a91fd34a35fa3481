"""The SDS-family losses (`sds.loss`: sds, csd, nfsd) against exact maths.

An affine prior defined here has a known ε̂ for every prompt, ε̂(z_t; y, t) = c_t·z_t + b_y, so each loss's gradient
can be written down by hand: the condition direction ε_c − ε_u is b_y − b_∅ exactly, the negative-prompt term
b_∅ − b_neg, and nothing else about the prior enters. The analytic prior then checks what NFSD reduces to on the toy
world, where its negative prompt defaults to "".
"""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import PriorConfig, SDSConfig
from dreamfusion.priors.base import Prior
from dreamfusion.sds.loss import make_loss
from dreamfusion.sds.nfsd import PAPER_NEGATIVE_PROMPT
from dreamfusion.toyworld.analytic import AnalyticPrior

T = 1000
SHAPE = (3, 4, 4)


class AffinePrior(Prior):
    """ε̂(z_t; y, t) = c_t·z_t + b_y: c_t = t/T, b_y a fixed random pattern per prompt (seeded by the prompt's
    hash), b_∅ for the empty prompt. Its schedule is the linear-β one; `calls` counts denoiser batches."""

    name = "test-affine"  # an open vocabulary (no `needs.vocabulary`): NFSD defaults to the paper's y_neg

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> AffinePrior:
        return cls()

    def __init__(self) -> None:
        super().__init__()
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, T, dtype=torch.float64), 0).float()
        self.calls: list[int] = []

    def bias(self, prompt: str) -> Tensor:
        seed = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
        return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))  # [3, 4, 4]

    def encode_text(self, prompts: list[str]) -> Tensor:
        return torch.stack([self.bias(p) for p in prompts])  # [B, 3, 4, 4]: the embedding is b_y itself

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return rgb * 2 - 1

    def from_model_space(self, z: Tensor) -> Tensor:
        return (z + 1) / 2

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        self.calls.append(z_t.shape[0])
        return (t.float() / T).view(-1, 1, 1, 1) * z_t + emb


@pytest.fixture
def prior() -> AffinePrior:
    return AffinePrior()


def _batch(prior: AffinePrior, t: list[int], prompt: str = "a red cube"):
    g = torch.Generator().manual_seed(0)
    b = len(t)
    x = torch.randn(b, *SHAPE, generator=g).requires_grad_(True)
    noise = torch.randn(b, *SHAPE, generator=g)
    cond, uncond = prior.text_embeddings([prompt] * b), prior.text_embeddings([""] * b)
    return x, torch.tensor(t), noise, cond, uncond


def _w(prior: Prior, t: Tensor) -> Tensor:
    """w(t) = 1 − ᾱ_t, the default weighting, from the prior's table."""
    return (1 - prior.alphas_cumprod[t].double()).view(-1, 1, 1, 1)


def _run(prior: Prior, x, t, noise, cond, uncond, **cfg):
    out = make_loss(SDSConfig(**cfg))(prior, x, t, cond, uncond, noise)
    out.loss.backward()
    return out


@pytest.mark.parametrize("convention, scale, s", [("diffusers", 7.5, 7.5), ("paper", 100.0, 101.0)])
def test_csd_is_the_scaled_classifier_score_alone(prior, convention, scale, s):
    """w(t)·s·(ε_c − ε_u) = w(t)·s·(b_y − b_∅): no ε, no c_t·z_t. s is the multiplier of ε_c − ε_u in the guided
    prediction: the scale itself in the diffusers convention, ω + 1 in the paper's."""
    x, t, noise, cond, uncond = _batch(prior, [50, 400, 900])
    out = _run(prior, x, t, noise, cond, uncond, loss="csd", guidance_scale=scale, guidance_convention=convention)
    expected = _w(prior, t) * s * (prior.bias("a red cube") - prior.bias("")).double()
    assert torch.allclose(out.grad.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose((x.grad * 3).double(), expected, rtol=1e-5, atol=1e-5)  # injected exactly, / B
    assert prior.calls == [6]  # one denoiser call of 2B
    ab = prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    z_t = ab.sqrt() * x.detach().double() + (1 - ab).sqrt() * noise.double()
    eps_u = (t.double() / T).view(-1, 1, 1, 1) * z_t + prior.bias("").double()
    guided = eps_u + s * (prior.bias("a red cube") - prior.bias("")).double()
    assert torch.allclose(out.eps_hat.double(), guided, rtol=1e-5, atol=1e-4)  # ε̂ as the adapter check reads it

    other_noise = torch.randn(noise.shape, generator=torch.Generator().manual_seed(9))
    again = make_loss(SDSConfig(loss="csd", guidance_scale=scale, guidance_convention=convention))(
        prior, x, t, cond, uncond, other_noise
    )
    assert torch.allclose(again.grad, out.grad, rtol=1e-5, atol=1e-4)  # the injected noise does not enter CSD


def test_nfsd_uses_the_negative_prompt_above_t_200_and_the_unconditional_prediction_below(prior):
    """δ_D = ε_u = c_t·z_t + b_∅ for t < 200; δ_D = ε_u − ε_neg = b_∅ − b_neg for t ≥ 200 (c_t·z_t cancels);
    grad = w(t)(δ_D + s(b_y − b_∅)). t = 199 and 200 straddle the boundary. A prior with an open vocabulary gets
    the paper's negative prompt by default, in one denoiser call of 3B."""
    x, t, noise, cond, uncond = _batch(prior, [20, 199, 200, 900])
    s = 7.5
    out = _run(prior, x, t, noise, cond, uncond, loss="nfsd", guidance_scale=s)
    ab = prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    z_t = ab.sqrt() * x.detach().double() + (1 - ab).sqrt() * noise.double()
    b_y, b_0, b_neg = (prior.bias(p).double() for p in ("a red cube", "", PAPER_NEGATIVE_PROMPT))
    eps_u = (t.double() / T).view(-1, 1, 1, 1) * z_t + b_0
    small = torch.tensor([True, True, False, False]).view(-1, 1, 1, 1)
    delta_d = torch.where(small, eps_u, (b_0 - b_neg).expand_as(eps_u))
    expected = _w(prior, t) * (delta_d + s * (b_y - b_0))
    assert torch.allclose(out.grad.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose((x.grad * 4).double(), expected, rtol=1e-5, atol=1e-5)
    assert prior.calls == [12]
    assert torch.allclose(out.eps_hat.double(), eps_u + s * (b_y - b_0), rtol=1e-5, atol=1e-4)


def test_nfsd_negative_prompt_is_configurable(prior):
    x, t, noise, cond, uncond = _batch(prior, [500])
    out = _run(prior, x, t, noise, cond, uncond, loss="nfsd", guidance_scale=1.0, negative_prompt="a blue cube")
    b_y, b_0, b_neg = (prior.bias(p).double() for p in ("a red cube", "", "a blue cube"))
    assert torch.allclose(out.grad.double(), _w(prior, t) * (b_0 - b_neg + (b_y - b_0)), rtol=1e-5, atol=1e-6)


def test_nfsd_with_the_empty_negative_prompt_reuses_the_unconditional_prediction(prior):
    """ε̂(z_t; "") is ε_u: with y_neg = "" the gradient is the same as with a third prediction, from one call of 2B."""
    x, t, noise, cond, uncond = _batch(prior, [20, 500])
    out = _run(prior, x, t, noise, cond, uncond, loss="nfsd", guidance_scale=7.5, negative_prompt="")
    assert prior.calls == [4]
    ab = prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    z_t = ab.sqrt() * x.detach().double() + (1 - ab).sqrt() * noise.double()
    b_y, b_0 = prior.bias("a red cube").double(), prior.bias("").double()
    eps_u = (t.double() / T).view(-1, 1, 1, 1) * z_t + b_0
    delta_d = torch.cat([eps_u[:1], torch.zeros_like(eps_u[1:])])  # t = 20 < 200: ε_u; t = 500: ε_u − ε_u
    assert torch.allclose(out.grad.double(), _w(prior, t) * (delta_d + 7.5 * (b_y - b_0)), rtol=1e-5, atol=1e-5)


def test_on_the_toy_world_nfsd_defaults_to_csd_above_t_200():
    """The toy priors know no words for a bad image, so y_neg = "": ε_neg = ε_u, δ_D = 0 for t ≥ 200 and NFSD is
    CSD there; below 200 it adds w(t)·ε_u. Checked on the analytic prior, whose ε̂ is the exact posterior mean."""
    g = torch.Generator().manual_seed(3)
    images = (0.5 + 0.1 * torch.randn(4, 3, 8, 8, generator=g)).clamp(0, 1)
    prior = AnalyticPrior(images, ["a red cube", "a red cube", "a blue cone", "a blue cone"], "cpu")
    assert make_loss(SDSConfig(loss="nfsd")).negative_prompt(prior) == ""  # type: ignore[attr-defined]
    t = torch.tensor([50, 199, 200, 600])
    x = (images * 2 - 1).requires_grad_(True)
    noise = torch.randn(x.shape, generator=g)
    cond, uncond = prior.text_embeddings(["a red cube"] * 4), prior.text_embeddings([""] * 4)
    nfsd = make_loss(SDSConfig(loss="nfsd", guidance_scale=20))(prior, x, t, cond, uncond, noise)
    csd = make_loss(SDSConfig(loss="csd", guidance_scale=20))(prior, x, t, cond, uncond, noise)
    assert torch.equal(nfsd.grad[2:], csd.grad[2:])
    ab = prior.alphas_cumprod[t[:2]].view(-1, 1, 1, 1)
    eps_u = prior.predict_noise(ab.sqrt() * x[:2].detach() + (1 - ab).sqrt() * noise[:2], t[:2], uncond[:2])
    assert torch.allclose(nfsd.grad[:2], csd.grad[:2] + (1 - ab) * eps_u, atol=1e-5)
    assert (1 - ab).mul(eps_u).abs().max() > 0.01  # the small-t term is not nothing


@pytest.mark.parametrize(("knows", "expected"), [(True, PAPER_NEGATIVE_PROMPT), (False, "")])
def test_nfsd_defaults_to_the_papers_words_where_a_closed_vocabulary_has_them(knows, expected):
    """The default y_neg is decided by the prior's vocabulary alone: the paper's words when it can condition on them,
    the unconditional prompt "" when it cannot."""

    class Words:
        label = "a test vocabulary"

        def knows(self, prompt: str) -> bool:
            return knows

        def describe(self) -> str:
            return "anything" if knows else "nothing"

    class Closed(AffinePrior):
        needs = registry.Needs(vocabulary=Words())

    assert make_loss(SDSConfig(loss="nfsd")).negative_prompt(Closed()) == expected  # type: ignore[attr-defined]
    chosen = make_loss(SDSConfig(loss="nfsd", negative_prompt="a blue cube"))
    assert chosen.negative_prompt(Closed()) == "a blue cube"  # type: ignore[attr-defined]


@pytest.mark.parametrize("loss", ["sds", "csd", "nfsd"])
def test_non_finite_elements_give_zero_gradient_and_are_counted(prior, loss):
    """A prior whose ε̂ is NaN or inf in some elements: those gradient elements are 0, the rest are untouched, and
    the fraction is reported."""

    class Broken(AffinePrior):
        def predict_noise(self, z_t, t, emb):
            eps = super().predict_noise(z_t, t, emb)
            eps[:, 0, 0, 0] = float("nan")
            eps[:, 1, 0, 0] = float("inf")
            return eps

    x, t, noise, cond, uncond = _batch(prior, [300, 700])
    broken = _run(Broken(), x, t, noise, cond, uncond, loss=loss, guidance_scale=7.5)
    x.grad = None
    clean = _run(prior, x, t, noise, cond, uncond, loss=loss, guidance_scale=7.5)
    bad = torch.zeros_like(clean.grad, dtype=torch.bool)
    bad[:, 0, 0, 0] = bad[:, 1, 0, 0] = True
    assert (broken.grad[bad] == 0).all() and torch.equal(broken.grad[~bad], clean.grad[~bad])
    assert float(broken.nonfinite) == pytest.approx(2 / 48) and float(clean.nonfinite) == 0
    assert torch.isfinite(broken.loss)


def test_jacobian_ablation_by_hand_on_the_affine_prior(prior):
    """`sds.jacobian`: ε̂ = c_t·z_t + b_∅ + s(b_y − b_∅) with z_t = √ᾱ·x + √(1 − ᾱ)·ε, loss 0.5·Σ w(ε̂ − ε)²/B, and its
    gradient at x goes through the denoiser's Jacobian c_t·√ᾱ; the output reports that ε̂ and no non-finite element."""
    x, t, noise, cond, uncond = _batch(prior, [300, 700])
    out = _run(prior, x, t, noise, cond, uncond, guidance_scale=7.5, jacobian=True)
    ab = prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    c = (t.double() / T).view(-1, 1, 1, 1)
    z_t = ab.sqrt() * x.detach().double() + (1 - ab).sqrt() * noise.double()
    eps_hat = c * z_t + uncond.double() + 7.5 * (cond.double() - uncond.double())
    w = _w(prior, t)
    residual = eps_hat - noise.double()
    assert torch.allclose(out.eps_hat.double(), eps_hat, atol=1e-5)
    assert torch.allclose(out.grad.double(), w * residual, atol=1e-5)
    assert float(out.loss) == pytest.approx(0.5 * float((w * residual**2).sum()) / 2, rel=1e-5)
    assert torch.allclose(x.grad.double(), w * residual * c * ab.sqrt() / 2, atol=1e-6)
    assert float(out.nonfinite) == 0.0
    assert float((w * residual).abs().max()) > 1.0  # not a comparison of zeros


def test_jacobian_ablation_counts_non_finite_elements_and_lets_them_show_in_the_loss(prior):
    class Broken(AffinePrior):
        def predict_noise(self, z_t, t, emb):
            eps = super().predict_noise(z_t, t, emb)
            eps[:, 0, 0, 0] = float("nan")
            return eps

    x, t, noise, cond, uncond = _batch(prior, [300, 700])
    out = make_loss(SDSConfig(guidance_scale=7.5, jacobian=True))(Broken(), x, t, cond, uncond, noise)
    assert float(out.nonfinite) == pytest.approx(1 / 48)  # one element of each [3, 4, 4] render
    assert torch.isnan(out.loss)
