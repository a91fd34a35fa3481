"""The analytic prior as the exact denoiser of a view-labelled, front-biased world: a view suffix restricts the
mixture to that view's images, the front bias reweights images by the density ratio of the biased azimuth law to
the one the image set was drawn from, and a colour-unspecified caption is the mixture of its shape's six colours.
Checked against the posterior mean written out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dreamfusion.toyworld import world
from dreamfusion.toyworld.analytic import NEG, AnalyticPrior, members_of

# four 4×4 images: a red cube head-on (azimuth 10°), from the side (80°) and the back (170°), and a blue cube
IMAGES = torch.stack([torch.full((3, 4, 4), v) for v in (0.1, 0.4, 0.7, 0.9)])
CAPTIONS = ["a red cube", "a red cube", "a red cube", "a blue cube"]
VIEWS = torch.tensor([[15.0, 10.0], [15.0, 80.0], [15.0, 170.0], [15.0, -20.0]])  # (elevation, azimuth)


def weight_by_hand(azimuth: float, bias: float) -> float:
    """Biased density over the image set's (bias 0.5): b/30 + (1 − b)/360 per degree within 15° of the front,
    (1 − b)/360 elsewhere."""
    head_on = abs(azimuth) <= 15

    def density(b: float) -> float:
        return (b / 30 if head_on else 0.0) + (1 - b) / 360

    return density(bias) / density(0.5)


def posterior_mean_by_hand(prior: AnalyticPrior, z: torch.Tensor, t: int, weights: list[float]) -> torch.Tensor:
    """Σ_k w_k N(z; α x_k, σ²) x_k / Σ_k w_k N(z; α x_k, σ²), in float64."""
    ab = float(prior.alphas_cumprod[t])
    bank = (IMAGES.double() * 2 - 1).flatten(1)
    logp = torch.tensor([math.log(w) if w > 0 else -math.inf for w in weights], dtype=torch.float64)
    logp = logp - ((z.double().flatten() - math.sqrt(ab) * bank) ** 2).sum(-1) / (2 * (1 - ab))
    return (logp.softmax(0) @ bank).view(3, 4, 4)


@pytest.mark.parametrize("bias", [0.0, 0.6])
@pytest.mark.parametrize(
    "prompt,members",
    [
        ("a red cube", [1, 1, 1, 0]),
        ("a red cube, back view", [0, 0, 1, 0]),
        ("a red cube, front view", [1, 0, 0, 0]),
        ("a red cube, side view", [0, 1, 0, 0]),
        ("a red cube, overhead view", [1, 1, 1, 0]),  # no overhead image: the view cannot narrow the mixture
        ("", [1, 1, 1, 1]),
    ],
)
def test_posterior_mean_is_the_biased_view_restricted_mixture(prompt, members, bias):
    prior = AnalyticPrior(IMAGES, CAPTIONS, "cpu", VIEWS, bias)
    weights = [m * weight_by_hand(a, bias) for m, a in zip(members, VIEWS[:, 1].tolist())]
    z, t = (
        torch.full((1, 3, 4, 4), 0.2) + 0.1 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(1)),
        600,
    )
    found = prior.posterior_mean(z, torch.tensor([t]), prior.text_embeddings([prompt]))
    assert torch.allclose(found[0].double(), posterior_mean_by_hand(prior, z, t, weights), atol=1e-5)


def test_bias_weights_are_the_density_ratio():
    emb = AnalyticPrior(IMAGES, CAPTIONS, "cpu", VIEWS, 0.6).text_embeddings(["a red cube"])[0]
    # head-on: (0.6/30 + 0.4/360) / (0.5/30 + 0.5/360) = 7.6/6.5; elsewhere 0.4/0.5
    assert emb.tolist() == pytest.approx([math.log(7.6 / 6.5), math.log(0.8), math.log(0.8), NEG])


def test_without_views_suffixes_and_bias_change_nothing():
    prior = AnalyticPrior(IMAGES, CAPTIONS, "cpu", None, 0.6)
    a, b = prior.text_embeddings(["a red cube, back view", "a red cube"])
    assert torch.equal(a, b) and a.tolist() == [0.0, 0.0, 0.0, NEG]


def test_a_coloured_caption_holds_its_shapes_six_colours():
    assert members_of("a coloured cone") == {f"a {c} cone" for c in world.COLOURS}
    assert members_of("a red cone with a spot") == {"a red cone with a spot"}
    prior = AnalyticPrior(IMAGES, ["a red cube", "a green cube", "a red cone", "a blue cube"], "cpu")
    assert prior.text_embeddings(["a coloured cube"])[0].tolist() == [0.0, 0.0, NEG, 0.0]
